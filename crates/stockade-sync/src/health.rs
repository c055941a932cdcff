//! Push health: a stalled channel looks stalled (migration 0007).
//!
//! While a connection's pushes fail, its pusher records the failing streak on the
//! connection and on every listing still waiting for the channel: how many rounds failed,
//! since when (the first failure of the current streak, kept across retries and
//! restarts) and the last error (the marketplace's scrubbed message: [`MarketError`]
//! never carries secrets). A confirmed push clears a listing's streak; a round that
//! confirms everything clears the connection's. `stockade connection show` and
//! `stockade sku list` print it.

use serde::Serialize;
use stockade_marketplaces::MarketError;
use stockade_store::{Columns, FromRow, Store, sql_params};

use crate::Result;

/// The longest error text kept.
const ERROR_MAX: usize = 300;

/// A connection's or a listing's failing streak.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PushHealth {
    /// Failed push rounds in the current streak (0: healthy).
    pub failures: i64,
    /// When the current streak began.
    pub failing_since_ms: Option<i64>,
    /// The last error of the streak (scrubbed).
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_at_ms: Option<i64>,
}

impl PushHealth {
    pub fn failing(&self) -> bool {
        self.failures > 0
    }
}

/// The text kept for a failed push: class and scrubbed message, bounded.
pub(crate) fn error_text(e: &MarketError) -> String {
    let mut t = format!("{e}");
    if t.chars().count() > ERROR_MAX {
        t = t.chars().take(ERROR_MAX).collect::<String>() + "…";
    }
    t
}

const FAIL_CONNECTION: &str = "UPDATE connections SET push_failures = push_failures + 1,
        push_failing_since_ms = COALESCE(push_failing_since_ms, $1),
        push_last_error = $2, push_last_error_at_ms = $1
     WHERE id = $3";
const FAIL_LISTINGS: &str = "UPDATE listings SET push_failures = push_failures + 1,
        push_failing_since_ms = COALESCE(push_failing_since_ms, $1), push_last_error = $2
     WHERE connection_id = $3 AND target_version > pushed_version";
/// PostgreSQL: the same, locking the rows by SKU first (the order ingest and the push
/// confirmations lock listings in), not in the table's physical order.
const FAIL_LISTINGS_PG: &str = "UPDATE listings l SET push_failures = l.push_failures + 1,
        push_failing_since_ms = COALESCE(l.push_failing_since_ms, $1), push_last_error = $2
       FROM (SELECT sku FROM listings WHERE connection_id = $3 AND target_version > pushed_version
              ORDER BY sku FOR NO KEY UPDATE) x
      WHERE l.connection_id = $3 AND l.sku = x.sku";
const CLEAR_CONNECTION: &str = "UPDATE connections SET push_failures = 0,
        push_failing_since_ms = NULL, push_last_error = NULL, push_last_error_at_ms = NULL
     WHERE id = $1 AND (push_failures <> 0 OR push_failing_since_ms IS NOT NULL)";

/// A push round of `connection_id` left listings unconfirmed with `error`.
pub(crate) async fn record_failure(store: &Store, connection_id: i64, error: &str, now: i64) {
    // Listings first: whoever sees the connection failing also sees its listings marked.
    let listings = if store.is_postgres() {
        FAIL_LISTINGS_PG
    } else {
        FAIL_LISTINGS
    };
    for statement in [listings, FAIL_CONNECTION] {
        if let Err(e) = store
            .write_unaudited(statement, sql_params![now, error, connection_id])
            .await
        {
            warn_unless_unreachable!(e, error = %e, "could not record a failing push");
        }
    }
}

/// A push round confirmed everything: the connection is healthy again.
pub(crate) async fn record_ok(store: &Store, connection_id: i64) {
    if let Err(e) = store
        .write_unaudited(CLEAR_CONNECTION, sql_params![connection_id])
        .await
    {
        warn_unless_unreachable!(e, error = %e, "could not clear a failing push streak");
    }
}

impl FromRow for PushHealth {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(PushHealth {
            failures: c.get()?,
            failing_since_ms: c.get()?,
            last_error: c.get()?,
            last_error_at_ms: c.get()?,
        })
    }
}

/// The push health of connection `id`.
pub async fn connection_health(store: &Store, id: i64) -> Result<PushHealth> {
    Ok(store
        .query_one_as(
            "SELECT push_failures, push_failing_since_ms, push_last_error, push_last_error_at_ms
               FROM connections WHERE id = $1",
            sql_params![id],
        )
        .await?
        .unwrap_or_default())
}
