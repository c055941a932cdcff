//! What the console pages read: plain, bounded SELECTs over the sync, jobs and audit
//! tables (the same tables `stockade sku list`, `stockade connection show` and `stockade
//! audit verify` read), and nothing else. Every list is bounded (a page, or a fixed
//! limit); filters are parameters, never text spliced into SQL.

use stockade_store::{SqlValue, Store, StoreError, sql_params};

type Result<T> = std::result::Result<T, StoreError>;

/// One channel on the overview.
#[derive(Debug, Clone)]
pub struct ChannelRow {
    pub name: String,
    pub marketplace: String,
    pub status: String,
    pub failures: i64,
    pub failing_since_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_ok_ms: Option<i64>,
    /// Orders ingested in the last [`ORDER_WINDOW_MIN`] minutes.
    pub recent_orders: i64,
    /// The host of the channel's API URL (its rate limit is kept per host).
    pub api_host: String,
    /// Push lag and rate-limit state, from the running process ([`crate::channel_live`]).
    pub lag: Option<crate::channel_live::PushLag>,
    pub rate: Option<crate::channel_live::RateState>,
}

/// The window the overview's orders per minute are averaged over.
pub const ORDER_WINDOW_MIN: i64 = 15;

const CHANNELS: &str = "SELECT c.name, c.marketplace, c.status, c.push_failures,
        c.push_failing_since_ms, c.push_last_error,
        (SELECT MAX(l.acked_at_ms) FROM listings l WHERE l.connection_id = c.id),
        (SELECT COUNT(*) FROM orders o WHERE o.connection_id = c.id AND o.ingested_at_ms >= $1),
        c.settings
     FROM connections c WHERE c.status <> 'revoked' ORDER BY c.name LIMIT 200";

/// Every live channel with its health and its recent orders.
pub async fn channels(store: &Store, now_ms: i64) -> Result<Vec<ChannelRow>> {
    type Row = (
        (String, String, String),
        (i64, Option<i64>, Option<String>),
        (Option<i64>, i64, String),
    );
    let since = now_ms - ORDER_WINDOW_MIN * 60_000;
    let rows: Vec<Row> = store.query_as(CHANNELS, sql_params![since]).await?;
    Ok(rows
        .into_iter()
        .map(
            |((name, marketplace, status), (failures, since, err), (ok, n, settings))| ChannelRow {
                name,
                marketplace,
                status,
                failures,
                failing_since_ms: since,
                last_error: err,
                last_ok_ms: ok,
                recent_orders: n,
                api_host: serde_json::from_str::<serde_json::Value>(&settings)
                    .ok()
                    .and_then(|v| v["api_url"].as_str().map(crate::channel_live::url_host))
                    .unwrap_or_default(),
                lag: None,
                rate: None,
            },
        )
        .collect())
}

/// Jobs (workflow executions and other background work) that failed since `since_ms`.
pub async fn failed_jobs(store: &Store, since_ms: i64) -> Result<i64> {
    store
        .count(
            "SELECT COUNT(*) FROM jobs WHERE state = 'failed' AND finished_at_ms >= $1",
            sql_params![since_ms],
        )
        .await
}

/// Which SKUs the inventory shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockFilter {
    All,
    Low,
    Oversold,
    Drifting,
}

impl StockFilter {
    pub fn parse(s: &str) -> StockFilter {
        match s {
            "low" => StockFilter::Low,
            "oversold" => StockFilter::Oversold,
            "drifting" => StockFilter::Drifting,
            _ => StockFilter::All,
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            StockFilter::All => "all",
            StockFilter::Low => "low",
            StockFilter::Oversold => "oversold",
            StockFilter::Drifting => "drifting",
        }
    }
}

/// The SKU filter: a search pattern ($1) and a filter code ($2). A listing drifts when the
/// channel has not confirmed its current target.
macro_rules! sku_where {
    () => {
        " FROM skus s WHERE UPPER(s.sku) LIKE UPPER($1) ESCAPE '\\' AND ($2 = 'all'
           OR ($2 = 'oversold' AND s.on_hand - s.reserved < 0)
           OR ($2 = 'low' AND s.on_hand - s.reserved <= COALESCE(s.low_stock_threshold,
                (SELECT CAST(value AS BIGINT) FROM stockade_meta WHERE key = 'sync.low_stock_threshold'), 5))
           OR ($2 = 'drifting' AND EXISTS (SELECT 1 FROM listings l JOIN connections x ON x.id = l.connection_id
                WHERE l.sku = s.sku AND x.status <> 'revoked'
                AND (l.pushed_version < l.target_version OR l.acked_qty IS NULL OR l.acked_qty <> l.target_qty))))"
    };
}

