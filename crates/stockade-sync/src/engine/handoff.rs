//! Webhook fetches handed to the connection's owner (scale-out on PostgreSQL).
//!
//! Every process verifies the deliveries it receives, but the order a notification
//! announces is fetched from the marketplace by the process that owns the connection
//! (`owner`), so the fetch spends the connection's one rate budget rather than the
//! receiving process's own (with several processes each keeping to the marketplace's
//! limit alone, together they would exceed it). A process that does not own the
//! connection:
//! 1. records the order id in `fetch_requests` (`stockade_store::fetch_requests`) and
//!    wakes the owners (`Topic::Fetches`: NOTIFY; behind PgBouncer in transaction mode
//!    the owners' one-second read finds it); the deliveries received together share
//!    one statement and one wake-up (`handoff_request`);
//! 2. waits for the request to be gone, and answers the marketplace 2xx once it is (the
//!    owner removes it only after the order is stored, or found unknown at the
//!    marketplace): the answer still follows the commit. One waiter per process looks
//!    every 20 ms with one statement for all the deliveries waiting (`handoff_wait`);
//!    the owner sends nothing back;
//! 3. when the notification summarises the order (Amazon) and the owner has not stored
//!    it within `summary_after`, stores the summary itself (no marketplace call) and
//!    answers on that commit, as a lone process does;
//! 4. when the owner has not done it within 1.5 s (no owner alive, or one far behind),
//!    fetches it itself as a lone process does: every delivery is answered, within the
//!    usual 3 s or with 503 (the marketplace delivers again).
//!
//! The owner's loop ([`claim_loop`]) reads the requests when woken (a burst of wake-ups
//! costs one read) and every second, hands those of the connections it owns to their
//! fetchers (batched into one marketplace call as the webhook fetches are), and removes
//! each request once its order is stored. A request the fetch failed for stays and is
//! tried again after five seconds; one notified again meanwhile (a larger `seq`) is
//! fetched again. A new owner finds the requests its predecessor left. Requests older
//! than a day are dropped (the poller lists those orders).
//!
//! Without ownership (SQLite, one process) nothing changes: the receiving process owns
//! every connection and fetches at once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stockade_core::order::Order;
use stockade_marketplaces::{HookAnswer, HookError};
use stockade_store::{FetchRequest, Topic};
use tokio::sync::oneshot;

use super::fetch::{FetchJob, WAITING, unavailable_reason};
use super::handoff_request::Request;
use super::handoff_wait::Look;
use super::{IngestJob, Inner, Live, REVOKED, SyncEngine};
use crate::ingest::Source;
use crate::metrics::Metrics;

/// How long a receiving process waits for the owner before it fetches itself.
const OWNER_WITHIN: Duration = Duration::from_millis(1500);
/// The owners read the requests at least this often (a NOTIFY shortens the wait).
const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// The shortest time between two of the owners' reads: a burst of wake-ups (one per
/// handed-over webhook) costs one read.
const CLAIM_GAP: Duration = Duration::from_millis(2);
/// A request whose fetch failed is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Requests read per round.
const CLAIM_LIMIT: i64 = 2_000;
/// Requests older than this are dropped (the poller lists those orders).
const KEEP_MS: i64 = 86_400_000;

/// Whether a delivery for `target` received here goes to its owner's fetcher.
pub(super) fn hands_off(inner: &Inner, target: &Live) -> bool {
    inner.owned.enabled() && !target.owned.may_act(target.id)
}

fn accepted(inner: &Inner) -> Result<HookAnswer, HookError> {
    Metrics::inc(&inner.metrics.webhooks_accepted, 1);
    Ok(HookAnswer::ok())
}

