//! One idempotent ingest for webhooks and polls: an order change becomes one audited
//! change that writes the order, its encrypted buyer fields, its lines and its stock
//! ledger entries, grouped with other changes into one transaction (group commit).
//!
//! Idempotence is in the SQL, so it holds across processes and restarts:
//! - the order row is keyed by (connection, external id) and only moves forward along
//!   the lifecycle (or to a newer marketplace status of the same rank); a duplicate, a
//!   replay or a late older status touches no row, and then nothing else of the change
//!   runs and no audit row is written (`Mutation::Many { guard: true }`). One exception
//!   at the same rank: an order stored without any buyer field (from a notification's
//!   summary, [`Source::Notification`]) is filled in when its fetched version brings
//!   them, once (its stock movements are already there, so only the order row changes);
//! - each ledger entry has a unique key per (order line, movement), so a unit is never
//!   reserved, committed, released or restocked twice;
//! - the stock of a SKU and its listings' targets follow from the ledger by triggers in
//!   the same transaction (migration 0004), where oversells are flagged as well;
//! - a line whose SKU is not in the catalog is stored unmatched and raised as an event
//!   (migration 0006); `sku import` reserves it once the SKU exists ([`crate::unmatched`]).
//!
//! Every step is one row of a multi-row statement (`crate::ingest_rows`): SQLite runs
//! them one by one in the order below; PostgreSQL writes a whole batch with one
//! statement per table (order upsert, stock locks, each movement, lines, events).
//!
//! # Order events
//! The change appends `order.created` when it inserted the order row and
//! `order.cancelled` when it moved a stored order to cancelled from another status (an
//! order first seen already cancelled is `order.created` with status `cancelled`: it
//! released nothing). Both carry the connection, marketplace, order id, line count and
//! status, never buyer data. Whether the upsert inserted or updated is not visible to a
//! later statement on both backends, so the upsert's update branch leaves a marker: it
//! stores `ingested_at_ms` as `-(time * 8 + previous status rank)`. The event steps test
//! the row (`= time`: inserted; negative: updated, and from which rank), and a last step
//! writes the time back — all inside the change, so no other reader ever sees the marker.
//! A re-delivery touches no row (the guard), so it appends nothing. Cost per order: two
//! keyed rows (three for a cancellation) and one event row per new order.

use stockade_core::event::{Event, OrderChange};
use stockade_core::order::{Order, OrderStatus};
use stockade_store::{
    AuditDetails, AuditEntry, Change, Mutation, RowStatement, SqlValue, sql_params,
};
use stockade_vault::FieldContext;
use stockade_vault::cipher::DataKey;

use crate::ingest_rows as rows;
use crate::{Result, SyncError};

/// Where an order change came from (written on its audit row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Webhook,
    Poll,
    /// The order as a notification summarised it (no buyer data), stored before the
    /// fetch so its stock moves at once.
    Notification,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Poll => "poll",
            Source::Notification => "notification",
        }
    }
}

/// Position of a status along the order lifecycle.
pub fn rank(status: OrderStatus) -> i64 {
    match status {
        OrderStatus::Pending => 0,
        OrderStatus::Placed => 1,
        OrderStatus::PartiallyShipped => 2,
        OrderStatus::Shipped => 3,
        OrderStatus::Delivered => 4,
        OrderStatus::Cancelled => 5,
        OrderStatus::Returned => 6,
    }
}

/// The stock movements a status implies for each line (each guarded in SQL).
fn movements(status: OrderStatus) -> &'static [Movement] {
    match status {
        OrderStatus::Pending | OrderStatus::Placed | OrderStatus::PartiallyShipped => {
            &[Movement::Reserve]
        }
        OrderStatus::Shipped | OrderStatus::Delivered => &[Movement::Reserve, Movement::Commit],
        OrderStatus::Cancelled => &[Movement::Release],
        OrderStatus::Returned => &[Movement::Release, Movement::Restock],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Movement {
    Reserve,
    Commit,
    Release,
    Restock,
}

impl Movement {
    fn as_str(self) -> &'static str {
        match self {
            Movement::Reserve => "reserve",
            Movement::Commit => "commit",
            Movement::Release => "release",
            Movement::Restock => "restock",
        }
    }
}

