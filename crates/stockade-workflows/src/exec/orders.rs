//! The order steps: `order.get` (one ingested order) and `marketplace.fetch_orders` (a
//! connection's ingested orders, newest first), read from the store's `orders` and
//! `order_lines` tables.
//!
//! # Buyer data
//! - The connection must be in `permissions.connections` (checked here at run time; an
//!   order of another connection is refused as if it did not exist).
//! - Without `permissions.buyer_fields` the buyer fields are masked: each present field
//!   reads `"[masked]"` (the country code is not PII and stays). Nothing is decrypted.
//! - With it, the fields are decrypted from the orders' vault ciphertext. Such an output
//!   is buyer data: the executor marks its PII paths in the scope (expressions keep the
//!   marking) and stores it **sealed under the vault** in the journal, never as plain
//!   JSON (see [`super::seal`]). A workflow that sets `buyer_fields` needs the executor's
//!   vault ([`super::Executor::with_services`]); without one the step fails.
//!
//! Invariants: read-only (no changes); errors name the connection and order id, never a
//! buyer field.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use stockade_store::sql::{Columns, FromRow};
use stockade_store::sql_params;
use stockade_vault::{FieldContext, Vault};

use super::error::{ErrorClass, StepError};
use super::handlers::{Reach, StepCtx, StepDone, StepFuture, StepHandler};
use crate::expr::Evaluated;

/// Most orders one `marketplace.fetch_orders` returns, and its default.
pub const FETCH_MAX: i64 = 500;
pub const FETCH_DEFAULT: i64 = 50;

/// What a masked buyer field reads.
pub const MASKED: &str = "[masked]";

/// `order.get` and `marketplace.fetch_orders` (`vault` decrypts unmasked buyer fields).
#[derive(Clone, Default)]
pub struct OrderSteps {
    pub vault: Option<Arc<Vault>>,
    /// `true`: `marketplace.fetch_orders`; `false`: `order.get`.
    pub many: bool,
}

impl std::fmt::Debug for OrderSteps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderSteps")
            .field("many", &self.many)
            .finish()
    }
}

/// An order row with its connection.
struct Row {
    cid: i64,
    conn: String,
    market: String,
    ext: String,
    status: String,
    mstatus: String,
    created: i64,
    updated: i64,
    name: Option<Vec<u8>>,
    email: Option<Vec<u8>>,
    phone: Option<Vec<u8>>,
    addr: Option<Vec<u8>>,
}

impl FromRow for Row {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(Row {
            cid: c.get()?,
            conn: c.get()?,
            market: c.get()?,
            ext: c.get()?,
            status: c.get()?,
            mstatus: c.get()?,
            created: c.get()?,
            updated: c.get()?,
            name: c.get()?,
            email: c.get()?,
            phone: c.get()?,
            addr: c.get()?,
        })
    }
}

fn invalid(message: impl Into<String>) -> StepError {
    StepError::new(ErrorClass::Invalid, message)
}

fn transient(e: impl std::fmt::Display) -> StepError {
    StepError::new(ErrorClass::Transient, format!("reading orders: {e}"))
}

fn declared(ctx: &StepCtx<'_>, connection: &str) -> bool {
    ctx.permissions
        .connections
        .iter()
        .any(|c| c.value == connection)
}

