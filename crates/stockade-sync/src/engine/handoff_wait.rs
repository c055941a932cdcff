//! The receiving side's one look for every handed-over webhook fetch (see `handoff`).
//!
//! A delivery handed to the connection's owner registers here ([`Waits::register`]) once
//! its request row is written, and waits on its own receiver. One task per engine
//! ([`wait_loop`]) sleeps while nothing waits; while anything does, it looks every 20 ms
//! with one statement for every waiting request ([`Store::fetch_requests_pending`]) and
//! wakes each delivery whose request is gone (the owner removes it only after the order
//! is stored). Hundreds of deliveries in flight cost one read per 20 ms, not one each.
//!
//! A delivery that stops waiting (its fallback to a local fetch, its summary, its
//! deadline) drops its receiver; the next look leaves it out. A look wakes only the
//! deliveries registered before it began: one registered meanwhile may have written its
//! request after the look's read, so the next look answers it.
//!
//! [`Store::fetch_requests_pending`]: stockade_store::Store::fetch_requests_pending

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::Inner;
use crate::metrics::Metrics;

/// How often the waiter looks while anything waits.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// What a look tells a waiting delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    /// The request is gone: the order is stored (or unknown at the marketplace).
    Done,
    /// The database could not be read: answer 503 (the marketplace delivers again).
    Unavailable,
}

type Key = (i64, String);

/// One waiting delivery: the look round it registered in, and its answer.
struct Waiter {
    round: u64,
    tx: oneshot::Sender<Look>,
}

#[derive(Default)]
struct State {
    /// Incremented by every look as it collects the requests it reads.
    round: u64,
    waiting: HashMap<Key, Vec<Waiter>>,
}

/// The deliveries waiting for their owner's fetch (shared by the engine's tasks). The
/// lock is never held across an await.
#[derive(Default)]
pub(super) struct Waits {
    state: Mutex<State>,
    wake: Notify,
}

impl Waits {
    /// Wait for the request of order `external_id` of `connection` (already written) to
    /// be gone.
    pub(super) fn register(&self, connection: i64, external_id: &str) -> oneshot::Receiver<Look> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut s) = self.state.lock() {
            let round = s.round;
            s.waiting
                .entry((connection, external_id.to_owned()))
                .or_default()
                .push(Waiter { round, tx });
        }
        // Stores a permit when the waiter is busy looking: it does not fall asleep.
        self.wake.notify_one();
        rx
    }

    /// The requests to read this round (deliveries that stopped waiting left out), and
    /// the round: only deliveries registered up to it are answered by this look.
    fn collect(&self) -> (u64, Vec<Key>) {
        let Ok(mut s) = self.state.lock() else {
            return (0, Vec::new());
        };
        s.waiting.retain(|_, ws| {
            ws.retain(|w| !w.tx.is_closed());
            !ws.is_empty()
        });
        let round = s.round;
        s.round += 1;
        (round, s.waiting.keys().cloned().collect())
    }

    /// Answer the deliveries registered up to `round` whose request `answered` says.
    fn answer(&self, round: u64, answered: impl Fn(&Key) -> Option<Look>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.waiting.retain(|key, ws| {
            let Some(look) = answered(key) else {
                return true;
            };
            let (now, later): (Vec<Waiter>, Vec<Waiter>) =
                ws.drain(..).partition(|w| w.round <= round);
            for w in now {
                let _ = w.tx.send(look);
            }
            *ws = later;
            !ws.is_empty()
        });
    }

    fn is_empty(&self) -> bool {
        self.state.lock().map_or(true, |s| s.waiting.is_empty())
    }
}

/// The engine's one waiter (see the module), until shutdown.
pub(super) async fn wait_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    let waits = &inner.handoff_waits;
    loop {
        if *stop.borrow() {
            return;
        }
        if waits.is_empty() {
            tokio::select! {
                () = waits.wake.notified() => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(LOOK_EVERY) => {}
            _ = stop.changed() => return,
        }
        look(&inner).await;
    }
}

/// One statement for every waiting request; wake those whose request is gone.
async fn look(inner: &Inner) {
    let waits = &inner.handoff_waits;
    let (round, keys) = waits.collect();
    if keys.is_empty() {
        return;
    }
    Metrics::inc(&inner.metrics.handoff_looks, 1);
    Metrics::inc(&inner.metrics.handoff_looked_at, keys.len() as u64);
    let requests: Vec<(i64, &str)> = keys.iter().map(|(c, e)| (*c, e.as_str())).collect();
    match inner.store.fetch_requests_pending(&requests).await {
        Ok(pending) => waits.answer(round, |k| (!pending.contains(k)).then_some(Look::Done)),
        Err(e) if e.is_unavailable() => waits.answer(round, |_| Some(Look::Unavailable)),
        Err(e) => {
            tracing::debug!(error = %e, "could not look at the handed-over webhook fetches");
        }
    }
}
