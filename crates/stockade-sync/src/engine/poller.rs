//! The poller: every `poll_interval`, lists the orders changed since the persisted cursor
//! (minus `poll_overlap`; a new connection looks back `poll_lookback`), ingests them, and
//! moves the cursor only once they are stored — so an order is never skipped, at worst
//! seen twice (ingest is idempotent). It also picks up returns the orders do not show.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stockade_marketplaces::Connector;
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, sql_params};
use tokio::sync::oneshot;

use super::fetch::merge_orders;
use super::{ACTIVE, ACTOR, IngestJob, Inner, Live, SyncEngine, ms, returns};
use crate::ingest::Source;
use crate::metrics::Metrics;
use crate::{Result, SyncError, now_ms};

impl SyncEngine {
    /// Poll one connection now (the demo and tests use it; the poller calls it on a timer).
    pub async fn poll_now(&self, name: &str) -> Result<usize> {
        let live = self
            .get_live(name)
            .ok_or_else(|| SyncError::UnknownConnection(name.to_owned()))?;
        poll_once(&self.inner, &live).await
    }
}

const CURSOR: &str = "SELECT since_ms FROM sync_cursors WHERE connection_id = $1";
const SET_CURSOR: &str = "INSERT INTO sync_cursors (connection_id, since_ms, updated_at_ms) VALUES ($1, $2, $3)
     ON CONFLICT (connection_id) DO UPDATE SET since_ms = excluded.since_ms, updated_at_ms = excluded.updated_at_ms
     WHERE excluded.since_ms > sync_cursors.since_ms";

pub(super) async fn poll_loop(inner: Arc<Inner>, live: Arc<Live>, every: Duration) {
    loop {
        if live.status() == ACTIVE
            && !super::contained(&inner, &live.name)
            && let Err(e) = poll_once(&inner, &live).await
        {
            warn_unless_unreachable!(e, connection = %live.name, error = %e, "polling orders failed");
            inner
                .metrics
                .error(format!("{}: polling failed: {e}", live.name));
        }
        tokio::time::sleep(every).await;
    }
}

/// List orders changed since the persisted cursor (minus the overlap), ingest them all,
/// and move the cursor only after they are stored.
/// Ingest orders read by a poll (or a returns report) and wait until each is stored.
pub(super) async fn ingest_polled(
    inner: &Arc<Inner>,
    live: &Arc<Live>,
    orders: Vec<stockade_core::order::Order>,
) -> Result<()> {
    let mut waits = Vec::with_capacity(orders.len());
    for order in orders {
        let (tx, rx) = oneshot::channel();
        let job = IngestJob {
            live: live.clone(),
            order,
            source: Source::Poll,
            arrival: Instant::now(),
            replies: vec![tx],
            timed: true,
        };
        inner
            .ingest_tx
            .send(job)
            .await
            .map_err(|_| SyncError::ShuttingDown)?;
        waits.push(rx);
    }
    for w in waits {
        w.await.map_err(|_| SyncError::ShuttingDown)??;
    }
    Ok(())
}

async fn poll_once(inner: &Arc<Inner>, live: &Arc<Live>) -> Result<usize> {
    let since = inner
        .store
        .query_one_as(CURSOR, sql_params![live.id])
        .await?;
    let since = since.unwrap_or_else(|| now_ms() - ms(inner.opts.poll_lookback));
    let from = since - ms(inner.opts.poll_overlap);
    let (mut orders, high) = live.connector.list_all_orders(from.max(0)).await?;
    // Returns the orders themselves do not show (TikTok): seen here, or never.
    let returned = live
        .connector
        .returned_orders(Some(from.max(0)), &[])
        .await?;
    merge_orders(&mut orders, returned);
    // Orders the webhooks already stored as listed are not ingested again.
    let orders = super::poll_skip::not_yet_stored(inner, live, orders).await;
    let n = orders.len();
    ingest_polled(inner, live, orders).await?;
    Metrics::inc(&inner.metrics.polled, n as u64);
    inner.metrics.telemetry.ingested(&live.labels(), n as u64);
    let high = high.max(since);
    inner
        .store
        .commit(
            &ACTOR,
            vec![Change::new(
                Mutation::Many {
                    steps: vec![Mutation::Sql {
                        statement: SET_CURSOR,
                        params: sql_params![live.id, high, now_ms()],
                        expect: Expect::Any,
                    }],
                    guard: true,
                },
                AuditEntry::new(
                    "sync.cursor",
                    format!("connection:{}", live.name),
                    AuditDetails::new()
                        .int("since_ms", high)
                        .int("orders", n as i64),
                ),
            )],
        )
        .await?;
    // Returns only a report shows (Amazon): requested when due, followed until done.
    match returns::poll_returns_report(inner, live).await {
        Ok(r) => Ok(n + r),
        Err(e) => {
            warn_unless_unreachable!(e, connection = %live.name, error = %e, "reading the returns report failed; the next poll tries again");
            inner
                .metrics
                .error(format!("{}: returns report failed: {e}", live.name));
            Ok(n)
        }
    }
}
