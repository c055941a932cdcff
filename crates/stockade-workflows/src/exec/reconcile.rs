//! `stock.reconcile_report`: per declared connection, what a nightly reconciliation report
//! shows — listings in drift, unmatched order lines and oversold orders — from what the
//! sync engine already keeps: each listing's target (`target_qty`/`target_version`), what
//! was pushed (`pushed_version`), what the channel confirmed (`acked_qty`) and what the
//! reconciler last read back (`channel_qty`); the unmatched lines of
//! [`stockade_sync::unmatched::unmatched_lines`]; and the orders' `oversold_units`.
//!
//! A listing is in drift when its newest target is not pushed yet (`pending`), when the
//! channel confirmed another quantity than the target (`unconfirmed`), or when the
//! quantity read back differs from the target (`read_back`).
//!
//! `lines` gives one plain-text line per connection, ready for an alert.
//!
//! Invariants: read-only ([`Reach::Database`]); SKUs, listing figures, marketplace order
//! ids and counts only — no buyer field is read. Lists are capped ([`REPORT_ROWS`]) with
//! the full counts beside them.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use stockade_store::sql::{Columns, FromRow};
use stockade_store::sql_params;

use super::error::{ErrorClass, StepError};
use super::handlers::{Reach, StepCtx, StepDone, StepFuture, StepHandler};
use super::reads::{covered, time_param};
use crate::expr::Evaluated;

/// Rows listed per connection and section (the counts are complete).
pub const REPORT_ROWS: usize = 50;

/// The `stock.reconcile_report` handler.
#[derive(Debug, Default)]
pub struct ReconcileReport;

const LISTINGS: &str = "SELECT c.name, l.sku, l.target_qty, l.target_version, l.pushed_version,
            l.acked_qty, l.channel_qty
       FROM listings l JOIN connections c ON c.id = l.connection_id
      ORDER BY c.name, l.sku";

const OVERSOLD: &str = "SELECT c.name, o.external_id, o.oversold_units FROM orders o
       JOIN connections c ON c.id = o.connection_id
      WHERE o.oversold_units > 0 AND o.created_at_ms >= $1
      ORDER BY c.name, o.created_at_ms DESC, o.external_id";

struct ListingRow {
    conn: String,
    sku: String,
    target: i64,
    version: i64,
    pushed: i64,
    acked: Option<i64>,
    read: Option<i64>,
}

impl FromRow for ListingRow {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(ListingRow {
            conn: c.get()?,
            sku: c.get()?,
            target: c.get()?,
            version: c.get()?,
            pushed: c.get()?,
            acked: c.get()?,
            read: c.get()?,
        })
    }
}

#[derive(Default)]
struct Section {
    count: usize,
    rows: Vec<Value>,
}

impl Section {
    fn push(&mut self, row: Value) {
        self.count += 1;
        if self.rows.len() < REPORT_ROWS {
            self.rows.push(row);
        }
    }
    fn json(self) -> Value {
        json!({ "count": self.count, "rows": self.rows })
    }
}

#[derive(Default)]
struct Report {
    listings: usize,
    drift: Section,
    unmatched: Section,
    unmatched_units: i64,
    oversold: Section,
    oversold_units: i64,
}

fn transient(e: impl std::fmt::Display) -> StepError {
    StepError::new(ErrorClass::Transient, format!("reading the store: {e}"))
}

/// Why a listing is in drift (`None`: it is not).
fn drift(
    target: i64,
    version: i64,
    pushed: i64,
    acked: Option<i64>,
    read: Option<i64>,
) -> Option<&'static str> {
    if pushed < version {
        Some("pending")
    } else if acked != Some(target) {
        Some("unconfirmed")
    } else if read.is_some_and(|r| r != target) {
        Some("read_back")
    } else {
        None
    }
}