const SKU_PAGE: &str = concat!(
    "SELECT s.sku, s.on_hand, s.reserved, COALESCE(s.low_stock_threshold,
        (SELECT CAST(value AS BIGINT) FROM stockade_meta WHERE key = 'sync.low_stock_threshold'), 5)",
    sku_where!(),
    " ORDER BY s.sku LIMIT $3 OFFSET $4"
);
const SKU_COUNT: &str = concat!("SELECT COUNT(*)", sku_where!());
const PAGE_LISTINGS: &str =
    "SELECT l.sku, c.name, l.target_qty, l.pushed_version, l.target_version, l.acked_qty, l.channel_qty
     FROM listings l JOIN connections c ON c.id = l.connection_id
     WHERE c.status <> 'revoked' AND l.sku >= $1 AND l.sku <= $2 ORDER BY l.sku, c.name";

/// One SKU on the inventory page.
#[derive(Debug, Clone)]
pub struct SkuRow {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub threshold: i64,
    pub listings: Vec<ListingCell>,
}

impl SkuRow {
    pub fn low(&self) -> bool {
        self.available <= self.threshold
    }
    pub fn oversold(&self) -> bool {
        self.available < 0
    }
    pub fn drifting(&self) -> bool {
        self.listings.iter().any(|l| l.drifting)
    }
}

/// One channel's figures for a SKU.
#[derive(Debug, Clone)]
pub struct ListingCell {
    pub connection: String,
    pub target: i64,
    /// The quantity last pushed and acknowledged by the channel.
    pub pushed_qty: Option<i64>,
    /// The quantity the channel last reported when read back (the reconciler's check).
    pub confirmed: Option<i64>,
    /// Whether the current target was pushed.
    pub pushed: bool,
    pub drifting: bool,
}

/// A LIKE pattern matching `q` anywhere (the queries compare case-insensitively on
/// both databases) (its `%`, `_` and `\` taken literally).
pub fn contains_pattern(q: &str) -> String {
    let mut p = String::from("%");
    for c in q.trim().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A page of SKUs matching `q` and `filter`, and how many match in all.
pub async fn sku_page(
    store: &Store,
    q: &str,
    filter: StockFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<SkuRow>, i64)> {
    let pattern = contains_pattern(q);
    let total = store
        .count(SKU_COUNT, sql_params![pattern.as_str(), filter.code()])
        .await?;
    let rows: Vec<(String, i64, i64, i64)> = store
        .query_as(
            SKU_PAGE,
            vec![
                SqlValue::from(pattern.as_str()),
                SqlValue::from(filter.code()),
                SqlValue::from(limit),
                SqlValue::from(offset),
            ],
        )
        .await?;
    Ok((with_listings(store, rows).await?, total))
}

/// The SKU rows `rows` (sku, on hand, reserved, threshold; sorted by SKU) with their
/// listings, read in one query over the page's SKU range.
async fn with_listings(store: &Store, rows: Vec<(String, i64, i64, i64)>) -> Result<Vec<SkuRow>> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(Vec::new());
    };
    type L = ((String, String, i64), (i64, i64, Option<i64>, Option<i64>));
    let listings: Vec<L> = store
        .query_as(
            PAGE_LISTINGS,
            sql_params![first.0.as_str(), last.0.as_str()],
        )
        .await?;
    // Grouped by SKU once, so a wide range (a sparse filter) stays linear.
    let mut by_sku: std::collections::HashMap<&str, Vec<&L>> = std::collections::HashMap::new();
    for l in &listings {
        by_sku.entry(l.0.0.as_str()).or_default().push(l);
    }
    let skus = rows
        .into_iter()
        .map(|(sku, on_hand, reserved, threshold)| {
            let cells = by_sku
                .get(sku.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(
                    |((_, c, target), (pushed, version, acked, seen))| ListingCell {
                        connection: c.clone(),
                        target: *target,
                        pushed_qty: *acked,
                        confirmed: *seen,
                        pushed: pushed >= version,
                        drifting: pushed < version || *acked != Some(*target),
                    },
                )
                .collect();
            SkuRow {
                available: on_hand - reserved,
                sku,
                on_hand,
                reserved,
                threshold,
                listings: cells,
            }
        })
        .collect();
    Ok(skus)
}