/// Answer a delivery for a connection another process owns (see the module).
pub(super) async fn deliver(
    sync: &SyncEngine,
    target: Arc<Live>,
    external_id: String,
    summary: Option<Box<Order>>,
    arrival: Instant,
    deadline: tokio::time::Instant,
) -> Result<HookAnswer, HookError> {
    let inner = &sync.inner;
    let (written, is_written) = oneshot::channel();
    let request = Request {
        connection: target.id,
        external_id: external_id.clone(),
        written,
    };
    if inner.handoff_requests.send(request).await.is_err() {
        return Err(HookError::Unavailable("sync is stopping".into()));
    }
    match is_written.await {
        Ok(true) => {}
        Ok(false) => {
            return Err(HookError::Unavailable(
                "the order could not be stored".into(),
            ));
        }
        Err(_) => return Err(HookError::Unavailable("sync is stopping".into())),
    }
    let mut stop = inner.shutdown.subscribe();
    if *stop.borrow() {
        return Err(HookError::Unavailable("sync is stopping".into()));
    }
    let mut done = inner.handoff_waits.register(target.id, &external_id);
    let started = tokio::time::Instant::now();
    let fetch_here_at = (started + OWNER_WITHIN).min(deadline);
    let summary_at = summary
        .is_some()
        .then_some(inner.opts.summary_after)
        .flatten()
        .map(|d| started + d);
    let until = summary_at.map_or(fetch_here_at, |at| at.min(fetch_here_at));
    tokio::select! {
        biased;
        look = &mut done => {
            return match look {
                Ok(Look::Done) => accepted(inner),
                Ok(Look::Unavailable) => Err(HookError::Unavailable(
                    "the order could not be stored".into(),
                )),
                Err(_) => Err(HookError::Unavailable("sync is stopping".into())),
            };
        }
        _ = stop.changed() => return Err(HookError::Unavailable("sync is stopping".into())),
        () = tokio::time::sleep_until(until) => {}
    }
    // No longer waiting: the next look leaves this delivery out.
    drop(done);
    if summary_at.is_some_and(|at| tokio::time::Instant::now() >= at)
        && let Some(order) = summary
    {
        return store_summary(inner, &target, *order, arrival, deadline).await;
    }
    tracing::debug!(connection = %target.name, "the connection's owner did not fetch an announced order in time; fetching it here");
    sync.order_changed(target, external_id, summary, arrival, deadline)
        .await
}

/// Store the notification's summary here (no marketplace call); answer on its commit.
async fn store_summary(
    inner: &Inner,
    target: &Arc<Live>,
    order: Order,
    arrival: Instant,
    deadline: tokio::time::Instant,
) -> Result<HookAnswer, HookError> {
    let (tx, rx) = oneshot::channel();
    let job = IngestJob {
        live: target.clone(),
        order,
        source: Source::Notification,
        arrival,
        replies: vec![tx],
        timed: true,
    };
    if inner.ingest_tx.send(job).await.is_err() {
        return Err(HookError::Unavailable("sync is stopping".into()));
    }
    Metrics::inc(&inner.metrics.summaries_stored, 1);
    inner.metrics.telemetry.summaries_stored.inc();
    match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(Ok(_))) => accepted(inner),
        Ok(Ok(Err(e))) => Err(HookError::Unavailable(unavailable_reason(&e))),
        Ok(Err(_)) => Err(HookError::Unavailable("sync is stopping".into())),
        Err(_) => Err(HookError::Unavailable(
            "the order could not be stored in time".into(),
        )),
    }
}

type Key = (i64, String);

/// Requests being fetched now, those whose fetch failed (not before when), and those
/// done whose removal is not written yet (still busy: a round must not claim them again).
#[derive(Default)]
struct Claims {
    busy: HashSet<Key>,
    failed: HashMap<Key, Instant>,
    done: Vec<FetchRequest>,
}