/// The order upsert's conflict clause, in both of its forms (this one row at a time and
/// [`crate::ingest_rows`]'s batch): an order moves forward along the lifecycle, or to a
/// newer marketplace status of its rank, or is filled in once with the buyer fields it
/// was stored without; anything else touches no row.
macro_rules! upsert_order_conflict {
    () => {
        "
     ON CONFLICT (connection_id, external_id) DO UPDATE SET
        status = excluded.status, status_rank = excluded.status_rank,
        marketplace_status = CASE WHEN excluded.status_rank > orders.status_rank
             OR (excluded.status_rank = orders.status_rank AND excluded.updated_at_ms > orders.updated_at_ms
                 AND excluded.marketplace_status <> orders.marketplace_status)
            THEN excluded.marketplace_status ELSE orders.marketplace_status END,
        updated_at_ms = CASE WHEN excluded.updated_at_ms > orders.updated_at_ms
            THEN excluded.updated_at_ms ELSE orders.updated_at_ms END,
        ingested_at_ms = -(excluded.ingested_at_ms * 8 + orders.status_rank),
        buyer_name = CASE WHEN orders.pii_deleted_at_ms IS NULL THEN COALESCE(orders.buyer_name, excluded.buyer_name) END,
        buyer_email = CASE WHEN orders.pii_deleted_at_ms IS NULL THEN COALESCE(orders.buyer_email, excluded.buyer_email) END,
        buyer_phone = CASE WHEN orders.pii_deleted_at_ms IS NULL THEN COALESCE(orders.buyer_phone, excluded.buyer_phone) END,
        buyer_address = CASE WHEN orders.pii_deleted_at_ms IS NULL THEN COALESCE(orders.buyer_address, excluded.buyer_address) END
      WHERE excluded.status_rank > orders.status_rank
         OR (excluded.status_rank = orders.status_rank AND excluded.updated_at_ms > orders.updated_at_ms
             AND excluded.marketplace_status <> orders.marketplace_status)
         OR (excluded.status_rank = orders.status_rank AND orders.pii_deleted_at_ms IS NULL
             AND orders.buyer_name IS NULL AND orders.buyer_email IS NULL
             AND orders.buyer_phone IS NULL AND orders.buyer_address IS NULL
             AND (excluded.buyer_name IS NOT NULL OR excluded.buyer_email IS NOT NULL
                  OR excluded.buyer_phone IS NOT NULL OR excluded.buyer_address IS NOT NULL))"
    };
}
pub(crate) use upsert_order_conflict;

pub(crate) const UPSERT_ORDER: &str = concat!(
    "INSERT INTO orders (connection_id, external_id, status, marketplace_status, status_rank,
        created_at_ms, updated_at_ms, ingested_at_ms, buyer_name, buyer_email, buyer_phone, buyer_address)
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
      WHERE EXISTS (SELECT 1 FROM connections WHERE id = $1 AND status <> 'revoked')",
    upsert_order_conflict!()
);

// The order events, after the upsert: `order.created` when the row was inserted (its
// `ingested_at_ms` is this change's time), `order.cancelled` when an existing row moved
// to cancelled from another status (its marker holds the status rank it had). $1 time,
// $2..$9 the event's other columns, $10 connection id, $11 order, $12 cancelled's rank.
pub(crate) const ORDER_CREATED: &str = "INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
      WHERE EXISTS (SELECT 1 FROM orders WHERE connection_id = $10 AND external_id = $11 AND ingested_at_ms = $1)";
pub(crate) const ORDER_CANCELLED: &str = "INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
      WHERE EXISTS (SELECT 1 FROM orders WHERE connection_id = $10 AND external_id = $11
                     AND ingested_at_ms < 0 AND (-ingested_at_ms) % 8 <> $12)";
// The marker's end: an updated row gets its ingest time back.
pub(crate) const UNMARK: &str = "UPDATE orders SET ingested_at_ms = $3
     WHERE connection_id = $1 AND external_id = $2 AND ingested_at_ms < 0";

// A line whose SKU is not in the catalog yet is stored unmatched (a trigger raises an
// `unmatched_sku` event, migration 0006); importing the SKU reserves it (`catalog`).
pub(crate) const INSERT_LINE: &str =
    "INSERT INTO order_lines (connection_id, external_id, line_id, sku, quantity, unmatched_since_ms)
     SELECT $1, $2, $3, $4, $5, CASE WHEN EXISTS (SELECT 1 FROM skus WHERE sku = $4) THEN NULL ELSE $6 END
      WHERE true
     ON CONFLICT (connection_id, external_id, line_id) DO NOTHING";

// Parameters of every movement: $1 sku, $2 connection, $3 order, $4 line, $5 on-hand
// delta, $6 reserved delta, $7 time, $8 this movement's key, then the keys it depends on.
pub(crate) const RESERVE: &str = "INSERT INTO stock_ledger (sku, connection_id, external_id, line_id, movement, on_hand_delta, reserved_delta, at_ms, ukey)
     SELECT $1, $2, $3, $4, 'reserve', $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM skus WHERE sku = $1)
     ON CONFLICT (ukey) DO NOTHING";