/// The audit log's filter.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Only rows after this sequence number (0: all); bounds a text search's scan.
    pub after_seq: i64,
}

/// One audit row as the console shows it.
pub type AuditLine = (i64, i64, String, String, String, String);

const AUDIT: &str = "SELECT seq, ts_ms, actor, action, resource, details FROM audit
     WHERE LOWER(actor) LIKE LOWER($1) ESCAPE '\\' AND LOWER(action) LIKE LOWER($2) ESCAPE '\\'
       AND LOWER(resource) LIKE LOWER($3) ESCAPE '\\'
       AND ts_ms >= $4 AND ts_ms < $5 AND seq > $7
     ORDER BY seq DESC LIMIT $6";

/// The newest `limit` audit rows matching `f`.
pub async fn audit_rows(store: &Store, f: &AuditFilter, limit: i64) -> Result<Vec<AuditLine>> {
    store
        .query_as(
            AUDIT,
            vec![
                SqlValue::from(contains_pattern(&f.actor).as_str()),
                SqlValue::from(contains_pattern(&f.action).as_str()),
                SqlValue::from(contains_pattern(&f.resource).as_str()),
                SqlValue::from(f.from_ms),
                SqlValue::from(f.to_ms),
                SqlValue::from(limit),
                SqlValue::from(f.after_seq),
            ],
        )
        .await
}

// --- Inventory over the API: keyset pages for the API and the CSV export. ---

const SKU_AFTER: &str = concat!(
    "SELECT s.sku, s.on_hand, s.reserved, COALESCE(s.low_stock_threshold,
        (SELECT CAST(value AS BIGINT) FROM stockade_meta WHERE key = 'sync.low_stock_threshold'), 5)",
    sku_where!(),
    " AND s.sku > $3 ORDER BY s.sku LIMIT $4"
);

/// Up to `limit` SKUs matching `q` and `filter` whose name sorts after `after` ("" for the
/// first page), with their listings: the keyset page of the API and the CSV export.
pub async fn skus_after(
    store: &Store,
    q: &str,
    filter: StockFilter,
    after: &str,
    limit: i64,
) -> Result<Vec<SkuRow>> {
    let pattern = contains_pattern(q);
    let rows: Vec<(String, i64, i64, i64)> = store
        .query_as(
            SKU_AFTER,
            vec![
                SqlValue::from(pattern.as_str()),
                SqlValue::from(filter.code()),
                SqlValue::from(after),
                SqlValue::from(limit),
            ],
        )
        .await?;
    with_listings(store, rows).await
}

const UNMATCHED: &str =
    "SELECT l.sku, COUNT(*), CAST(SUM(l.quantity) AS BIGINT), MIN(l.unmatched_since_ms)
     FROM order_lines l WHERE l.unmatched_since_ms IS NOT NULL
     GROUP BY l.sku ORDER BY MIN(l.unmatched_since_ms) LIMIT $1";

/// A SKU named by order lines that match no catalogue SKU: lines, units, since when.
pub type UnmatchedSku = (String, i64, i64, i64);

/// The unmatched SKUs (order lines whose SKU is not in the catalogue), oldest first.
pub async fn unmatched(store: &Store, limit: i64) -> Result<Vec<UnmatchedSku>> {
    store.query_as(UNMATCHED, sql_params![limit]).await
}

const SKU_ONE: &str = "SELECT s.sku, s.on_hand, s.reserved, COALESCE(s.low_stock_threshold,
        (SELECT CAST(value AS BIGINT) FROM stockade_meta WHERE key = 'sync.low_stock_threshold'), 5)
     FROM skus s WHERE s.sku = $1";

/// Exactly `sku`, with its listings, if it is in the catalogue.
pub async fn sku_one(store: &Store, sku: &str) -> Result<Option<SkuRow>> {
    let rows: Vec<(String, i64, i64, i64)> = store.query_as(SKU_ONE, sql_params![sku]).await?;
    Ok(with_listings(store, rows).await?.pop())
}

const CONNECTION_NAMES: &str =
    "SELECT name FROM connections WHERE status <> 'revoked' ORDER BY name LIMIT 200";

/// The live connections' names (the discovery form's choices).
pub async fn connection_names(store: &Store) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = store.query_as(CONNECTION_NAMES, vec![]).await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}
