//! Stockade's sync engine: marketplace events in, stock out.
//!
//! The way of the data (DESIGN §2, §8, §10):
//!
//! ```text
//!  webhook ──verify──▶ fetcher ──get_orders (batched)──▶ ingest ──group commit──▶ store
//!  poller ───────────────────────────────────────────────▶   │   (order, PII, ledger, audit)
//!                                                            ▼
//!        channel ◀── set_quantities (coalesced, zeros first) ◀── pusher per connection
//!        channel ──── get_quantities ──▶ reconciler (repairs drift)
//! ```
//!
//! - A webhook is answered only once the order it announced is durably stored.
//! - Every order change is one audited change (see [`ingest`]); concurrent changes are
//!   committed together, one transaction per batch.
//! - Stock per SKU and every listing's target follow from the ledger inside the same
//!   transaction; a pusher per connection sends the newest target of each listing that
//!   changed, zeros first, and records what the channel confirmed. A reconciler reads
//!   channel quantities back and repairs drift.
//! - A revocation stops the connection and purges it ([`purge`]).

/// `tracing::warn!`, or `debug!` when `$err` is the database being unreachable: the
/// store says that once for the whole outage, and a loop's next round tries again.
macro_rules! warn_unless_unreachable {
    ($err:expr, $($arg:tt)+) => {
        if $err.is_unavailable() {
            tracing::debug!($($arg)+)
        } else {
            tracing::warn!($($arg)+)
        }
    };
}

pub mod ack;
pub mod catalog;
pub mod catalog_csv;
pub mod connection_edit;
pub mod connections;
pub mod discover;
mod engine;
pub mod health;
pub mod ingest;
mod ingest_rows;
pub mod metrics;
pub mod purge;
pub mod stats;
pub mod stock;
pub mod unmatched;
// The console's connections page and API.
pub mod connection_view;

use std::time::Duration;

pub use catalog::{ImportReport, ListingIds, ListingRow, StockMismatch, StockRow};
pub use connections::{
    Connection, ConnectionSettings, ConnectionStatus, EndpointKind, NewConnection,
};
pub use discover::{DiscoverOptions, DiscoverReport};
pub use engine::{Ownership, Summary, SyncEngine, set_low_stock_threshold};
pub use health::PushHealth;
pub use metrics::{Metrics, Percentiles, SamplesCursor, SyncTelemetry};
pub use purge::PurgeReceipt;
pub use unmatched::{LineProblem, UnmatchedLine, UnmatchedSku};

pub(crate) fn now_ms() -> i64 {
    stockade_core::time::now_ms()
}

