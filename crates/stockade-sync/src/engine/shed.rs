//! Load shedding of webhook deliveries. Each order delivery holds a slot from its
//! arrival to its answer; past `SyncOptions::max_pending_deliveries` slots a delivery
//! is answered 503 with `Retry-After` at once (the marketplace delivers it again, or the
//! poller lists it), counted in `stockade_webhooks_shed_total`, and summarised in one
//! log line a second at most — rather than thousands of deliveries held open while the
//! queue behind them grows.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crate::metrics::Metrics;

#[derive(Debug)]
pub(super) struct Admission {
    pending: AtomicUsize,
    /// Shed since the last log line, and when that line was written (ms since `start`).
    unlogged: AtomicU64,
    logged_at_ms: AtomicU64,
    start: Instant,
}

/// A delivery's slot, freed when it is answered (dropped).
pub(super) struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub(super) fn new() -> Self {
        Admission {
            pending: AtomicUsize::new(0),
            unlogged: AtomicU64::new(0),
            logged_at_ms: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// A slot for one more delivery, or None (shed: counted and logged) when `max` are
    /// already pending.
    pub(super) fn admit(&self, max: usize, metrics: &Metrics) -> Option<Slot<'_>> {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        if before < max.max(1) {
            return Some(Slot(&self.pending));
        }
        self.pending.fetch_sub(1, Ordering::AcqRel);
        Metrics::inc(&metrics.webhooks_shed, 1);
        metrics.telemetry.webhooks_shed.inc();
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.logged_at_ms.load(Ordering::Relaxed);
        if (now >= last + 1000 || last == 0)
            && self
                .logged_at_ms
                .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let n = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(
                shed = n,
                pending = max,
                "overloaded: {n} webhook deliveries answered 503 with Retry-After (more than {max} pending); the marketplaces deliver them again"
            );
        }
        None
    }

    /// Deliveries admitted and not answered yet.
    pub(super) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// The cap on a push round's calls in flight (see [`QUEUED_ROUND_CALLS`]) while
    /// more than a quarter of `max` deliveries are pending; no cap otherwise.
    pub(super) fn round_cap(&self, max: usize) -> Option<usize> {
        (self.pending() > max / 4).then_some(QUEUED_ROUND_CALLS)
    }
}

/// A push round's calls in flight per connection while webhook deliveries queue.
///
/// Pushes and ingest share the CPU. With eight calls in flight a round ends sooner and
/// the next one starts sooner, so fewer changes are coalesced into each call and the
/// pushes take CPU the queued deliveries are waiting for. Two keep the channels moving
/// (zeros and low stock still go first) while the queue drains.
pub(super) const QUEUED_ROUND_CALLS: usize = 2;

impl super::SyncEngine {
    /// Webhook deliveries admitted and not answered yet.
    pub fn pending_deliveries(&self) -> usize {
        self.inner.admission.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_capped_while_a_quarter_of_the_bound_is_pending() {
        let a = Admission::new();
        let m = Metrics::default();
        let slots: Vec<_> = (0..3).filter_map(|_| a.admit(8, &m)).collect();
        assert_eq!(a.round_cap(8), Some(QUEUED_ROUND_CALLS));
        assert_eq!(a.round_cap(16), None);
        drop(slots);
        assert_eq!(a.round_cap(8), None);
    }

    #[test]
    fn past_the_bound_deliveries_are_shed_and_counted() {
        let a = Admission::new();
        let m = Metrics::default();
        let one = a.admit(2, &m);
        let two = a.admit(2, &m);
        assert!(one.is_some() && two.is_some());
        assert!(a.admit(2, &m).is_none());
        assert!(a.admit(2, &m).is_none());
        assert_eq!(Metrics::get(&m.webhooks_shed), 2);
        assert_eq!(m.telemetry.webhooks_shed.get(), 2);
        assert_eq!(a.pending(), 2);
        drop(one);
        assert_eq!(a.pending(), 1);
        assert!(
            a.admit(2, &m).is_some(),
            "an answered delivery frees its slot"
        );
        assert_eq!(a.pending(), 1);
    }
}
