//! Counters and latency figures for the live summary, benchmarks and `/metrics`.

//!
//! Latencies are kept in [`Samples`]: a fixed set of log-linear buckets (every value is
//! counted, nothing stops recording and memory never grows), from which percentiles are
//! read with a bounded relative error ([`RELATIVE_ERROR`]); the maximum is exact. The
//! Prometheus side ([`SyncTelemetry`]) holds typed handles that the composition root
//! registers in its one registry; labels are connection names and marketplaces only.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

/// Values below this many microseconds have a bucket each.
const LINEAR: u64 = 64;
/// Sub-buckets per power of two above [`LINEAR`] (so a bucket spans at most 1/32 of its value).
const SUB: u64 = 32;
const SUB_BITS: u32 = 5;
/// Buckets for every `u32` microsecond value (up to about 71 minutes).
const BUCKETS: usize = LINEAR as usize + (32 - 6) * SUB as usize;

/// Percentiles read from [`Samples`] are within this fraction of the true sample.
pub const RELATIVE_ERROR: f64 = 1.0 / SUB as f64;

fn bucket_of(us: u32) -> usize {
    let v = u64::from(us);
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= 6
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    LINEAR as usize + (exp as usize - 6) * SUB as usize + sub as usize
}

/// The smallest and largest microsecond value counted in bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, i);
    }
    let exp = (i - LINEAR) / SUB + 6;
    let sub = (i - LINEAR) % SUB;
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    let low = (1u64 << exp) + sub * width;
    (low, low + width - 1)
}

/// Latency samples in microseconds: counts per log-linear bucket, bounded and lock-free.
#[derive(Debug)]
pub struct Samples {
    buckets: Box<[AtomicU64]>,
    max_us: AtomicU64,
}

impl Default for Samples {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }
}

/// Where [`Samples::take_recent`] last looked: the bucket counts then.
#[derive(Debug, Default, Clone)]
pub struct SamplesCursor(Vec<u64>);

impl Samples {
    pub fn record(&self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        if let Some(b) = self.buckets.get(bucket_of(us)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.max_us.fetch_max(u64::from(us), Ordering::Relaxed);
    }

    fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// p50, p99 and max in milliseconds, and the count; None without samples.
    pub fn summary(&self) -> Option<Percentiles> {
        let max = self.max_us.load(Ordering::Relaxed);
        summarise(&self.counts(), Some(max))
    }

    /// Like [`Samples::summary`] over the samples recorded since the last call with the
    /// same cursor (for a live display); the max is the highest bucket's upper bound.
    pub fn take_recent(&self, since: &mut SamplesCursor) -> Option<Percentiles> {
        let now = self.counts();
        let recent: Vec<u64> = now
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(since.0.get(i).copied().unwrap_or(0)))
            .collect();
        since.0 = now;
        summarise(&recent, None)
    }

    pub fn clear(&self) {
        for b in &*self.buckets {
            b.store(0, Ordering::Relaxed);
        }
        self.max_us.store(0, Ordering::Relaxed);
    }
}

/// Percentiles from bucket counts: the value reported for a quantile is the middle of the
/// bucket holding that rank (exact below 64 µs, within [`RELATIVE_ERROR`] above).
fn summarise(counts: &[u64], max_us: Option<u64>) -> Option<Percentiles> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let at = |q: f64| {
        let rank = ((total as f64 - 1.0) * q).round() as u64;
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen > rank {
                let (lo, hi) = bucket_range(i);
                return (lo + hi) as f64 / 2.0;
            }
        }
        0.0
    };
    let top = counts
        .iter()
        .rposition(|n| *n > 0)
        .map_or(0, |i| bucket_range(i).1);
    let max = max_us.unwrap_or(top) as f64;
    Some(Percentiles {
        count: usize::try_from(total).unwrap_or(usize::MAX),
        p50_ms: at(0.50).min(max) / 1000.0,
        p99_ms: at(0.99).min(max) / 1000.0,
        max_ms: max / 1000.0,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A connection's labels: its name (chosen by the operator, never buyer data) and marketplace.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
    pub marketplace: String,
}

/// A push outcome per channel.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    pub channel: String,
    pub outcome: &'static str,
}