/// Errors of the sync engine. Messages carry ids, counts and scrubbed marketplace
/// messages, never buyer data or secrets.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Invalid(String),
    #[error("no connection named {0:?}; see `stockade connection list`")]
    UnknownConnection(String),
    #[error("connection {0:?} is revoked")]
    Revoked(String),
    #[error(transparent)]
    Store(#[from] stockade_store::StoreError),
    #[error(transparent)]
    Vault(#[from] stockade_vault::VaultError),
    #[error(transparent)]
    Market(#[from] stockade_marketplaces::MarketError),
    #[error("the sync engine is shutting down")]
    ShuttingDown,
}

pub type Result<T, E = SyncError> = std::result::Result<T, E>;

impl SyncError {
    /// The database could not be reached (see [`stockade_store::StoreError::is_unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SyncError::Store(e) if e.is_unavailable())
    }
}

/// The default `[sync] low_stock_threshold` (also the SQL trigger's, migration 0013).
pub const LOW_STOCK_THRESHOLD: i64 = 5;
/// The `stockade_meta` key the low-stock trigger reads its threshold from.
pub const LOW_STOCK_META: &str = "sync.low_stock_threshold";

/// Default of [`SyncOptions::max_pending_deliveries`]: about half a second of orders at
/// the rate one core stores, enough to fill the largest batches.
pub const MAX_PENDING_DELIVERIES: usize = 2048;

/// How long a webhook waits for its order's fetch before it stores the notification's
/// summary instead: longer than an unthrottled fetch and commit, short enough that the
/// other channels still hear of a sold-out SKU within a second.
pub const SUMMARY_AFTER: Duration = Duration::from_millis(250);

/// Tuning of the engine. The defaults suit a seller; tests, the demo and the benchmark
/// shorten the intervals.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Most order changes in one transaction.
    pub batch_max: usize,
    /// Ingest transactions in flight at once.
    pub commits_in_flight: usize,
    /// Orders fetched per marketplace call, and how long to wait to fill a call.
    pub fetch_batch: usize,
    pub fetch_wait: Duration,
    /// Fetch calls in flight per connection.
    pub fetch_concurrency: usize,
    /// Poll for orders this often (the fallback for missed webhooks); None: never.
    pub poll_interval: Option<Duration>,
    /// Each poll re-reads this far back before the last high-water mark.
    pub poll_overlap: Duration,
    /// The first poll of a connection looks back this far.
    pub poll_lookback: Duration,
    /// Read channel quantities back this often; None: never.
    pub reconcile_interval: Option<Duration>,
    /// Request a returns report (Amazon) at most this often per connection; None: the
    /// connector's default (30 minutes for Amazon).
    pub returns_report_interval: Option<Duration>,
    /// Most listings per push round.
    pub push_batch: usize,
    /// Backoff of a failing push: base, doubling up to max.
    pub push_retry_base: Duration,
    pub push_retry_max: Duration,
    /// Consecutive failed rounds after which an error event is recorded.
    pub push_attempts_before_event: u32,
    /// How often connections added, paused, resumed or revoked elsewhere are picked up.
    pub refresh_interval: Duration,
    /// Lift the connectors' own rate limits (benchmarks against simulators only).
    pub lift_rate_limits: bool,
    /// A SKU is low on stock at this many available units or fewer (`stock.low`).
    pub low_stock_threshold: i64,
    /// Several processes on one PostgreSQL database: each connection's own work runs in
    /// the one process holding its lease (see `engine::Ownership`). None: this process
    /// runs every connection's work (SQLite, a single process).
    pub ownership: Option<Ownership>,
    /// Webhook order deliveries pending at once (verified, fetched, stored, not yet
    /// answered); past this they are answered 503 with `Retry-After` at once.
    pub max_pending_deliveries: usize,
    /// A webhook whose notification summarises the order (Amazon ORDER_CHANGE: status,
    /// SKUs, quantities) and whose fetch has not stored the order within this long has
    /// its summary stored first, so stock moves while the fetch waits for its rate limit;
    /// the fetched order then fills in the buyer fields. None: always wait for the fetch.
    pub summary_after: Option<Duration>,
    /// eBay's revisions per listing per UTC day (None: eBay's 250). Lower only against a
    /// simulator whose cap is lower (tests).
    pub ebay_daily_revisions: Option<u32>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            batch_max: 1024,
            commits_in_flight: 2,
            fetch_batch: 50,
            fetch_wait: Duration::from_millis(1),
            fetch_concurrency: 8,
            poll_interval: Some(Duration::from_secs(60)),
            poll_overlap: Duration::from_secs(120),
            poll_lookback: Duration::from_secs(24 * 3600),
            reconcile_interval: Some(Duration::from_secs(300)),
            returns_report_interval: None,
            push_batch: 200,
            push_retry_base: Duration::from_millis(200),
            push_retry_max: Duration::from_secs(30),
            push_attempts_before_event: 5,
            refresh_interval: Duration::from_secs(2),
            lift_rate_limits: false,
            low_stock_threshold: LOW_STOCK_THRESHOLD,
            ownership: None,
            max_pending_deliveries: MAX_PENDING_DELIVERIES,
            summary_after: Some(SUMMARY_AFTER),
            ebay_daily_revisions: None,
        }
    }
}
