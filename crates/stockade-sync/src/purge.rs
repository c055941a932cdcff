//! Deauthorization purge (DESIGN §8): when a seller revokes access — a marketplace's
//! revocation event or `stockade connection revoke` — the connection stops, its orders
//! (with their encrypted buyer fields), lines, cursor, listings, events and credentials are
//! deleted, its open reservations are released so the stock stays right, the ledger keeps
//! only PII-free stock history (no order references), a purge receipt and an audit row
//! are written in the same transaction, and then the connection's data key is destroyed,
//! so every ciphertext of it — in this database, in its WAL, in old backups or copied
//! aside — can never be decrypted again, even with the master key.

use serde::Serialize;
use stockade_core::Actor;
use stockade_core::event::{ConnectionRevoked, Event};
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, sql_params};
use stockade_vault::Vault;

use crate::connections::{self, Connection, ConnectionStatus};
use crate::{Result, now_ms};

/// What a purge deleted (counts only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeReceipt {
    pub connection: String,
    pub marketplace: String,
    pub reason: String,
    pub at_ms: i64,
    pub orders: i64,
    pub buyer_fields: i64,
    pub order_lines: i64,
    pub reservations_released: i64,
    pub listings: i64,
    pub credentials: i64,
    pub events: i64,
    pub data_keys_destroyed: i64,
}

const COUNT_ORDERS: &str = "SELECT COUNT(*),
        CAST(COALESCE(SUM((CASE WHEN buyer_name IS NULL THEN 0 ELSE 1 END) + (CASE WHEN buyer_email IS NULL THEN 0 ELSE 1 END)
                   + (CASE WHEN buyer_phone IS NULL THEN 0 ELSE 1 END) + (CASE WHEN buyer_address IS NULL THEN 0 ELSE 1 END)), 0) AS BIGINT)
     FROM orders WHERE connection_id = $1";
const COUNT_LINES: &str = "SELECT COUNT(*) FROM order_lines WHERE connection_id = $1";
const COUNT_OPEN: &str = "SELECT COUNT(*) FROM order_lines l WHERE l.connection_id = $1
       AND EXISTS (SELECT 1 FROM stock_ledger r WHERE r.ukey = CAST(l.connection_id AS TEXT) || '/' || l.external_id || '/' || l.line_id || '/reserve')
       AND NOT EXISTS (SELECT 1 FROM stock_ledger c WHERE c.ukey = CAST(l.connection_id AS TEXT) || '/' || l.external_id || '/' || l.line_id || '/commit')
       AND NOT EXISTS (SELECT 1 FROM stock_ledger x WHERE x.ukey = CAST(l.connection_id AS TEXT) || '/' || l.external_id || '/' || l.line_id || '/release')";
const COUNT_LISTINGS: &str = "SELECT COUNT(*) FROM listings WHERE connection_id = $1";

const MARK_REVOKED: &str =
    "UPDATE connections SET status = 'revoked', revoked_at_ms = $1, updated_at_ms = $1
     WHERE id = $2 AND status <> 'revoked'";
const RELEASE_OPEN: &str = "INSERT INTO stock_ledger (sku, connection_id, external_id, line_id, movement, on_hand_delta, reserved_delta, at_ms, ukey)
     SELECT l.sku, l.connection_id, l.external_id, l.line_id, 'release', 0, -l.quantity, $1,
            CAST(l.connection_id AS TEXT) || '/' || l.external_id || '/' || l.line_id || '/release'
       FROM order_lines l WHERE l.connection_id = $2
       AND EXISTS (SELECT 1 FROM stock_ledger r WHERE r.ukey = CAST(l.connection_id AS TEXT) || '/' || l.external_id || '/' || l.line_id || '/reserve')
       AND NOT EXISTS (SELECT 1 FROM stock_ledger c WHERE c.ukey = CAST(l.connection_id AS TEXT) || '/' || l.external_id || '/' || l.line_id || '/commit')
       AND NOT EXISTS (SELECT 1 FROM stock_ledger x WHERE x.ukey = CAST(l.connection_id AS TEXT) || '/' || l.external_id || '/' || l.line_id || '/release')
     ON CONFLICT (ukey) DO NOTHING";
