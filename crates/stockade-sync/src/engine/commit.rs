//! The ingest worker: group commit. Orders from webhooks, polls and tools queue on one
//! channel; the worker takes everything queued (up to `batch_max`), seals the buyer
//! fields and writes them in one transaction (at most `commits_in_flight` at a time),
//! answers every waiting caller only after the commit, and tells the pushers which SKUs
//! changed (a batch notice, tracked for the latency figures).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use stockade_core::order::Order;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{ACTIVE, ACTOR, IngestJob, Inner, Live, Notice, SyncEngine};
use crate::ingest::{self, Source};
use crate::metrics::Metrics;
use crate::{Result, SyncError, now_ms};

impl SyncEngine {
    /// Ingest one order as if it had been fetched: the same idempotent path as webhooks
    /// and polls (tools and tests). Resolves once it is stored.
    pub async fn ingest(&self, connection: &str, order: Order) -> Result<()> {
        let live = self
            .get_live(connection)
            .ok_or_else(|| SyncError::UnknownConnection(connection.to_owned()))?;
        let (tx, rx) = oneshot::channel();
        let job = IngestJob {
            live,
            order,
            source: Source::Poll,
            arrival: Instant::now(),
            replies: vec![tx],
            timed: true,
        };
        self.inner
            .ingest_tx
            .send(job)
            .await
            .map_err(|_| SyncError::ShuttingDown)?;
        rx.await.map_err(|_| SyncError::ShuttingDown)?.map(|_| ())
    }
}

/// Group commit: take everything queued (up to `batch_max`) and write it in one
/// transaction; answer every waiting webhook after the commit.
pub(super) async fn ingest_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<IngestJob>) {
    let permits = Arc::new(Semaphore::new(inner.opts.commits_in_flight.max(1)));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut jobs = vec![first];
        while jobs.len() < inner.opts.batch_max {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let inner = inner.clone();
        tokio::spawn(async move {
            commit_jobs(&inner, jobs).await;
            drop(permit);
        });
    }
}

