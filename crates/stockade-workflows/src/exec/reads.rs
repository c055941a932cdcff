//! Read steps for reports: `orders.summary` (per channel: orders, cancellations, units and
//! the best-selling SKUs of a time window) and `executions.count` (finished executions
//! of a status in a recent window, e.g. failures in the last ten minutes).
//!
//! `orders.summary` also gives `lines`: one plain-text line per channel, ready for an
//! alert (`{{ steps.sales.output.lines | join('\n') }}`).
//!
//! Invariants: read-only ([`Reach::Database`], no changes); counts and identifiers only —
//! no buyer field is read, so none can reach an output. `orders.summary` counts only the
//! connections the workflow declares in `permissions.connections` (an undeclared one
//! named in `connections` is refused). Orders store no prices, so there are no amounts:
//! the summary says so (`amounts: null`) rather than inventing them.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use stockade_core::time::now_ms;
use stockade_store::sql_params;

use super::error::{ErrorClass, StepError};
use super::handlers::{Reach, StepCtx, StepDone, StepFuture, StepHandler};
use crate::expr::Evaluated;

/// The longest window a read step looks back over (a year).
pub const WINDOW_MAX_MS: i64 = 366 * 86_400_000;
/// Best-selling SKUs listed per channel by `orders.summary`.
pub const TOP_SKUS: usize = 5;
/// Finished executions `executions.count` reads at most (the count says when it capped).
pub const COUNT_MAX: i64 = 10_000;

fn invalid(message: impl Into<String>) -> StepError {
    StepError::new(ErrorClass::Invalid, message)
}

fn transient(e: impl std::fmt::Display) -> StepError {
    StepError::new(ErrorClass::Transient, format!("reading the store: {e}"))
}

/// A time parameter: RFC 3339 text or epoch milliseconds (`None` when absent or null).
pub(crate) fn time_param(value: &Value, kind: &str, key: &str) -> Result<Option<i64>, StepError> {
    let bad = || {
        invalid(format!(
            "{kind}: `{key}` is an RFC 3339 time or epoch milliseconds"
        ))
    };
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// The window `[since, until]` from `since`/`until`/`within` (an ISO-8601 duration back
/// from `until`, which defaults to now). One of `since` and `within` is needed.
pub(crate) fn window(value: &Value, kind: &str) -> Result<(i64, i64), StepError> {
    let until = time_param(value, kind, "until")?.unwrap_or_else(now_ms);
    let within = match value.get("within") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let d = crate::duration::parse(s.trim())
                .map_err(|e| invalid(format!("{kind}: `within`: {e}")))?;
            Some(i64::try_from(d.duration.as_millis()).unwrap_or(i64::MAX))
        }
        Some(_) => {
            return Err(invalid(format!(
                "{kind}: `within` is an ISO-8601 duration (PT10M, P1D)"
            )));
        }
    };
    let since = match (time_param(value, kind, "since")?, within) {
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "{kind}: give `since` or `within`, not both"
            )));
        }
        (Some(s), None) => s,
        (None, Some(w)) => until.saturating_sub(w),
        (None, None) => return Err(invalid(format!("{kind} needs `since` or `within`"))),
    };
    if since > until || until - since > WINDOW_MAX_MS {
        return Err(invalid(format!(
            "{kind}: the window must run forward and span at most 366 days"
        )));
    }
    Ok((since, until))
}

fn rfc3339(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    })
}

/// The connections a read covers: `connections` if given (each declared), else every
/// declared one.
pub(crate) fn covered(
    ctx: &StepCtx<'_>,
    value: &Value,
    kind: &str,
) -> Result<Vec<String>, StepError> {
    let declared: Vec<String> = ctx
        .permissions
        .connections
        .iter()
        .map(|c| c.value.clone())
        .collect();
    let asked = match value.get("connections") {
        None | Some(Value::Null) => return Ok(declared),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                invalid(format!(
                    "{kind}: `connections` is a list of connection names"
                ))
            })?,
        Some(_) => {
            return Err(invalid(format!(
                "{kind}: `connections` is a list of connection names"
            )));
        }
    };
    for c in &asked {
        if !declared.contains(c) {
            return Err(StepError::new(
                ErrorClass::Permission,
                format!("{kind}: connection {c} is not in permissions.connections"),
            ));
        }
    }
    Ok(asked)
}