const ANONYMISE_LEDGER: &str = "UPDATE stock_ledger SET external_id = NULL, line_id = NULL, ukey = NULL WHERE connection_id = $1";
const DELETE_LINES: &str = "DELETE FROM order_lines WHERE connection_id = $1";
const DELETE_ORDERS: &str = "DELETE FROM orders WHERE connection_id = $1";
const DELETE_CURSOR: &str = "DELETE FROM sync_cursors WHERE connection_id = $1";
const DELETE_RETURN_REPORTS: &str = "DELETE FROM return_reports WHERE connection_id = $1";
const DELETE_LISTINGS: &str = "DELETE FROM listings WHERE connection_id = $1";
const INSERT_RECEIPT: &str = "INSERT INTO purge_receipts (connection_id, connection_name, marketplace, reason, at_ms, details)
     VALUES ($1, $2, $3, $4, $5, $6)";
const SELECT_RECEIPTS: &str = "SELECT details FROM purge_receipts ORDER BY id";

/// Purge a connection. Idempotent: purging a revoked connection again finishes what a
/// crash may have left (the key destruction) and returns the first receipt.
pub async fn purge(vault: &Vault, name: &str, reason: &str, actor: &Actor) -> Result<PurgeReceipt> {
    let store = vault.store();
    let conn: Connection = connections::get(store, name).await?;
    let reason: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_ .:".contains(*c))
        .take(80)
        .collect();
    if conn.status == ConnectionStatus::Revoked {
        let destroyed = vault.shred(&conn.key_owner()?, &reason, actor).await?;
        if let Some(mut r) = receipts(store)
            .await?
            .into_iter()
            .find(|r| r.connection == conn.name)
        {
            r.data_keys_destroyed += destroyed.len() as i64;
            return Ok(r);
        }
    }
    let (mut receipt, creds) = count(vault, &conn, &reason).await?;
    let details = serde_json::to_string(&receipt).unwrap_or_default();
    let mut steps = purge_steps(&conn, &receipt, details);
    steps.extend(
        creds
            .iter()
            .map(|n| Mutation::DeleteCredential { name: n.clone() }),
    );
    let r = &receipt;
    let audit = AuditEntry::new(
        "connection.purge",
        format!("connection:{}", conn.name),
        AuditDetails::new()
            .str("marketplace", conn.marketplace.as_str())
            .str("reason", &reason)
            .int("orders", r.orders)
            .int("buyer_fields", r.buyer_fields)
            .int("order_lines", r.order_lines)
            .int("reservations_released", r.reservations_released)
            .int("listings", r.listings)
            .int("credentials", r.credentials)
            .int("events", r.events),
    );
    let many = Mutation::Many {
        steps,
        guard: false,
    };
    store.commit(actor, vec![Change::new(many, audit)]).await?;
    // Every process re-reads its connections now (PostgreSQL NOTIFY), not at its next refresh.
    store.wake(stockade_store::Topic::Connections).await;
    let destroyed = vault.shred(&conn.key_owner()?, &reason, actor).await?;
    receipt.data_keys_destroyed = destroyed.len() as i64;
    // Erased pages must not linger in SQLite's write-ahead log.
    store.checkpoint().await?;
    tracing::warn!(
        connection = %conn.name,
        marketplace = %conn.marketplace,
        orders = receipt.orders,
        credentials = creds.len(),
        "connection revoked and purged; its data key was destroyed"
    );
    Ok(receipt)
}

