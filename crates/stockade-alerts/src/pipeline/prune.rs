//! Outbox pruning: delivered rows leave the outbox after the retention period. Only
//! `sent` rows are pruned; pending and held rows stay until they are delivered.

use std::time::Duration;

use stockade_store::{Store, sql_params};

use super::{Result, ms, now_ms};

/// Delete delivered outbox rows older than `retention` (the router does this hourly; the
/// audit log keeps each delivery's record).
pub async fn prune(store: &Store, retention: Duration) -> Result<u64> {
    let cutoff = now_ms() - ms(retention);
    Ok(store
        .write_unaudited(
            "DELETE FROM alert_outbox WHERE state = 'sent' AND sent_at_ms < $1",
            sql_params![cutoff],
        )
        .await?)
}