fn string(value: &Value, key: &str) -> Option<String> {
    match value.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl OrderSteps {
    async fn open(
        &self,
        column: &str,
        row: &str,
        bytes: Option<&Vec<u8>>,
    ) -> Result<Option<Value>, StepError> {
        let Some(bytes) = bytes else { return Ok(None) };
        let vault = self.vault.as_ref().ok_or_else(|| {
            StepError::new(
                ErrorClass::Permission,
                "buyer_fields needs the server's vault; this executor has none",
            )
        })?;
        let plain = vault
            .decrypt(&FieldContext::new("orders", column, row), bytes)
            .await
            .map_err(|_| {
                invalid("an order's buyer fields could not be decrypted (key shredded?)")
            })?;
        let text = String::from_utf8_lossy(&plain).into_owned();
        Ok(Some(if column == "buyer_address" {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        } else {
            Value::String(text)
        }))
    }

    /// One order as the steps output it, with its lines.
    async fn order(&self, ctx: &StepCtx<'_>, r: Row) -> Result<Value, StepError> {
        let Row {
            cid,
            conn,
            market,
            ext,
            status,
            mstatus,
            created,
            updated,
            name,
            email,
            phone,
            addr,
        } = r;
        let lines: Vec<(String, String, i64)> = ctx
            .store
            .query_as(
                "SELECT line_id, sku, quantity FROM order_lines WHERE connection_id = $1 AND external_id = $2 ORDER BY line_id",
                sql_params![cid, ext.as_str()],
            )
            .await
            .map_err(transient)?;
        let lines: Vec<Value> = lines
            .into_iter()
            .map(|(l, s, q)| json!({ "line_id": l, "sku": s, "quantity": q }))
            .collect();
        let mut buyer = Map::new();
        let address;
        if ctx.permissions.buyer_fields {
            let row = format!("{cid}/{ext}");
            for (key, column, bytes) in [
                ("name", "buyer_name", &name),
                ("email", "buyer_email", &email),
                ("phone", "buyer_phone", &phone),
            ] {
                if let Some(v) = self.open(column, &row, bytes.as_ref()).await? {
                    buyer.insert(key.into(), v);
                }
            }
            address = self
                .open("buyer_address", &row, addr.as_ref())
                .await?
                .unwrap_or(Value::Null);
        } else {
            for (key, bytes) in [("name", &name), ("email", &email), ("phone", &phone)] {
                if bytes.is_some() {
                    buyer.insert(key.into(), json!(MASKED));
                }
            }
            address = if addr.is_some() {
                json!(MASKED)
            } else {
                Value::Null
            };
        }
        Ok(json!({
            "connection": conn, "marketplace": market, "order": ext, "status": status,
            "marketplace_status": mstatus, "created_at_ms": created, "updated_at_ms": updated,
            "lines": lines, "buyer": buyer, "shipping_address": address,
        }))
    }

    async fn get(&self, ctx: &StepCtx<'_>, value: &Value) -> Result<Value, StepError> {
        let order = string(value, "order")
            .ok_or_else(|| invalid("order.get needs `order` (the marketplace's order id)"))?;
        let connection = string(value, "connection");
        if let Some(c) = &connection
            && !declared(ctx, c)
        {
            return Err(StepError::new(
                ErrorClass::Permission,
                format!("order.get: connection {c} is not in permissions.connections"),
            ));
        }
        let rows: Vec<Row> = ctx
            .store
            .query_as(GET, sql_params![order.as_str()])
            .await
            .map_err(transient)?;
        let found = rows
            .into_iter()
            .find(|r| declared(ctx, &r.conn) && connection.as_ref().is_none_or(|c| *c == r.conn))
            .ok_or_else(|| {
                invalid(format!(
                    "order.get: no order {order} in the workflow's connections"
                ))
            })?;
        self.order(ctx, found).await
    }

    async fn fetch(&self, ctx: &StepCtx<'_>, value: &Value) -> Result<Value, StepError> {
        let connection = string(value, "connection")
            .ok_or_else(|| invalid("marketplace.fetch_orders needs `connection`"))?;
        if !declared(ctx, &connection) {
            return Err(StepError::new(
                ErrorClass::Permission,
                format!(
                    "marketplace.fetch_orders: connection {connection} is not in permissions.connections"
                ),
            ));
        }
        let since = match value.get("since") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s.trim())
                .map(|t| t.timestamp_millis())
                .map_err(|_| invalid("marketplace.fetch_orders: `since` is an RFC 3339 time or epoch milliseconds"))?,
            Some(_) => return Err(invalid("marketplace.fetch_orders: `since` is a time")),
        };
        let limit = match value.get("limit") {
            None | Some(Value::Null) => FETCH_DEFAULT,
            Some(v) => v
                .as_i64()
                .filter(|n| (1..=FETCH_MAX).contains(n))
                .ok_or_else(|| {
                    invalid(format!(
                        "marketplace.fetch_orders: `limit` is 1 to {FETCH_MAX}"
                    ))
                })?,
        };
        let status = string(value, "status").unwrap_or_default();
        let rows: Vec<Row> = ctx
            .store
            .query_as(
                FETCH,
                sql_params![connection.as_str(), since, status.as_str(), limit],
            )
            .await
            .map_err(transient)?;
        let mut orders = Vec::with_capacity(rows.len());
        for r in rows {
            orders.push(self.order(ctx, r).await?);
        }
        Ok(json!({ "count": orders.len(), "orders": orders }))
    }
}

const GET: &str = "SELECT c.id, c.name, c.marketplace, o.external_id, o.status, o.marketplace_status,
        o.created_at_ms, o.updated_at_ms, o.buyer_name, o.buyer_email, o.buyer_phone, o.buyer_address
   FROM orders o JOIN connections c ON c.id = o.connection_id
  WHERE o.external_id = $1 ORDER BY c.name";

const FETCH: &str = "SELECT c.id, c.name, c.marketplace, o.external_id, o.status, o.marketplace_status,
        o.created_at_ms, o.updated_at_ms, o.buyer_name, o.buyer_email, o.buyer_phone, o.buyer_address
   FROM orders o JOIN connections c ON c.id = o.connection_id
  WHERE c.name = $1 AND o.updated_at_ms >= $2 AND ($3 = '' OR o.status = $3)
  ORDER BY o.updated_at_ms DESC, o.external_id LIMIT $4";

impl StepHandler for OrderSteps {
    fn reach(&self) -> Reach {
        Reach::Database
    }

    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            let output = if self.many {
                self.fetch(ctx, &params.value).await?
            } else {
                self.get(ctx, &params.value).await?
            };
            Ok(StepDone {
                output,
                changes: vec![],
            })
        })
    }
}