impl ReconcileReport {
    async fn report(&self, ctx: &StepCtx<'_>, value: &Value) -> Result<Value, StepError> {
        let kind = "stock.reconcile_report";
        let names = covered(ctx, value, kind)?;
        if names.is_empty() {
            return Err(StepError::new(
                ErrorClass::Invalid,
                "stock.reconcile_report: declare the connections to report on in permissions.connections",
            ));
        }
        let since = time_param(value, kind, "since")?.unwrap_or(0);
        let mut reports: BTreeMap<String, Report> = names
            .iter()
            .map(|n| (n.clone(), Report::default()))
            .collect();
        let rows: Vec<ListingRow> = ctx
            .store
            .query_as(LISTINGS, vec![])
            .await
            .map_err(transient)?;
        for ListingRow {
            conn,
            sku,
            target,
            version,
            pushed,
            acked,
            read,
        } in rows
        {
            let Some(r) = reports.get_mut(&conn) else {
                continue;
            };
            r.listings += 1;
            if let Some(why) = drift(target, version, pushed, acked, read) {
                r.drift.push(json!({
                    "sku": sku, "why": why, "target": target, "pushed": pushed >= version,
                    "confirmed": acked, "read_back": read,
                }));
            }
        }
        let lines = stockade_sync::unmatched::unmatched_lines(ctx.store)
            .await
            .map_err(transient)?;
        for l in lines {
            let Some(r) = reports.get_mut(&l.connection) else {
                continue;
            };
            if l.open {
                r.unmatched_units += l.quantity;
            }
            r.unmatched.push(json!({
                "sku": l.sku, "order": l.order, "line": l.line, "quantity": l.quantity, "open": l.open,
            }));
        }
        let rows: Vec<(String, String, i64)> = ctx
            .store
            .query_as(OVERSOLD, sql_params![since])
            .await
            .map_err(transient)?;
        for (conn, order, units) in rows {
            let Some(r) = reports.get_mut(&conn) else {
                continue;
            };
            r.oversold_units += units;
            r.oversold.push(json!({ "order": order, "units": units }));
        }
        let mut problems = 0;
        let mut lines = Vec::new();
        let channels: Vec<Value> = reports
            .into_iter()
            .map(|(name, r)| {
                let n = r.drift.count + r.unmatched.count + r.oversold.count;
                problems += n;
                lines.push(format!(
                    "{name}: listings in drift {} of {}; unmatched lines {}, open units {}; oversold orders {}, units short {}",
                    r.drift.count,
                    r.listings,
                    r.unmatched.count,
                    r.unmatched_units,
                    r.oversold.count,
                    r.oversold_units
                ));
                json!({
                    "connection": name, "listings": r.listings, "problems": n,
                    "drift": r.drift.json(), "unmatched": r.unmatched.json(),
                    "unmatched_open_units": r.unmatched_units,
                    "oversold": r.oversold.json(), "oversold_units": r.oversold_units,
                })
            })
            .collect();
        Ok(json!({
            "problems": problems, "clean": problems == 0, "channels": channels, "lines": lines,
        }))
    }
}

impl StepHandler for ReconcileReport {
    fn reach(&self) -> Reach {
        Reach::Database
    }

    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            let output = self.report(ctx, &params.value).await?;
            Ok(StepDone {
                output,
                changes: vec![],
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::drift;

    #[test]
    fn drift_is_pending_then_unconfirmed_then_read_back() {
        assert_eq!(drift(5, 2, 1, Some(5), None), Some("pending"));
        assert_eq!(drift(5, 2, 2, Some(4), None), Some("unconfirmed"));
        assert_eq!(drift(5, 2, 2, None, None), Some("unconfirmed"));
        assert_eq!(drift(5, 2, 2, Some(5), Some(3)), Some("read_back"));
        assert_eq!(drift(5, 2, 2, Some(5), Some(5)), None);
        assert_eq!(drift(5, 2, 2, Some(5), None), None);
    }
}
