//! `audit_mirror_state`: one row per sink — how far it copied the chain, its last error
//! and failure count, and which process holds it (a lease).
//!
//! Invariants: written only on the unaudited bookkeeping path (it records progress, not a
//! decision); `acked_seq` moves only after the sink confirmed the rows; only the lease
//! holder moves it; errors stored here are the mirror's own texts, which never hold a
//! token. A process whose lease expired stops mirroring at its next batch.

use stockade_store::{Columns, FromRow, Result, Store, sql_params};

/// One sink's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkState {
    pub sink: String,
    pub acked_seq: i64,
    pub acked_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    pub failing_since_ms: Option<i64>,
    pub failures: i64,
    pub holder: Option<String>,
    pub lease_until_ms: Option<i64>,
}

impl FromRow for SinkState {
    fn from_row(c: &mut Columns<'_>) -> Result<Self> {
        Ok(SinkState {
            sink: c.get()?,
            acked_seq: c.get()?,
            acked_at_ms: c.get()?,
            last_error: c.get()?,
            last_error_at_ms: c.get()?,
            failing_since_ms: c.get()?,
            failures: c.get()?,
            holder: c.get()?,
            lease_until_ms: c.get()?,
        })
    }
}

/// Every sink's row.
pub async fn all(store: &Store) -> Result<Vec<SinkState>> {
    store
        .query_as(
            "SELECT sink, acked_seq, acked_at_ms, last_error, last_error_at_ms, failing_since_ms,
                    failures, holder, lease_until_ms
             FROM audit_mirror_state ORDER BY sink",
            vec![],
        )
        .await
}

/// One sink's row, if it ever ran.
pub async fn get(store: &Store, sink: &str) -> Result<Option<SinkState>> {
    Ok(all(store).await?.into_iter().find(|s| s.sink == sink))
}

/// Create the sink's row if missing.
pub async fn ensure(store: &Store, sink: &str, now: i64) -> Result<()> {
    store
        .write_unaudited(
            "INSERT INTO audit_mirror_state (sink, acked_seq, failures, updated_at_ms)
             VALUES ($1, 0, 0, $2) ON CONFLICT (sink) DO NOTHING",
            sql_params![sink, now],
        )
        .await
        .map(|_| ())
}

/// Take or extend the lease until `until`; `false` while another live process holds it.
pub async fn lease(store: &Store, sink: &str, holder: &str, now: i64, until: i64) -> Result<bool> {
    let n = store
        .write_unaudited(
            "UPDATE audit_mirror_state SET holder = $2, lease_until_ms = $3, updated_at_ms = $4
             WHERE sink = $1 AND (holder IS NULL OR holder = $2 OR lease_until_ms IS NULL
                                  OR lease_until_ms < $4)",
            sql_params![sink, holder, until, now],
        )
        .await?;
    Ok(n == 1)
}

/// Give the lease up (at shutdown), so another process takes over at once.
pub async fn release(store: &Store, sink: &str, holder: &str) -> Result<()> {
    store
        .write_unaudited(
            "UPDATE audit_mirror_state SET holder = NULL, lease_until_ms = NULL
             WHERE sink = $1 AND holder = $2",
            sql_params![sink, holder],
        )
        .await
        .map(|_| ())
}

/// Rows up to `seq` are in the sink: record it and clear the failing streak.
pub async fn ack(store: &Store, sink: &str, holder: &str, seq: i64, now: i64) -> Result<()> {
    store
        .write_unaudited(
            "UPDATE audit_mirror_state SET acked_seq = $2, acked_at_ms = $3, failing_since_ms = NULL,
                    failures = 0, updated_at_ms = $3
             WHERE sink = $1 AND holder = $4",
            sql_params![sink, seq, now, holder],
        )
        .await
        .map(|_| ())
}

/// The destination holds rows up to `seq` (found on resume); the failing streak stays
/// until a batch is copied.
pub async fn resumed(store: &Store, sink: &str, holder: &str, seq: i64, now: i64) -> Result<()> {
    store
        .write_unaudited(
            "UPDATE audit_mirror_state SET acked_seq = $2, updated_at_ms = $3
             WHERE sink = $1 AND holder = $4",
            sql_params![sink, seq, now, holder],
        )
        .await
        .map(|_| ())
}

/// Record a failure (`message` names the fix and holds no secret).
pub async fn fail(store: &Store, sink: &str, holder: &str, message: &str, now: i64) -> Result<()> {
    let message: String = message.chars().take(500).collect();
    store
        .write_unaudited(
            "UPDATE audit_mirror_state SET last_error = $2, last_error_at_ms = $3,
                    failing_since_ms = COALESCE(failing_since_ms, $3), failures = failures + 1,
                    updated_at_ms = $3
             WHERE sink = $1 AND holder = $4",
            sql_params![sink, message, now, holder],
        )
        .await
        .map(|_| ())
}
