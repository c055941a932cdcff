//! Several processes: pushers woken across processes.
//!
//! A batch ingested here wakes this process's pushers of the connections that list a
//! SKU it changed. Those another process owns would look only on their one-second tick,
//! so a sale reached their channel up to a second (and a round) later than the channels
//! of the ingesting process. When a batch changed a listing of a connection this process
//! does not own, the sender sends `Topic::Listings` (one NOTIFY, empty payload; batches
//! committed while one is being sent share the next); every process's receiver wakes
//! the pushers of the connections it owns, which read their pending listings from the
//! database as on any wake-up. Behind PgBouncer in transaction mode no NOTIFY arrives and
//! the one-second tick remains.

use std::sync::Arc;
use std::time::Duration;

use stockade_store::Topic;

use super::{ACTIVE, Inner};
use crate::metrics::Metrics;

/// Ask for the other processes' pushers to look (coalesced; see the module).
pub(super) fn request(inner: &Inner) {
    inner.cross_wake.notify_one();
}

/// Send one wake-up per request (requests while one is sent share the next).
pub(super) async fn send_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    loop {
        tokio::select! {
            () = inner.cross_wake.notified() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        inner.store.wake(Topic::Listings).await;
        Metrics::inc(&inner.metrics.pushers_woken_elsewhere, 1);
    }
}

/// Wake the pushers this process owns whenever another process asks.
pub(super) async fn receive_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    let mut wakeups = inner.store.wakeups(Topic::Listings).await;
    loop {
        // The pushers have their own tick: a long period, the wake-ups are what counts.
        tokio::select! {
            () = wakeups.wait(Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        Metrics::inc(&inner.metrics.pushers_woken_by_others, 1);
        let Ok(live) = inner.live.read() else {
            continue;
        };
        for l in live.values().filter(|l| l.status() == ACTIVE) {
            l.wake.notify_one();
        }
    }
}