/// The sync engine's Prometheus handles (cheap clones share the same values).
#[derive(Debug, Clone)]
pub struct SyncTelemetry {
    /// Orders stored or updated, by the connection they came in on.
    pub orders_ingested: Family<ChannelLabels, Counter>,
    /// Listing quantities pushed: `confirmed` per listing, `failed` per failed round.
    pub pushes: Family<PushLabels, Counter>,
    /// From the oldest change a push carries to the channel's confirmation, in seconds.
    pub push_lag: Family<ChannelLabels, Histogram>,
    /// Webhook deliveries shed with 503 (too many pending).
    pub webhooks_shed: Counter,
    /// Orders stored from a notification's summary while their fetch waited.
    pub summaries_stored: Counter,
}

fn lag_histogram() -> Histogram {
    // 1 ms .. ~65 s, doubling.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for SyncTelemetry {
    fn default() -> Self {
        Self {
            orders_ingested: Family::default(),
            pushes: Family::default(),
            push_lag: Family::new_with_constructor(lag_histogram),
            webhooks_shed: Counter::default(),
            summaries_stored: Counter::default(),
        }
    }
}

impl SyncTelemetry {
    /// Register these handles (as `stockade_orders_ingested_total`, …) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "stockade_orders_ingested",
            "Orders stored or updated, per connection",
            self.orders_ingested.clone(),
        );
        registry.register(
            "stockade_pushes",
            "Listing quantity pushes per connection and outcome (confirmed per listing, failed per round)",
            self.pushes.clone(),
        );
        registry.register(
            "stockade_push_lag_seconds",
            "From an order's arrival to the channel confirming the new quantity",
            self.push_lag.clone(),
        );
        registry.register(
            "stockade_webhooks_shed",
            "Webhook deliveries answered 503 with Retry-After because too many were pending",
            self.webhooks_shed.clone(),
        );
        registry.register(
            "stockade_order_summaries_stored",
            "Orders stored from their notification's summary (stock moved) while the fetch waited for its rate limit",
            self.summaries_stored.clone(),
        );
    }

    pub fn ingested(&self, labels: &ChannelLabels, n: u64) {
        self.orders_ingested.get_or_create(labels).inc_by(n);
    }

    pub fn push_outcome(&self, channel: &str, outcome: &'static str, n: u64) {
        self.pushes
            .get_or_create(&PushLabels {
                channel: channel.to_owned(),
                outcome,
            })
            .inc_by(n);
    }
}

/// What the sync engine has done since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Order changes stored (new orders and status changes).
    pub changes_applied: AtomicU64,
    /// Deliveries and polled orders that changed nothing (duplicates, replays, stale).
    pub unchanged: AtomicU64,
    /// Orders received per source.
    pub webhooks_accepted: AtomicU64,
    pub webhooks_rejected: AtomicU64,
    pub polled: AtomicU64,
    /// Ingest transactions and the orders in them.
    pub batches: AtomicU64,
    pub batched_orders: AtomicU64,
    /// Listing quantities confirmed by a channel, and marketplace calls that carried them.
    pub pushes_confirmed: AtomicU64,
    pub push_calls: AtomicU64,
    /// Target versions that never went out because a newer one replaced them.
    pub pushes_coalesced: AtomicU64,
    pub push_failures: AtomicU64,
    /// Listings found showing something else than their target, and repaired.
    pub drift_repaired: AtomicU64,
    pub reconcile_runs: AtomicU64,
    /// Errors recorded as events (after retries).
    pub error_events: AtomicU64,
    /// Webhook deliveries answered 503 at once because too many were pending.
    pub webhooks_shed: AtomicU64,
    /// Orders stored from a notification's summary while their fetch waited.
    pub summaries_stored: AtomicU64,
    /// Polled orders dropped before ingest: already stored as listed.
    pub poll_skipped: AtomicU64,
    /// Webhook fetches handed to the connection's owner: the looks (one statement each)
    /// whether the owner is done, and the requests those looks read in all.
    pub handoff_looks: AtomicU64,
    pub handoff_looked_at: AtomicU64,
    /// The receiving side's statements writing handed-over fetches (the deliveries
    /// received while one is written go together in the next), and the requests written.
    pub handoff_writes: AtomicU64,
    pub handoff_written: AtomicU64,
    /// The owner's side: statements removing handed-over fetches that were done, and the
    /// requests they removed.
    pub handoff_removals: AtomicU64,
    pub handoff_removed: AtomicU64,
    /// Batch notices sent to pushers, and pushers left asleep (none of their SKUs changed).
    pub pushers_woken: AtomicU64,
    pub pushers_spared: AtomicU64,
    /// Several processes: wake-ups sent to the other processes' pushers (one per batch
    /// that changed a listing of a connection another process owns, coalesced), and
    /// those received here (each wakes this process's pushers).
    pub pushers_woken_elsewhere: AtomicU64,
    pub pushers_woken_by_others: AtomicU64,
    /// From an order's arrival to the last channel's confirmation of every listing its
    /// ingest batch changed.
    pub order_to_confirmed: Samples,
    /// From arrival to the durable commit (what a webhook's answer waits for).
    pub arrival_to_commit: Samples,
    /// Per connection: from the arrival of the oldest change a push carries to the
    /// channel's confirmation (staleness of that channel).
    pub staleness: Mutex<HashMap<String, std::sync::Arc<Samples>>>,
    pub last_errors: Mutex<VecDeque<(Instant, String)>>,
    /// Every error line since the start, counted by kind (the line itself; lines start
    /// with the connection's name), so a summary's counts and its list agree.
    pub error_kinds: Mutex<ErrorKinds>,
    /// The Prometheus handles (registered by the composition root).
    pub telemetry: SyncTelemetry,
}