/// `orders.summary`: per declared connection, the orders created in the window.
#[derive(Debug, Default)]
pub struct OrdersSummary;

const BY_STATUS: &str = "SELECT c.name, c.marketplace, o.status, COUNT(*) FROM orders o
       JOIN connections c ON c.id = o.connection_id
      WHERE o.created_at_ms >= $1 AND o.created_at_ms < $2
      GROUP BY c.name, c.marketplace, o.status";

const UNITS: &str = "SELECT c.name, l.sku, CAST(SUM(l.quantity) AS BIGINT) FROM order_lines l
       JOIN orders o ON o.connection_id = l.connection_id AND o.external_id = l.external_id
       JOIN connections c ON c.id = o.connection_id
      WHERE o.created_at_ms >= $1 AND o.created_at_ms < $2 AND o.status <> 'cancelled'
      GROUP BY c.name, l.sku";

#[derive(Default)]
struct Channel {
    marketplace: String,
    orders: i64,
    cancelled: i64,
    by_status: BTreeMap<String, i64>,
    units: i64,
    skus: Vec<(String, i64)>,
}

impl OrdersSummary {
    async fn summary(&self, ctx: &StepCtx<'_>, value: &Value) -> Result<Value, StepError> {
        let kind = "orders.summary";
        let (since, until) = window(value, kind)?;
        let names = covered(ctx, value, kind)?;
        if names.is_empty() {
            return Err(invalid(
                "orders.summary: declare the connections to summarise in permissions.connections",
            ));
        }
        let mut channels: BTreeMap<String, Channel> = names
            .iter()
            .map(|n| (n.clone(), Channel::default()))
            .collect();
        let rows: Vec<(String, String, String, i64)> = ctx
            .store
            .query_as(BY_STATUS, sql_params![since, until])
            .await
            .map_err(transient)?;
        for (name, market, status, n) in rows {
            if let Some(c) = channels.get_mut(&name) {
                c.marketplace = market;
                c.orders += n;
                if status == "cancelled" {
                    c.cancelled += n;
                }
                *c.by_status.entry(status).or_default() += n;
            }
        }
        let rows: Vec<(String, String, i64)> = ctx
            .store
            .query_as(UNITS, sql_params![since, until])
            .await
            .map_err(transient)?;
        for (name, sku, units) in rows {
            if let Some(c) = channels.get_mut(&name) {
                c.units += units;
                c.skus.push((sku, units));
            }
        }
        let (mut orders, mut cancelled, mut units) = (0, 0, 0);
        let mut out = Vec::with_capacity(channels.len());
        let mut lines = Vec::with_capacity(channels.len());
        for (name, mut c) in channels {
            orders += c.orders;
            cancelled += c.cancelled;
            units += c.units;
            c.skus
                .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let top: Vec<Value> = c
                .skus
                .iter()
                .take(TOP_SKUS)
                .map(|(s, u)| json!({ "sku": s, "units": u }))
                .collect();
            let best = c
                .skus
                .iter()
                .take(3)
                .map(|(s, u)| format!("{s} ×{u}"))
                .collect::<Vec<_>>()
                .join(", ");
            lines.push(format!(
                "{name}: orders {}, cancelled {}, units {}{}",
                c.orders,
                c.cancelled,
                c.units,
                if best.is_empty() {
                    String::new()
                } else {
                    format!("; best sellers {best}")
                }
            ));
            out.push(json!({
                "connection": name, "marketplace": c.marketplace, "orders": c.orders,
                "cancelled": c.cancelled, "units": c.units, "skus": c.skus.len(),
                "by_status": Map::from_iter(c.by_status.into_iter().map(|(k, v)| (k, json!(v)))),
                "top_skus": top,
            }));
        }
        Ok(json!({
            "since": rfc3339(since), "until": rfc3339(until), "channels": out, "lines": lines,
            "total": { "orders": orders, "cancelled": cancelled, "units": units },
            "amounts": Value::Null,
        }))
    }
}