pub(crate) const COMMIT: &str = "INSERT INTO stock_ledger (sku, connection_id, external_id, line_id, movement, on_hand_delta, reserved_delta, at_ms, ukey)
     SELECT $1, $2, $3, $4, 'commit', $5, $6, $7, $8
      WHERE EXISTS (SELECT 1 FROM stock_ledger WHERE ukey = $9)
        AND NOT EXISTS (SELECT 1 FROM stock_ledger WHERE ukey = $10)
     ON CONFLICT (ukey) DO NOTHING";
pub(crate) const RELEASE: &str = "INSERT INTO stock_ledger (sku, connection_id, external_id, line_id, movement, on_hand_delta, reserved_delta, at_ms, ukey)
     SELECT $1, $2, $3, $4, 'release', $5, $6, $7, $8
      WHERE EXISTS (SELECT 1 FROM stock_ledger WHERE ukey = $9)
        AND NOT EXISTS (SELECT 1 FROM stock_ledger WHERE ukey = $10)
     ON CONFLICT (ukey) DO NOTHING";
pub(crate) const RESTOCK: &str = "INSERT INTO stock_ledger (sku, connection_id, external_id, line_id, movement, on_hand_delta, reserved_delta, at_ms, ukey)
     SELECT $1, $2, $3, $4, 'restock', $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM stock_ledger WHERE ukey = $9)
     ON CONFLICT (ukey) DO NOTHING";

fn ukey(conn: i64, order: &str, line: &str, m: Movement) -> String {
    format!("{conn}/{order}/{line}/{}", m.as_str())
}

/// The AAD row id of an order's buyer fields.
pub fn buyer_row_id(connection_id: i64, external_id: &str) -> String {
    format!("{connection_id}/{external_id}")
}

pub const BUYER_COLUMNS: [&str; 4] = ["buyer_name", "buyer_email", "buyer_phone", "buyer_address"];

/// Encrypt the buyer fields of an order under the connection's data key.
pub fn seal_buyer(
    key: &DataKey,
    connection_id: i64,
    order: &Order,
) -> Result<[Option<Vec<u8>>; 4]> {
    let row = buyer_row_id(connection_id, &order.external_id);
    let seal = |column: &str, bytes: &[u8]| -> Result<Vec<u8>> {
        key.seal_field(&FieldContext::new("orders", column, &row), bytes)
            .map_err(SyncError::from)
    };
    let b = &order.buyer;
    let name = b
        .name
        .as_ref()
        .map(|v| seal(BUYER_COLUMNS[0], v.expose_pii().as_bytes()))
        .transpose()?;
    let email = b
        .email
        .as_ref()
        .map(|v| seal(BUYER_COLUMNS[1], v.expose_pii().as_bytes()))
        .transpose()?;
    let phone = b
        .phone
        .as_ref()
        .map(|v| seal(BUYER_COLUMNS[2], v.expose_pii().as_bytes()))
        .transpose()?;
    let address = match &b.address {
        Some(a) => {
            let f =
                |v: &Option<stockade_core::Pii<String>>| v.as_ref().map(|p| p.expose_pii().clone());
            let mut json = serde_json::json!({
                "name": f(&a.name), "line1": f(&a.line1), "line2": f(&a.line2),
                "city": f(&a.city), "region": f(&a.region), "postal_code": f(&a.postal_code),
                "country_code": a.country_code,
            })
            .to_string()
            .into_bytes();
            let sealed = seal(BUYER_COLUMNS[3], &json);
            json.iter_mut().for_each(|b| *b = 0);
            Some(sealed?)
        }
        None => None,
    };
    Ok([name, email, phone, address])
}

/// The step appending `event` at `now` if `statement`'s condition on the order holds.
fn order_event(
    statement: &'static RowStatement,
    event: &Event,
    connection_id: i64,
    ext: &str,
    now: i64,
) -> Mutation {
    let c = event.columns();
    Mutation::Row {
        statement,
        params: sql_params![
            now,
            c.source,
            c.kind,
            c.caller,
            c.host,
            c.path_template,
            c.operation,
            c.status,
            c.detail,
            connection_id,
            ext
        ],
    }
}