/// Error lines counted by kind, the most recent `MAX_KINDS` kinds kept with their counts.
#[derive(Debug, Default)]
pub struct ErrorKinds {
    /// Per connection (the text before the first ": "), every error since the start.
    pub per_connection: std::collections::BTreeMap<String, u64>,
    /// Errors whose kind was dropped from `kinds` to keep it bounded.
    pub dropped: u64,
    kinds: HashMap<String, ErrorKind>,
}

/// One kind of error: how often and when it last happened.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorKind {
    pub line: String,
    pub count: u64,
    pub last: Instant,
}

const MAX_KINDS: usize = 50;

impl ErrorKinds {
    fn record(&mut self, line: &str) {
        let connection = line.split_once(": ").map_or("", |(c, _)| c);
        *self
            .per_connection
            .entry(connection.to_owned())
            .or_default() += 1;
        let now = Instant::now();
        if let Some(k) = self.kinds.get_mut(line) {
            k.count += 1;
            k.last = now;
            return;
        }
        if self.kinds.len() >= MAX_KINDS
            && let Some(oldest) = self
                .kinds
                .values()
                .min_by_key(|k| k.last)
                .map(|k| k.line.clone())
            && let Some(k) = self.kinds.remove(&oldest)
        {
            self.dropped += k.count;
        }
        self.kinds.insert(
            line.to_owned(),
            ErrorKind {
                line: line.to_owned(),
                count: 1,
                last: now,
            },
        );
    }

    /// Every error counted, over all connections.
    pub fn total(&self) -> u64 {
        self.per_connection.values().sum()
    }

    /// The kinds kept, most recent first.
    pub fn newest_first(&self) -> Vec<ErrorKind> {
        let mut v: Vec<ErrorKind> = self.kinds.values().cloned().collect();
        v.sort_by(|a, b| b.last.cmp(&a.last).then_with(|| a.line.cmp(&b.line)));
        v
    }
}

