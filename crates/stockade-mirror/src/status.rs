//! What `stockade audit mirror status` shows, read from the database only (it works with
//! the server stopped): per sink, the lag in rows and seconds, the last success, the last
//! error and the failing streak, and who holds the sink.

use stockade_store::{Result, Store, sql_params};

use crate::state::{self, SinkState};

/// One sink's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStatus {
    pub state: SinkState,
    /// The chain's last row.
    pub head_seq: i64,
    /// Rows after `acked_seq`.
    pub lag_rows: i64,
    /// Age of the oldest row not copied yet (0 when caught up), in seconds.
    pub lag_seconds: i64,
}

/// The lag of a sink at `acked`: (rows, seconds), with the chain's head.
pub async fn lag(store: &Store, acked: i64, now_ms: i64) -> Result<(i64, i64, i64)> {
    let head = store.audit_head().await?.map_or(0, |(s, _)| s);
    if head <= acked {
        return Ok((head, 0, 0));
    }
    let oldest: Option<i64> = store
        .query_one_as(
            "SELECT ts_ms FROM audit WHERE seq = $1",
            sql_params![acked + 1],
        )
        .await?;
    let seconds = oldest.map_or(0, |ts| ((now_ms - ts) / 1000).max(0));
    Ok((head, head - acked, seconds))
}

/// Every sink that ever ran.
pub async fn status(store: &Store) -> Result<Vec<SinkStatus>> {
    let now = stockade_core::time::now_ms();
    let mut out = Vec::new();
    for s in state::all(store).await? {
        let (head_seq, lag_rows, lag_seconds) = lag(store, s.acked_seq, now).await?;
        out.push(SinkStatus {
            state: s,
            head_seq,
            lag_rows,
            lag_seconds,
        });
    }
    Ok(out)
}
