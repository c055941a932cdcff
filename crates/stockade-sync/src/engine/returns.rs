//! Returns a marketplace reports asynchronously (Amazon's returns report): requested at
//! most every `returns_report_interval` per connection, each report covering the returns
//! requested in the last 45 days (or since the last covered time), followed across polls
//! and restarts from `return_reports`, and ingested as returned orders — the ledger's
//! unique (line, restock) key makes a return seen twice restock once.

use std::sync::Arc;

use stockade_marketplaces::{Connector, ErrorKind, ReturnsReport};
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, SqlValue, sql_params};

use super::{ACTOR, Inner, Live, ms};
use crate::{Result, now_ms};

const LOAD: &str = "SELECT covered_ms, requested_at_ms, report_id, to_ms FROM return_reports WHERE connection_id = $1";
const REQUESTED: &str = "INSERT INTO return_reports (connection_id, covered_ms, requested_at_ms, report_id, from_ms, to_ms, updated_at_ms)
     VALUES ($1, NULL, $2, $3, $4, $5, $2)
     ON CONFLICT (connection_id) DO UPDATE SET requested_at_ms = excluded.requested_at_ms,
        report_id = excluded.report_id, from_ms = excluded.from_ms, to_ms = excluded.to_ms,
        updated_at_ms = excluded.updated_at_ms";
const FINISHED: &str = "UPDATE return_reports SET covered_ms = $2, report_id = NULL, from_ms = NULL, to_ms = NULL, updated_at_ms = $3
     WHERE connection_id = $1 AND report_id = $4";
const DROPPED: &str =
    "UPDATE return_reports SET report_id = NULL, from_ms = NULL, to_ms = NULL, updated_at_ms = $2
     WHERE connection_id = $1 AND report_id = $3";

/// Each returns report covers returns requested this far back (Amazon's 30-day return
/// window plus the time a package takes to come back).
const RETURNS_WINDOW_MS: i64 = 45 * 86_400_000;
/// The longest range one returns report may cover (60 days).
const MAX_REPORT_RANGE_MS: i64 = 60 * 86_400_000 - 3_600_000;

/// A report still not done after this long is given up and requested again.
const REPORT_GIVE_UP_MS: i64 = 24 * 3600 * 1000;

/// A connection's row of `return_reports` as [`LOAD`] reads it.
type ReportRow = (Option<i64>, i64, Option<String>, Option<i64>);

/// One step for the connection's returns report: request one when due, or follow the
/// one in flight; once done, ingest its returns. Returns how many orders it restocked.
pub(super) async fn poll_returns_report(inner: &Arc<Inner>, live: &Arc<Live>) -> Result<usize> {
    let Some(min_interval) = live.connector.returns_report() else {
        return Ok(0);
    };
    let every = ms(inner.opts.returns_report_interval.unwrap_or(min_interval));
    let now = now_ms();
    let row: Option<ReportRow> = inner.store.query_one_as(LOAD, sql_params![live.id]).await?;
    let (covered, requested_at, id, to) = row.unwrap_or((None, i64::MIN, None, None));
    let in_flight = id.zip(to);
    let (report_id, to) = match in_flight {
        Some(x) => x,
        None if now.saturating_sub(requested_at) >= every => {
            // A return is listed by the day it was requested and may reach the seller
            // weeks later: every report looks back over the whole return window (a
            // longer outage: back to the covered time, as far as Amazon allows).
            let window = now - RETURNS_WINDOW_MS;
            let from = match covered {
                Some(c) => window.min(c - ms(inner.opts.poll_overlap)),
                None => window,
            }
            .max(now - MAX_REPORT_RANGE_MS);
            let id = live
                .connector
                .request_returns_report(from.max(0), now)
                .await?;
            record(
                inner,
                live,
                REQUESTED,
                sql_params![live.id, now, id.as_str(), from.max(0), now],
                "sync.returns_report.request",
            )
            .await?;
            (id, now)
        }
        None => return Ok(0),
    };
    let outcome = match live.connector.check_returns_report(&report_id).await {
        Ok(o) => o,
        Err(e) if e.kind == ErrorKind::NotFound => ReturnsReport::Failed("not found".into()),
        Err(e) => return Err(e.into()),
    };
    match outcome {
        ReturnsReport::Pending => {
            if now.saturating_sub(requested_at.max(0)) > REPORT_GIVE_UP_MS {
                drop_report(inner, live, &report_id, "not done after a day").await?;
            }
            Ok(0)
        }
        ReturnsReport::Failed(why) => {
            drop_report(inner, live, &report_id, &why).await?;
            Ok(0)
        }
        ReturnsReport::Done(orders) => {
            let n = orders.len();
            super::poller::ingest_polled(inner, live, orders).await?;
            record(
                inner,
                live,
                FINISHED,
                sql_params![live.id, to, now_ms(), report_id.as_str()],
                "sync.returns_report.done",
            )
            .await?;
            Ok(n)
        }
    }
}

async fn drop_report(inner: &Arc<Inner>, live: &Arc<Live>, id: &str, why: &str) -> Result<()> {
    tracing::warn!(connection = %live.name, report = %id, reason = %why, "the returns report failed; the next one covers its range again");
    record(
        inner,
        live,
        DROPPED,
        sql_params![live.id, now_ms(), id],
        "sync.returns_report.failed",
    )
    .await
}

async fn record(
    inner: &Arc<Inner>,
    live: &Arc<Live>,
    statement: &'static str,
    params: Vec<SqlValue>,
    action: &'static str,
) -> Result<()> {
    inner
        .store
        .commit(
            &ACTOR,
            vec![Change::new(
                Mutation::Sql {
                    statement,
                    params,
                    expect: Expect::Any,
                },
                AuditEntry::new(
                    action,
                    format!("connection:{}", live.name),
                    AuditDetails::new(),
                ),
            )],
        )
        .await?;
    Ok(())
}
