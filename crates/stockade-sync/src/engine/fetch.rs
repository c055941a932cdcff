//! Webhook fetches: a delivery announces an order id; the fetcher gathers the ids that
//! arrive within `fetch_wait` (up to `fetch_batch`) into one `get_orders` call per
//! connection (at most `fetch_concurrency` at a time), retries throttling and server
//! errors twice, and hands the orders to the ingest worker. Every waiting delivery is
//! answered: stored, unknown at the marketplace (`Ok(false)`), or unavailable (503).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use stockade_core::event::{Event, MarketFailure};
use stockade_core::order::Order;
use stockade_marketplaces::{Connector, MarketError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{IngestJob, Inner, Live, market_failure, record_event};
use crate::ingest::Source;
use crate::{Result, SyncError};

type Reply = oneshot::Sender<Result<bool>>;
/// Per order id: the first arrival, every waiting delivery, and whether each still times it.
type Waiting = (Instant, Vec<Reply>, Vec<Arc<AtomicU8>>);

pub(super) struct FetchJob {
    pub(super) id: String,
    pub(super) arrival: Instant,
    pub(super) reply: oneshot::Sender<Result<bool>>,
    /// [`WAITING`] until the marketplace answered ([`FETCHED`]), unless the webhook
    /// stored the notification's summary first ([`SUMMARISED`]): the fetch then only
    /// fills the order in and is not counted in the latency figures.
    pub(super) state: Arc<AtomicU8>,
}

/// The marketplace has not answered the fetch yet.
pub(super) const WAITING: u8 = 0;
/// Fetched; the order is on its way to the ingest (a summary would add nothing).
pub(super) const FETCHED: u8 = 1;
/// The webhook stored the notification's summary while the fetch waited.
pub(super) const SUMMARISED: u8 = 2;

pub(super) fn unavailable_reason(e: &SyncError) -> String {
    match e {
        SyncError::Market(m) => format!("the order could not be fetched ({})", m.kind),
        SyncError::Store(_) => "the order could not be stored".into(),
        SyncError::ShuttingDown => "sync is stopping".into(),
        _ => "the order could not be processed".into(),
    }
}

/// Fetched orders whose goods came back in a return the order does not show (TikTok's
/// Return & Refund API) become returned orders. A failure keeps the fetched orders as
/// they are: the poller looks for returns again.
async fn with_returns(live: &Live, mut orders: Vec<Order>) -> Vec<Order> {
    use stockade_core::order::OrderStatus;
    let shipped: Vec<String> = orders
        .iter()
        .filter(|o| matches!(o.status, OrderStatus::Shipped | OrderStatus::Delivered))
        .map(|o| o.external_id.clone())
        .collect();
    if shipped.is_empty() {
        return orders;
    }
    match live.connector.returned_orders(None, &shipped).await {
        Ok(returned) => merge_orders(&mut orders, returned),
        Err(e) => {
            tracing::warn!(connection = %live.name, error = %e, "looking up returns failed; the poller tries again");
        }
    }
    orders
}

/// Replace orders by their newer version (same external id), adding the others.
pub(super) fn merge_orders(orders: &mut Vec<Order>, newer: Vec<Order>) {
    for n in newer {
        match orders.iter_mut().find(|o| o.external_id == n.external_id) {
            Some(o) => *o = n,
            None => orders.push(n),
        }
    }
}

/// Gather webhook order ids into batched fetches.
pub(super) async fn fetch_loop(
    inner: Arc<Inner>,
    live: Arc<Live>,
    mut rx: mpsc::UnboundedReceiver<FetchJob>,
) {
    let permits = Arc::new(Semaphore::new(inner.opts.fetch_concurrency.max(1)));
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + inner.opts.fetch_wait;
        while jobs.len() < inner.opts.fetch_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(j)) => jobs.push(j),
                    _ => break,
                },
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (inner, live) = (inner.clone(), live.clone());
        tokio::spawn(async move {
            fetch_batch(&inner, &live, jobs).await;
            drop(permit);
        });
    }
}

async fn fetch_batch(inner: &Arc<Inner>, live: &Arc<Live>, jobs: Vec<FetchJob>) {
    let mut by_id: HashMap<String, Waiting> = HashMap::new();
    for j in jobs {
        let e = by_id
            .entry(j.id)
            .or_insert((j.arrival, Vec::new(), Vec::new()));
        e.0 = e.0.min(j.arrival);
        e.1.push(j.reply);
        e.2.push(j.state);
    }
    let ids: Vec<String> = by_id.keys().cloned().collect();
    let mut attempt = 0u32;
    let orders = loop {
        attempt += 1;
        match live.connector.get_orders(&ids).await {
            Ok(o) => break o,
            Err(e) if attempt < 3 && retryable(&e) => {
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(e) => {
                inner
                    .metrics
                    .error(format!("{}: fetching orders failed: {e}", live.name));
                let failure = MarketFailure {
                    attempts: Some(i64::from(attempt)),
                    orders: Some(i64::try_from(ids.len()).unwrap_or(i64::MAX)),
                    ..market_failure(&live.name, &e)
                };
                let _ = record_event(inner, Event::FetchFailed(failure)).await;
                let err = SyncError::Market(e);
                for (_, (_, replies, _)) in by_id {
                    for r in replies {
                        let _ = r.send(Err(SyncError::Invalid(unavailable_reason(&err))));
                    }
                }
                return;
            }
        }
    };
    let orders = with_returns(live, orders).await;
    for order in orders {
        let Some((arrival, replies, states)) = by_id.remove(&order.external_id) else {
            continue;
        };
        for s in &states {
            let _ = s.compare_exchange(WAITING, FETCHED, Ordering::AcqRel, Ordering::Acquire);
        }
        let job = IngestJob {
            live: live.clone(),
            order,
            source: Source::Webhook,
            arrival,
            replies,
            timed: states.iter().any(|s| s.load(Ordering::Acquire) == FETCHED),
        };
        if let Err(e) = inner.ingest_tx.send(job).await {
            for r in e.0.replies {
                let _ = r.send(Err(SyncError::ShuttingDown));
            }
        }
    }
    // Ids the marketplace does not know: nothing to store (the poller would find them
    // later if they appear).
    for (id, (_, replies, _)) in by_id {
        tracing::info!(connection = %live.name, order = %id, "an announced order was not found at the marketplace");
        for r in replies {
            let _ = r.send(Ok(false));
        }
    }
}

fn retryable(e: &MarketError) -> bool {
    use stockade_marketplaces::ErrorKind as K;
    matches!(e.kind, K::Throttled | K::Server | K::Transport)
}