/// Remove the requests whose fetch is done, many in one statement: the removals of the
/// fetches finished while one is written go together in the next (one commit, not one
/// per order). The receivers' next look then finds them gone.
async fn remove_loop(
    inner: Arc<Inner>,
    claims: Arc<Mutex<Claims>>,
    wake: Arc<tokio::sync::Notify>,
) {
    let mut stop = inner.shutdown.subscribe();
    loop {
        let stopping = tokio::select! {
            () = wake.notified() => false,
            _ = stop.changed() => true,
        };
        let done = claims
            .lock()
            .map(|mut c| std::mem::take(&mut c.done))
            .unwrap_or_default();
        if !done.is_empty() {
            match inner.store.fetch_requests_done(&done).await {
                Ok(n) => {
                    Metrics::inc(&inner.metrics.handoff_removals, 1);
                    Metrics::inc(&inner.metrics.handoff_removed, n);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not remove webhook fetches that were done; they are fetched again");
                }
            }
            if let Ok(mut c) = claims.lock() {
                for r in &done {
                    c.busy.remove(&(r.connection_id, r.external_id.clone()));
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// The owner's side (see the module), until shutdown.
pub(super) async fn claim_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    let mut wake = inner.store.wakeups(Topic::Fetches).await;
    let claims = Arc::new(Mutex::new(Claims::default()));
    let removals = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(remove_loop(inner.clone(), claims.clone(), removals.clone()));
    let mut pruned: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        claim_round(&inner, &claims, &removals).await;
        if pruned.is_none_or(|p| p.elapsed() > Duration::from_secs(3600)) {
            let before = crate::now_ms() - KEEP_MS;
            if inner.store.prune_fetch_requests(before).await.is_ok() {
                pruned = Some(Instant::now());
            }
        }
        tokio::select! {
            () = wake.wait(CLAIM_EVERY) => {}
            _ = stop.changed() => return,
        }
        tokio::time::sleep(CLAIM_GAP).await;
        wake.drain().await;
    }
}

async fn claim_round(
    inner: &Arc<Inner>,
    claims: &Arc<Mutex<Claims>>,
    removals: &Arc<tokio::sync::Notify>,
) {
    let requests = match inner.store.fetch_requests(CLAIM_LIMIT).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "could not read the webhook fetches handed to this process");
            return;
        }
    };
    if requests.is_empty() {
        return;
    }
    let lives: HashMap<i64, Arc<Live>> = inner
        .live
        .read()
        .map(|m| m.values().map(|l| (l.id, l.clone())).collect())
        .unwrap_or_default();
    let now = Instant::now();
    if let Ok(mut c) = claims.lock() {
        c.failed.retain(|_, t| *t > now);
    }
    for r in requests {
        let Some(live) = lives.get(&r.connection_id) else {
            continue;
        };
        if !inner.owned.may_act(live.id) || live.status.load(Ordering::Relaxed) == REVOKED {
            continue;
        }
        let key: Key = (r.connection_id, r.external_id.clone());
        {
            let Ok(mut c) = claims.lock() else { return };
            if c.busy.contains(&key) || c.failed.get(&key).is_some_and(|t| *t > now) {
                continue;
            }
            c.failed.remove(&key);
            c.busy.insert(key.clone());
        }
        let (tx, rx) = oneshot::channel();
        let job = FetchJob {
            id: r.external_id.clone(),
            arrival: now,
            reply: tx,
            state: Arc::new(AtomicU8::new(WAITING)),
        };
        if live.fetch_tx.send(job).is_err() {
            if let Ok(mut c) = claims.lock() {
                c.busy.remove(&key);
            }
            continue;
        }
        tokio::spawn(finish(claims.clone(), removals.clone(), r, key, rx));
    }
}

/// Remove a request once its order is stored (or unknown at the marketplace); keep a
/// failed one for a later round.
async fn finish(
    claims: Arc<Mutex<Claims>>,
    removals: Arc<tokio::sync::Notify>,
    request: FetchRequest,
    key: Key,
    rx: oneshot::Receiver<crate::Result<bool>>,
) {
    let done = matches!(rx.await, Ok(Ok(_)));
    if let Ok(mut c) = claims.lock() {
        if done {
            // Busy until its removal is written (see `remove_loop`).
            c.done.push(request);
        } else {
            c.busy.remove(&key);
            c.failed.insert(key, Instant::now() + RETRY_AFTER);
        }
    }
    if done {
        removals.notify_one();
    }
}
