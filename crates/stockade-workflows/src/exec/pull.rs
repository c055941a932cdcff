//! `marketplace.pull_orders`: pull a connection's orders changed since its poll cursor
//! and ingest them through the sync engine's own ingest path — the one webhooks and the
//! poller use — so an order a webhook missed ends up stored, with its reservations and
//! events, exactly as if the webhook had come. Ingest is idempotent (orders are keyed by
//! connection and marketplace order id, ledger rows by their unique key), so a pull that
//! overlaps webhooks, the poller or a retried step stores nothing twice.
//!
//! Invariants: the connection must be in `permissions.connections` (checked here at run
//! time); the step reaches the marketplace ([`Reach::Outside`]); its output is counts and
//! the connection's name only — no order, no buyer field. The handler exists only where
//! the executor was given the process's [`SyncEngine`] (a server); elsewhere the kind is
//! unsupported.

use serde_json::{Value, json};
use stockade_store::sql_params;
use stockade_sync::{SyncEngine, SyncError};

use super::error::{ErrorClass, StepError};
use super::handlers::{Reach, StepCtx, StepDone, StepFuture, StepHandler};
use crate::expr::Evaluated;

/// The `marketplace.pull_orders` handler, on the process's sync engine.
#[derive(Clone)]
pub struct PullOrders {
    pub sync: SyncEngine,
}

impl std::fmt::Debug for PullOrders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOrders").finish_non_exhaustive()
    }
}

const STORED: &str = "SELECT COUNT(*) FROM orders o JOIN connections c ON c.id = o.connection_id
      WHERE c.name = $1";

fn from_sync(e: SyncError, connection: &str) -> StepError {
    match e {
        SyncError::UnknownConnection(_) | SyncError::Revoked(_) => StepError::new(
            ErrorClass::Invalid,
            format!("marketplace.pull_orders: connection {connection} is not an active connection"),
        ),
        SyncError::Invalid(m) => StepError::new(ErrorClass::Invalid, m),
        // A marketplace or database that did not answer, or a stopping engine: retry.
        other => StepError::new(
            ErrorClass::Transient,
            format!("marketplace.pull_orders {connection}: {other}"),
        ),
    }
}

impl PullOrders {
    async fn pull(&self, ctx: &StepCtx<'_>, value: &Value) -> Result<Value, StepError> {
        let connection = match value.get("connection") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => {
                return Err(StepError::new(
                    ErrorClass::Invalid,
                    "marketplace.pull_orders needs `connection`",
                ));
            }
        };
        if !ctx
            .permissions
            .connections
            .iter()
            .any(|c| c.value == connection)
        {
            return Err(StepError::new(
                ErrorClass::Permission,
                format!(
                    "marketplace.pull_orders: connection {connection} is not in permissions.connections"
                ),
            ));
        }
        let count = || ctx.store.count(STORED, sql_params![connection.as_str()]);
        let transient = |e: stockade_store::StoreError| {
            StepError::new(ErrorClass::Transient, format!("counting orders: {e}"))
        };
        let before = count().await.map_err(transient)?;
        let listed = self
            .sync
            .poll_now(&connection)
            .await
            .map_err(|e| from_sync(e, &connection))?;
        let after = count().await.map_err(transient)?;
        Ok(json!({
            "connection": connection, "listed": listed, "new": (after - before).max(0),
            "stored": after,
        }))
    }
}

impl StepHandler for PullOrders {
    /// It reaches the marketplace.
    fn reach(&self) -> Reach {
        Reach::Outside
    }

    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            let output = self.pull(ctx, &params.value).await?;
            Ok(StepDone {
                output,
                changes: vec![],
            })
        })
    }
}
