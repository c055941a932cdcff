//! Read-only counts over the tables sync owns (connections, orders, listings, skus,
//! the ledger, cursors), for `stockade connection show`, the demo screen and the
//! benchmark. Callers outside this crate ask here instead of writing SQL for these
//! tables; nothing here writes.

use std::collections::BTreeMap;

use stockade_store::{SqlValue, Store, sql_params};

use crate::Result;

/// How many of one thing each connection has, by connection name.
pub type PerConnection = BTreeMap<String, i64>;

const ORDERS_BY_CONNECTION: &str = "SELECT c.name, COUNT(o.id) FROM connections c
     LEFT JOIN orders o ON o.connection_id = c.id GROUP BY c.name";
const LOW_LISTINGS: &str = "SELECT c.name, COUNT(*) FROM listings l
     JOIN connections c ON c.id = l.connection_id WHERE l.target_qty <= $1 GROUP BY c.name";
const UNCONFIRMED: &str =
    "SELECT c.name, COUNT(*) FROM listings l JOIN connections c ON c.id = l.connection_id
     WHERE l.target_version > l.pushed_version GROUP BY c.name";
const ORDER_IDS: &str = "SELECT o.external_id FROM orders o
     JOIN connections c ON c.id = o.connection_id WHERE c.name = $1";
const DUPLICATE_ORDERS: &str = "SELECT COUNT(*) - COUNT(DISTINCT CAST(connection_id AS TEXT) || '/' || external_id) FROM orders";
const DUPLICATE_LEDGER: &str =
    "SELECT COUNT(*) - COUNT(DISTINCT ukey) FROM stock_ledger WHERE ukey IS NOT NULL";
// `<> 0`: the same sum, and a partial index on that condition can answer it.
const OVERSOLD: &str =
    "SELECT CAST(COALESCE(SUM(oversold_units), 0) AS BIGINT) FROM orders WHERE oversold_units <> 0";
const LOW_STOCK: &str =
    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN on_hand - reserved <= 0 THEN 1 ELSE 0 END), 0)
     FROM skus WHERE on_hand - reserved <= $1";
const LOWEST: &str = "SELECT sku, on_hand - reserved FROM skus WHERE on_hand - reserved <= $1
     ORDER BY on_hand - reserved, sku LIMIT 4";
const CURSOR: &str = "SELECT since_ms, updated_at_ms FROM sync_cursors WHERE connection_id = $1";

async fn per_connection(store: &Store, q: &'static str, p: Vec<SqlValue>) -> Result<PerConnection> {
    let rows: Vec<(String, i64)> = store.query_as(q, p).await?;
    Ok(rows.into_iter().collect())
}

/// Orders stored per connection (every connection, zero included).
pub async fn orders_by_connection(store: &Store) -> Result<PerConnection> {
    per_connection(store, ORDERS_BY_CONNECTION, vec![]).await
}

/// Listings per connection whose target is at most `qty` (connections with none left out).
pub async fn low_listings_by_connection(store: &Store, qty: i64) -> Result<PerConnection> {
    per_connection(store, LOW_LISTINGS, sql_params![qty]).await
}

/// Listings per connection whose newest target the channel has not confirmed yet.
pub async fn unconfirmed_by_connection(store: &Store) -> Result<PerConnection> {
    per_connection(store, UNCONFIRMED, vec![]).await
}

/// Orders stored, all connections.
pub async fn orders_stored(store: &Store) -> Result<i64> {
    Ok(store.count("SELECT COUNT(*) FROM orders", vec![]).await?)
}

/// The marketplace order ids stored for the connection named `connection`.
pub async fn order_ids(store: &Store, connection: &str) -> Result<Vec<String>> {
    Ok(store.query_as(ORDER_IDS, sql_params![connection]).await?)
}

/// Orders stored twice plus ledger entries applied twice (0 when ingest is exactly once).
pub async fn duplicates(store: &Store) -> Result<i64> {
    let orders = store.count(DUPLICATE_ORDERS, vec![]).await?;
    Ok(orders + store.count(DUPLICATE_LEDGER, vec![]).await?)
}

/// Units sold beyond the stock there was, all orders.
pub async fn oversold_units(store: &Store) -> Result<i64> {
    Ok(store.count(OVERSOLD, vec![]).await?)
}

/// A buyer field that is not a vault field ciphertext (format byte `0x01`, at least
/// header and tag long: 37 bytes). `$1` is the one byte `0x01`, bound so the statement is
/// the same on both backends.
const UNSEALED_FIELD: &str = "(length(F) < 37 OR substr(F, 1, 1) <> $1)";
const PII_ORDERS: &str = "SELECT COUNT(*) FROM orders WHERE pii_deleted_at_ms IS NULL
     AND (buyer_name IS NOT NULL OR buyer_email IS NOT NULL OR buyer_phone IS NOT NULL OR buyer_address IS NOT NULL)";

/// Orders holding buyer fields, and how many of them hold a field that is not sealed
/// (not a vault ciphertext) — the compliance report's encryption-at-rest evidence.
pub async fn pii_sealing(store: &Store) -> Result<(i64, i64)> {
    static UNSEALED: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    let unsealed_sql = UNSEALED.get_or_init(|| {
        let cond: Vec<String> = ["buyer_name", "buyer_email", "buyer_phone", "buyer_address"]
            .iter()
            .map(|c| format!("({c} IS NOT NULL AND {})", UNSEALED_FIELD.replace('F', c)))
            .collect();
        let sql = format!(
            "SELECT COUNT(*) FROM orders WHERE pii_deleted_at_ms IS NULL AND ({})",
            cond.join(" OR ")
        );
        Box::leak(sql.into_boxed_str())
    });
    let with_pii = store.count(PII_ORDERS, vec![]).await?;
    let unsealed = store.count(unsealed_sql, sql_params![vec![1u8]]).await?;
    Ok((with_pii, unsealed))
}

/// SKUs with at most some units available.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LowStock {
    pub low: i64,
    /// Of those, the ones with nothing available.
    pub sold_out: i64,
    /// The four lowest: SKU and units available, lowest first.
    pub lowest: Vec<(String, i64)>,
}

/// SKUs with at most `available` units available.
pub async fn low_stock(store: &Store, available: i64) -> Result<LowStock> {
    let counts = store.query_one_as(LOW_STOCK, sql_params![available]);
    let (low, sold_out) = counts.await?.unwrap_or((0, 0));
    let lowest = store.query_as(LOWEST, sql_params![available]).await?;
    Ok(LowStock {
        low,
        sold_out,
        lowest,
    })
}

/// What `connection show` counts for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub listings: i64,
    pub orders: i64,
    /// The poller's high-water mark and when it last moved: `(since_ms, updated_at_ms)`.
    pub cursor: Option<(i64, i64)>,
}

/// The poller's high-water mark of connection `id` and when it last moved (one keyed
/// read; the connections page shows it without counting the connection's orders).
pub async fn poll_cursor(store: &Store, id: i64) -> Result<Option<(i64, i64)>> {
    Ok(store.query_one_as(CURSOR, sql_params![id]).await?)
}

/// Listings, orders and the poll cursor of connection `id`.
pub async fn connection_counts(store: &Store, id: i64) -> Result<ConnectionCounts> {
    let count = |q| store.count(q, sql_params![id]);
    Ok(ConnectionCounts {
        listings: count("SELECT COUNT(*) FROM listings WHERE connection_id = $1").await?,
        orders: count("SELECT COUNT(*) FROM orders WHERE connection_id = $1").await?,
        cursor: store.query_one_as(CURSOR, sql_params![id]).await?,
    })
}