/// The steps after the stock and lines that append the order's events and end the marker.
fn order_events(connection_id: i64, connection: &str, order: &Order, now: i64) -> Vec<Mutation> {
    let ext = order.external_id.as_str();
    let change = OrderChange {
        connection: connection.to_owned(),
        lines: order.lines.len() as i64,
        marketplace: order.marketplace.as_str().to_owned(),
        order: ext.to_owned(),
        status: order.status.as_str().to_owned(),
    };
    let mut steps = Vec::with_capacity(3);
    if order.status == OrderStatus::Cancelled {
        let event = Event::OrderCancelled(change.clone());
        let mut step = order_event(&rows::CANCELLED_ROWS, &event, connection_id, ext, now);
        if let Mutation::Row { params, .. } = &mut step {
            params.push(rank(OrderStatus::Cancelled).into());
        }
        steps.push(step);
    }
    let event = Event::OrderCreated(change);
    steps.push(order_event(
        &rows::CREATED_ROWS,
        &event,
        connection_id,
        ext,
        now,
    ));
    steps.push(Mutation::Row {
        statement: &rows::UNMARK_ROWS,
        params: sql_params![connection_id, ext, now],
    });
    steps
}

/// Build the audited change for one order as received.
pub fn order_change(
    connection_id: i64,
    connection: &str,
    order: &Order,
    buyer: [Option<Vec<u8>>; 4],
    source: Source,
    now: i64,
) -> Change {
    let [name, email, phone, address] = buyer;
    let ext = order.external_id.as_str();
    let moves = movements(order.status);
    let mut steps = Vec::with_capacity(4 + order.lines.len() * (2 + moves.len()));
    steps.push(Mutation::Row {
        statement: &rows::UPSERT,
        params: vec![
            connection_id.into(),
            ext.into(),
            order.status.as_str().into(),
            order.marketplace_status.as_str().into(),
            rank(order.status).into(),
            order.created_at_ms.into(),
            order.updated_at_ms.into(),
            now.into(),
            SqlValue::Bytes(name),
            SqlValue::Bytes(email),
            SqlValue::Bytes(phone),
            SqlValue::Bytes(address),
        ],
    });
    // Grouped by statement (stock locks, each movement, lines, events): the order
    // PostgreSQL runs a batch in, one statement per table (see `ingest_rows`).
    for line in &order.lines {
        steps.push(Mutation::Row {
            statement: &rows::LOCK_STOCK,
            params: sql_params![line.sku.as_str()],
        });
    }
    for m in moves {
        for line in &order.lines {
            let q = i64::from(line.quantity);
            let lid = line.line_id.as_str();
            let key = |m| ukey(connection_id, ext, lid, m);
            let (statement, on_hand, reserved, deps): (
                &'static RowStatement,
                i64,
                i64,
                Vec<String>,
            ) = match m {
                Movement::Reserve => (&rows::RESERVE_ROWS, 0, q, vec![]),
                Movement::Commit => (
                    &rows::COMMIT_ROWS,
                    -q,
                    -q,
                    vec![key(Movement::Reserve), key(Movement::Release)],
                ),
                Movement::Release => (
                    &rows::RELEASE_ROWS,
                    0,
                    -q,
                    vec![key(Movement::Reserve), key(Movement::Commit)],
                ),
                Movement::Restock => (&rows::RESTOCK_ROWS, q, 0, vec![key(Movement::Commit)]),
            };
            let mut params = sql_params![
                line.sku.as_str(),
                connection_id,
                ext,
                lid,
                on_hand,
                reserved,
                now,
                key(*m)
            ];
            params.extend(deps.into_iter().map(SqlValue::from));
            steps.push(Mutation::Row { statement, params });
        }
    }
    for line in &order.lines {
        steps.push(Mutation::Row {
            statement: &rows::LINE_ROWS,
            params: sql_params![
                connection_id,
                ext,
                line.line_id.as_str(),
                line.sku.as_str(),
                i64::from(line.quantity),
                now
            ],
        });
    }
    steps.extend(order_events(connection_id, connection, order, now));
    Change::new(
        Mutation::Many { steps, guard: true },
        AuditEntry::new(
            "order.ingest",
            format!("order:{connection}/{ext}"),
            AuditDetails::new()
                .str("connection", connection)
                .str("status", order.status.as_str())
                .str("source", source.as_str())
                .int("lines", order.lines.len() as i64),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_move_forward_along_the_lifecycle() {
        let order = [
            OrderStatus::Pending,
            OrderStatus::Placed,
            OrderStatus::PartiallyShipped,
            OrderStatus::Shipped,
            OrderStatus::Delivered,
            OrderStatus::Cancelled,
            OrderStatus::Returned,
        ];
        for w in order.windows(2) {
            assert!(rank(w[0]) < rank(w[1]));
        }
        assert_eq!(movements(OrderStatus::Cancelled), &[Movement::Release]);
    }
}