impl StepHandler for OrdersSummary {
    fn reach(&self) -> Reach {
        Reach::Database
    }

    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            let output = self.summary(ctx, &params.value).await?;
            Ok(StepDone {
                output,
                changes: vec![],
            })
        })
    }
}

/// `executions.count`: finished workflow executions of a status in a window.
#[derive(Debug, Default)]
pub struct ExecutionsCount;

const FINISHED: &str = "SELECT payload FROM jobs
      WHERE kind = 'workflow' AND state = $1 AND finished_at_ms > $2 AND finished_at_ms <= $3
      ORDER BY finished_at_ms DESC LIMIT $4";

/// The workflow a job's payload names (nothing else of the payload is read).
fn workflow_of(payload: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(default)]
        workflow: String,
    }
    serde_json::from_str::<Named>(payload)
        .map(|n| n.workflow)
        .unwrap_or_default()
}

impl ExecutionsCount {
    async fn count(&self, ctx: &StepCtx<'_>, value: &Value) -> Result<Value, StepError> {
        let kind = "executions.count";
        let status = match value.get("status") {
            None | Some(Value::Null) => "failed".to_owned(),
            Some(Value::String(s))
                if ["failed", "succeeded", "cancelled"].contains(&s.as_str()) =>
            {
                s.clone()
            }
            Some(_) => {
                return Err(invalid(
                    "executions.count: `status` is failed, succeeded or cancelled",
                ));
            }
        };
        let only = match value.get("workflow") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err(invalid("executions.count: `workflow` is a workflow name")),
        };
        let (since, until) = window(value, kind)?;
        let rows: Vec<(String,)> = ctx
            .store
            .query_as(
                FINISHED,
                sql_params![status.as_str(), since, until, COUNT_MAX],
            )
            .await
            .map_err(transient)?;
        let capped = rows.len() as i64 >= COUNT_MAX;
        let mut by: BTreeMap<String, i64> = BTreeMap::new();
        for (payload,) in rows {
            let name = workflow_of(&payload);
            if only.as_ref().is_none_or(|o| *o == name) {
                *by.entry(name).or_default() += 1;
            }
        }
        let count: i64 = by.values().sum();
        Ok(json!({
            "count": count, "status": status, "since": rfc3339(since), "until": rfc3339(until),
            "workflows": Map::from_iter(by.into_iter().map(|(k, v)| (k, json!(v)))),
            "capped": capped,
        }))
    }
}

impl StepHandler for ExecutionsCount {
    fn reach(&self) -> Reach {
        Reach::Database
    }

    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            let output = self.count(ctx, &params.value).await?;
            Ok(StepDone {
                output,
                changes: vec![],
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_since_or_within_back_from_until() {
        let until = "2026-12-06T00:00:00Z";
        let w = window(&json!({ "until": until, "within": "PT10M" }), "k").unwrap();
        assert_eq!(w.1 - w.0, 600_000);
        let (a, b) = window(
            &json!({ "since": "2026-12-05T16:00:00+08:00", "until": until }),
            "k",
        )
        .unwrap();
        assert_eq!(b - a, 16 * 3_600_000);
        for bad in [
            json!({ "until": until }),
            json!({ "until": until, "since": until, "within": "P1D" }),
            json!({ "until": until, "within": "P400D" }),
            json!({ "until": until, "since": "2026-12-07T00:00:00Z" }),
            json!({ "within": "ten minutes" }),
        ] {
            assert_eq!(
                window(&bad, "k").unwrap_err().class,
                ErrorClass::Invalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn only_the_workflow_name_is_read_from_a_payload() {
        assert_eq!(
            workflow_of(r#"{"workflow":"sync-orders","inputs":{"x":1}}"#),
            "sync-orders"
        );
        assert_eq!(workflow_of("not json"), "");
    }
}