impl Metrics {
    pub fn inc(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn staleness_of(&self, connection: &str) -> std::sync::Arc<Samples> {
        match self.staleness.lock() {
            Ok(mut m) => m.entry(connection.to_owned()).or_default().clone(),
            Err(_) => std::sync::Arc::default(),
        }
    }

    /// Remember a (scrubbed, PII-free) error line for the live summary.
    pub fn error(&self, line: String) {
        if let Ok(mut k) = self.error_kinds.lock() {
            k.record(&line);
        }
        if let Ok(mut v) = self.last_errors.lock() {
            if v.len() >= 20 {
                v.pop_front();
            }
            v.push_back((Instant::now(), line));
        }
    }

    pub fn recent_errors(&self, n: usize) -> Vec<String> {
        self.last_errors
            .lock()
            .map(|v| v.iter().rev().take(n).map(|(_, s)| s.clone()).collect())
            .unwrap_or_default()
    }

    /// A copy of the error counts: per connection, and by kind (newest first).
    pub fn error_counts(&self) -> (std::collections::BTreeMap<String, u64>, Vec<ErrorKind>, u64) {
        self.error_kinds
            .lock()
            .map(|k| (k.per_connection.clone(), k.newest_first(), k.dropped))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s = Samples::default();
        for ms in 1..=100u64 {
            s.record(Duration::from_millis(ms));
        }
        let p = s.summary().unwrap();
        assert_eq!(p.count, 100);
        assert!((p.p50_ms - 50.0).abs() <= 1.0, "{p:?}");
        assert!((p.p99_ms - 99.0).abs() <= 1.0, "{p:?}");
        assert_eq!(p.max_ms, 100.0);
        let mut since = SamplesCursor::default();
        assert_eq!(s.take_recent(&mut since).unwrap().count, 100);
        assert!(s.take_recent(&mut since).is_none());
        s.record(Duration::from_millis(7));
        let p = s.take_recent(&mut since).unwrap();
        assert_eq!(p.count, 1);
        assert!((p.p50_ms - 7.0).abs() <= 7.0 * RELATIVE_ERROR, "{p:?}");
    }

    // The old buffer stopped (or dropped) samples once full; the buckets count every one.
    #[test]
    fn every_sample_is_counted_and_percentiles_stay_within_the_error_bound() {
        let s = Samples::default();
        let n = 5_000_000u64;
        for i in 0..n {
            // 1 µs .. 5 s, uniform.
            s.record(Duration::from_micros(1 + i));
        }
        let p = s.summary().unwrap();
        assert_eq!(p.count as u64, n);
        let exact50 = n as f64 * 0.5 / 1000.0;
        let exact99 = n as f64 * 0.99 / 1000.0;
        assert!(
            (p.p50_ms - exact50).abs() <= exact50 * RELATIVE_ERROR,
            "{p:?}"
        );
        assert!(
            (p.p99_ms - exact99).abs() <= exact99 * RELATIVE_ERROR,
            "{p:?}"
        );
        assert_eq!(p.max_ms, n as f64 / 1000.0);
        s.clear();
        assert!(s.summary().is_none());
    }

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut prev = None;
        for i in 0..BUCKETS {
            let (lo, hi) = bucket_range(i);
            assert!(lo <= hi);
            if let Some(p) = prev {
                assert_eq!(lo, p + 1, "gap before bucket {i}");
            }
            prev = Some(hi);
            assert_eq!(bucket_of(u32::try_from(lo).unwrap()), i);
            assert_eq!(bucket_of(u32::try_from(hi).unwrap()), i);
            assert!(
                (hi - lo) as f64 <= (lo as f64 * RELATIVE_ERROR).max(0.0),
                "{i}"
            );
        }
        assert_eq!(prev, Some(u64::from(u32::MAX)));
    }

    // The demo's error counts disagreed with its list of last errors (counted apart).
    #[test]
    fn error_counts_agree_with_the_kinds_listed() {
        let m = Metrics::default();
        for _ in 0..3 {
            m.error("ebay: push failed: 429".into());
        }
        m.error("amazon: polling failed: timeout".into());
        m.error("ebay: push failed: 500".into());
        let (per, kinds, dropped) = m.error_counts();
        assert_eq!(per.get("ebay"), Some(&4));
        assert_eq!(per.get("amazon"), Some(&1));
        assert_eq!(dropped, 0);
        assert_eq!(kinds.len(), 3);
        assert_eq!(kinds.iter().map(|k| k.count).sum::<u64>(), 5);
        for (c, n) in &per {
            let listed: u64 = kinds
                .iter()
                .filter(|k| k.line.starts_with(&format!("{c}: ")))
                .map(|k| k.count)
                .sum();
            assert_eq!(listed, *n, "{c}");
        }
        // Bounded: old kinds are dropped but still counted.
        for i in 0..(MAX_KINDS + 5) {
            m.error(format!("tiktok: push failed: {i}"));
        }
        let (per, kinds, dropped) = m.error_counts();
        assert_eq!(kinds.len(), MAX_KINDS);
        assert_eq!(
            kinds.iter().map(|k| k.count).sum::<u64>() + dropped,
            per.values().sum::<u64>()
        );
    }
}
