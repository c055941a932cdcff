//! The stock steps: `stock.get` (a SKU's figures as JSON) and `stock.adjust` (a ledger
//! adjustment in the step's fenced commit), both on the catalog's API in
//! [`stockade_sync::stock`].
//!
//! Invariants: `stock.adjust` writes nothing itself — its ledger row and its audit row
//! (`stock.adjust`, actor `workflow:NAME@VERSION/EXECUTION`, the reason in the details)
//! are the step's effects, committed with the step's "succeeded" record under the job's
//! fencing token, so a stale worker writes nothing and a resumed execution never adjusts
//! twice; the ledger row also carries the step's idempotency key as its unique key. The
//! definition asks no stock permission of a workflow (see docs/workflows.md); what it does
//! ask — a reviewed `allow_pii` when the reason is derived from buyer data, since the
//! reason is audited — is enforced here at run time, not only by lint.

use serde_json::{Value, json};
use stockade_sync::SyncError;
use stockade_sync::stock::{Adjustment, SkuStock, adjust_change, sku_stock};

use super::error::{ErrorClass, StepError};
use super::handlers::{Reach, StepCtx, StepDone, StepFuture, StepHandler};
use crate::expr::Evaluated;

/// `stock.get`: `{sku, on_hand, reserved, available, channels: [{connection, buffer,
/// max_displayed, target, acked}]}`. An unknown SKU fails the step.
#[derive(Debug, Default)]
pub struct StockGet;

/// `stock.adjust`: moves on hand by `delta` with a `reason`; its output is the SKU's new
/// figures (as `stock.get` shows them) plus the `delta`.
#[derive(Debug, Default)]
pub struct StockAdjust;

fn invalid(message: impl Into<String>) -> StepError {
    StepError::new(ErrorClass::Invalid, message)
}

fn from_sync(e: SyncError) -> StepError {
    match e {
        SyncError::Invalid(m) => invalid(m),
        // A busy or unreachable database: worth a retry.
        other => StepError::new(ErrorClass::Transient, other.to_string()),
    }
}

/// The `sku` parameter: a non-empty string.
fn sku(value: &Value, kind: &str) -> Result<String, StepError> {
    match value.get("sku") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(_) => Err(invalid(format!("{kind}: `sku` must be a non-empty string"))),
        None => Err(invalid(format!("{kind} needs `sku`"))),
    }
}

/// The `delta` parameter: a whole number (or a string holding one, as text templates
/// render).
fn delta(value: &Value) -> Result<i64, StepError> {
    let bad = || invalid("stock.adjust: `delta` must be a whole number of units");
    match value.get("delta") {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse::<i64>().map_err(|_| bad()),
        Some(_) => Err(bad()),
        None => Err(invalid("stock.adjust needs `delta`")),
    }
}

fn figures(stock: &SkuStock) -> Value {
    serde_json::to_value(stock).unwrap_or(Value::Null)
}

impl StepHandler for StockGet {
    fn reach(&self) -> Reach {
        Reach::Database
    }

    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            let sku = sku(&params.value, "stock.get")?;
            match sku_stock(ctx.store, &sku).await.map_err(from_sync)? {
                Some(stock) => Ok(StepDone {
                    output: figures(&stock),
                    changes: vec![],
                }),
                None => Err(invalid(format!("stock.get: no SKU {sku:?} in the catalog"))),
            }
        })
    }
}

impl StepHandler for StockAdjust {
    fn reach(&self) -> Reach {
        Reach::Database
    }

    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            // The reason is audited: buyer data needs the step's reviewed allow_pii.
            let value = params
                .for_sink(ctx.allow_pii)
                .map_err(|e| StepError::new(ErrorClass::Permission, e.0))?;
            let sku = sku(value, "stock.adjust")?;
            let delta = delta(value)?;
            let reason = match value.get("reason") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => return Err(invalid("stock.adjust needs `reason`")),
            };
            let ukey = format!("workflow:{}", ctx.idempotency_key);
            let adjustment = Adjustment {
                sku: &sku,
                delta,
                reason: &reason,
                ukey: Some(&ukey),
            };
            let (change, stock) = adjust_change(ctx.store, &adjustment)
                .await
                .map_err(from_sync)?;
            let mut output = figures(&stock);
            if let Some(o) = output.as_object_mut() {
                o.insert("delta".into(), json!(delta));
            }
            Ok(StepDone {
                output,
                changes: vec![change],
            })
        })
    }
}