async fn commit_jobs(inner: &Arc<Inner>, jobs: Vec<IngestJob>) {
    let jobs = super::coalesce::coalesce(jobs);
    let now = now_ms();
    let mut ready = Vec::with_capacity(jobs.len());
    let mut changes = Vec::with_capacity(jobs.len());
    for job in jobs {
        match ingest::seal_buyer(&job.live.key, job.live.id, &job.order) {
            Ok(buyer) => {
                changes.push(ingest::order_change(
                    job.live.id,
                    &job.live.name,
                    &job.order,
                    buyer,
                    job.source,
                    now,
                ));
                ready.push(job);
            }
            Err(e) => {
                tracing::error!(connection = %job.live.name, error = %e, "could not encrypt an order");
                for r in job.replies {
                    let _ = r.send(Err(SyncError::Invalid("encryption failed".into())));
                }
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    match inner.store.commit(&ACTOR, changes).await {
        Ok(receipt) => finish_batch(inner, ready, receipt.last_seq - receipt.first_seq + 1),
        // The database is away (the store logs that once): one by one would fail the
        // same way. Every waiting webhook answers 503 and its marketplace delivers again.
        Err(stockade_store::StoreError::Unavailable(reason)) => {
            tracing::debug!(%reason, orders = ready.len(), "a batch was not stored: the database is unreachable");
            inner.metrics.error(format!(
                "{} order(s) could not be stored: the database is unreachable",
                ready.len()
            ));
            for job in ready {
                for r in job.replies {
                    let e = stockade_store::StoreError::Unavailable(reason.clone());
                    let _ = r.send(Err(SyncError::Store(e)));
                }
            }
        }
        Err(e) if ready.len() > 1 => {
            // One bad change must not hold the others back: write them one by one.
            tracing::warn!(error = %e, orders = ready.len(), "a batch failed; committing its orders one by one");
            for job in ready {
                let change = match ingest::seal_buyer(&job.live.key, job.live.id, &job.order) {
                    Ok(b) => ingest::order_change(
                        job.live.id,
                        &job.live.name,
                        &job.order,
                        b,
                        job.source,
                        now,
                    ),
                    Err(_) => continue,
                };
                match inner.store.commit(&ACTOR, vec![change]).await {
                    Ok(r) => finish_batch(inner, vec![job], r.last_seq - r.first_seq + 1),
                    Err(e) => fail_job(inner, job, e),
                }
            }
        }
        Err(e) => {
            for job in ready {
                fail_job(
                    inner,
                    job,
                    stockade_store::StoreError::Database(e.to_string()),
                );
            }
        }
    }
}

fn fail_job(inner: &Inner, job: IngestJob, e: stockade_store::StoreError) {
    if e.is_unavailable() {
        // Said once by the store, not once per order.
        tracing::debug!(connection = %job.live.name, error = %e, "an order could not be stored");
    } else {
        tracing::error!(connection = %job.live.name, order = %job.order.external_id, error = %e, "an order could not be stored");
    }
    inner.metrics.error(format!(
        "{}: an order could not be stored: {e}",
        job.live.name
    ));
    for r in job.replies {
        let _ = r.send(Err(SyncError::Store(stockade_store::StoreError::Database(
            "not stored".into(),
        ))));
    }
}

fn finish_batch(inner: &Arc<Inner>, jobs: Vec<IngestJob>, applied: i64) {
    let m = &inner.metrics;
    let n = jobs.len() as u64;
    let applied = u64::try_from(applied.max(0)).unwrap_or(0).min(n);
    Metrics::inc(&m.changes_applied, applied);
    Metrics::inc(&m.unchanged, n - applied);
    Metrics::inc(&m.batches, 1);
    Metrics::inc(&m.batched_orders, n);
    let mut skus = HashSet::new();
    let mut arrivals = Vec::with_capacity(jobs.len());
    let mut hooks = 0usize;
    for job in jobs {
        if job.source == Source::Webhook {
            hooks += 1;
        }
        if job.timed {
            m.arrival_to_commit.record(job.arrival.elapsed());
            arrivals.push(job.arrival);
        }
        for l in &job.order.lines {
            skus.insert(l.sku.clone());
        }
        for r in job.replies {
            let _ = r.send(Ok(true));
        }
    }
    // One line per batch, not per webhook (the server logs 2xx deliveries at debug).
    tracing::info!(
        orders = n,
        changed = applied,
        webhooks = hooks,
        "stored a batch of orders"
    );
    if applied == 0 {
        return;
    }
    let first_arrival = arrivals.iter().min().copied().unwrap_or_else(Instant::now);
    // Connections another process owns with a listing among them: its pushers are
    // woken through the database (see `cross_wake`).
    if inner.owned.enabled()
        && inner.live.read().is_ok_and(|l| {
            l.values()
                .any(|l| !inner.owned.may_act(l.id) && inner.listed.wants(l.id, &skus))
        })
    {
        super::cross_wake::request(inner);
    }
    // Only the pushers with a listing among the changed SKUs (see `listed.rs`).
    let mut spared = 0u64;
    let pushers: Vec<Arc<Live>> = inner
        .live
        .read()
        .map(|l| {
            l.values()
                .filter(|l| l.status() == ACTIVE)
                .filter(|l| {
                    let wants = inner.listed.wants(l.id, &skus);
                    spared += u64::from(!wants);
                    wants
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Metrics::inc(&m.pushers_spared, spared);
    Metrics::inc(&m.pushers_woken, pushers.len() as u64);
    if pushers.is_empty() {
        for a in arrivals {
            m.order_to_confirmed.record(a.elapsed());
        }
        return;
    }
    let batch = inner.tracker.next.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut open) = inner.tracker.open.lock() {
        open.insert(batch, (arrivals, pushers.len()));
    }
    let skus = Arc::new(skus);
    for p in pushers {
        let notice = Notice {
            batch,
            skus: skus.clone(),
            first_arrival,
        };
        if p.notice_tx.send(notice).is_err() {
            tracker_done(inner, batch);
        }
        p.woken.fetch_add(1, Ordering::Relaxed);
        p.wake.notify_one();
    }
}

pub(super) fn tracker_done(inner: &Inner, batch: u64) {
    let finished = match inner.tracker.open.lock() {
        Ok(mut open) => match open.get_mut(&batch) {
            Some(entry) => {
                entry.1 = entry.1.saturating_sub(1);
                if entry.1 == 0 {
                    open.remove(&batch).map(|e| e.0)
                } else {
                    None
                }
            }
            None => None,
        },
        Err(_) => None,
    };
    if let Some(arrivals) = finished {
        for a in arrivals {
            inner.metrics.order_to_confirmed.record(a.elapsed());
        }
    }
}