/// What purging `conn` now would delete (the receipt, no key destroyed yet), and the
/// names of its credentials.
async fn count(
    vault: &Vault,
    conn: &Connection,
    reason: &str,
) -> Result<(PurgeReceipt, Vec<String>)> {
    let store = vault.store();
    let id = conn.id;
    let (orders, buyer_fields) = store
        .query_one_as(COUNT_ORDERS, sql_params![id])
        .await?
        .unwrap_or((0, 0));
    let order_lines = store.count(COUNT_LINES, sql_params![id]).await?;
    let open = store.count(COUNT_OPEN, sql_params![id]).await?;
    let listings = store.count(COUNT_LISTINGS, sql_params![id]).await?;
    let events = store.connection_events(&conn.name).await?;
    let prefix = format!("connection/{}/", conn.name);
    let creds: Vec<String> = vault
        .list_credentials()
        .await?
        .into_iter()
        .map(|c| c.name)
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let receipt = PurgeReceipt {
        connection: conn.name.clone(),
        marketplace: conn.marketplace.as_str().to_owned(),
        reason: reason.to_owned(),
        at_ms: now_ms(),
        orders,
        buyer_fields,
        order_lines,
        reservations_released: open,
        listings,
        credentials: creds.len() as i64,
        events,
        data_keys_destroyed: 0,
    };
    Ok((receipt, creds))
}

/// The statements of a purge, in order: mark revoked (refused if it already is), release
/// open reservations, anonymise the ledger, delete the data, write the receipt, append
/// the `connection.revoked` event.
fn purge_steps(conn: &Connection, receipt: &PurgeReceipt, details: String) -> Vec<Mutation> {
    let (id, now) = (conn.id, receipt.at_ms);
    let sql = |statement: &'static str, params| Mutation::Sql {
        statement,
        params,
        expect: Expect::Any,
    };
    vec![
        Mutation::Sql {
            statement: MARK_REVOKED,
            params: sql_params![now, id],
            expect: Expect::One("a connection that is not yet revoked"),
        },
        sql(RELEASE_OPEN, sql_params![now, id]),
        sql(ANONYMISE_LEDGER, sql_params![id]),
        sql(DELETE_LINES, sql_params![id]),
        sql(DELETE_ORDERS, sql_params![id]),
        sql(DELETE_CURSOR, sql_params![id]),
        sql(DELETE_RETURN_REPORTS, sql_params![id]),
        sql(DELETE_LISTINGS, sql_params![id]),
        stockade_store::events::delete_connection_events(&conn.name),
        sql(
            INSERT_RECEIPT,
            sql_params![
                id,
                conn.name.as_str(),
                conn.marketplace.as_str(),
                receipt.reason.as_str(),
                now,
                details
            ],
        ),
        // Last, so a `connection.revoked` workflow sees the purge done (same commit).
        stockade_store::events::append(
            now,
            &Event::ConnectionRevoked(ConnectionRevoked {
                connection: conn.name.clone(),
                marketplace: conn.marketplace.as_str().to_owned(),
                orders: receipt.orders,
                reason: receipt.reason.clone(),
            }),
        ),
    ]
}

/// Every purge receipt, oldest first.
pub async fn receipts(store: &stockade_store::Store) -> Result<Vec<PurgeReceipt>> {
    let details: Vec<String> = store.query_as(SELECT_RECEIPTS, vec![]).await?;
    Ok(details
        .iter()
        .filter_map(|d| serde_json::from_str::<ReceiptJson>(d).ok())
        .map(PurgeReceipt::from)
        .collect())
}

#[derive(serde::Deserialize)]
struct ReceiptJson {
    connection: String,
    marketplace: String,
    reason: String,
    at_ms: i64,
    orders: i64,
    buyer_fields: i64,
    order_lines: i64,
    reservations_released: i64,
    listings: i64,
    credentials: i64,
    events: i64,
}

impl From<ReceiptJson> for PurgeReceipt {
    fn from(r: ReceiptJson) -> Self {
        PurgeReceipt {
            connection: r.connection,
            marketplace: r.marketplace,
            reason: r.reason,
            at_ms: r.at_ms,
            orders: r.orders,
            buyer_fields: r.buyer_fields,
            order_lines: r.order_lines,
            reservations_released: r.reservations_released,
            listings: r.listings,
            credentials: r.credentials,
            events: r.events,
            data_keys_destroyed: 0,
        }
    }
}
