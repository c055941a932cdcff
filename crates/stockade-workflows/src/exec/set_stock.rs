//! `marketplace.set_stock`: set the quantity a connection's listing of a SKU shows, and
//! let the sync engine's pusher send it (the existing push path: retries, backoff,
//! `push_failed` events, acknowledgements).
//!
//! The step sets the listing's target quantity and bumps its target version in the
//! step's fenced journal commit (audited `workflow.set_stock`); the pusher of that
//! connection pushes every listing whose target version is ahead of what the channel
//! confirmed. The target is an override until the SKU's stock next moves: then the sync
//! engine recomputes it from the stock formula (available − buffer, capped), as for any
//! listing. The connection must be in `permissions.connections` (checked at run time).

use serde_json::{Value, json};
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, sql_params};

use super::error::{ErrorClass, StepError};
use super::handlers::{StepCtx, StepDone, StepFuture, StepHandler};
use crate::expr::Evaluated;

/// The `marketplace.set_stock` handler.
#[derive(Debug, Default)]
pub struct SetStock;

const SET: &str = "UPDATE listings SET target_qty = $1, target_version = target_version + 1
  WHERE connection_id = (SELECT id FROM connections WHERE name = $2) AND sku = $3";

fn invalid(message: impl Into<String>) -> StepError {
    StepError::new(ErrorClass::Invalid, message)
}

fn text(value: &Value, key: &str) -> Result<String, StepError> {
    match value.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(invalid(format!(
            "marketplace.set_stock needs `{key}` (a string)"
        ))),
    }
}

fn quantity(value: &Value) -> Result<i64, StepError> {
    let n = match value.get("quantity") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    n.filter(|n| (0..=i64::from(i32::MAX)).contains(n))
        .ok_or_else(|| invalid("marketplace.set_stock: `quantity` is a whole number ≥ 0"))
}

impl StepHandler for SetStock {
    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            let value = &params.value;
            let connection = text(value, "connection")?;
            if !ctx
                .permissions
                .connections
                .iter()
                .any(|c| c.value == connection)
            {
                return Err(StepError::new(
                    ErrorClass::Permission,
                    format!(
                        "marketplace.set_stock: connection {connection} is not in permissions.connections"
                    ),
                ));
            }
            let sku = text(value, "sku")?;
            let qty = quantity(value)?;
            let found = ctx
                .store
                .count(
                    "SELECT COUNT(*) FROM listings l JOIN connections c ON c.id = l.connection_id
                      WHERE c.name = $1 AND l.sku = $2",
                    sql_params![connection.as_str(), sku.as_str()],
                )
                .await
                .map_err(|e| StepError::new(ErrorClass::Transient, e.to_string()))?;
            if found != 1 {
                return Err(invalid(format!(
                    "marketplace.set_stock: connection {connection} has no listing of {sku}"
                )));
            }
            let change = Change::new(
                Mutation::Sql {
                    statement: SET,
                    params: sql_params![qty, connection.as_str(), sku.as_str()],
                    expect: Expect::One("listing"),
                },
                AuditEntry::new(
                    "workflow.set_stock",
                    format!("listing:{connection}/{sku}"),
                    AuditDetails::new()
                        .str("step", ctx.step)
                        .int("quantity", qty),
                ),
            );
            Ok(StepDone {
                output: json!({ "connection": connection, "sku": sku, "quantity": qty }),
                changes: vec![change],
            })
        })
    }
}
