//! Retention: once an hour, buyer fields (name, email, phone, address) of orders
//! completed longer ago than `pii_retention` are deleted, in one audited statement.

use std::time::Duration;

use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, sql_params};

use super::{ACTOR, Inner, SyncEngine, ms};
use crate::{Result, now_ms};

impl SyncEngine {
    pub(super) async fn retention_loop(&self) {
        let mut stop_rx = self.inner.shutdown.subscribe();
        loop {
            if let Err(e) = delete_expired_pii(&self.inner).await {
                tracing::warn!(error = %e, "PII retention run failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = stop_rx.changed() => return,
            }
        }
    }
}

const EXPIRE_PII: &str =
    "UPDATE orders SET buyer_name = NULL, buyer_email = NULL, buyer_phone = NULL,
        buyer_address = NULL, pii_deleted_at_ms = $1
     WHERE pii_deleted_at_ms IS NULL AND status_rank >= 4 AND updated_at_ms < $2";

/// Delete buyer fields of orders completed longer ago than the retention period.
async fn delete_expired_pii(inner: &Inner) -> Result<()> {
    let now = now_ms();
    let before = now - ms(inner.opts.pii_retention);
    inner
        .store
        .commit(
            &ACTOR,
            vec![Change::new(
                Mutation::Many {
                    steps: vec![Mutation::Sql {
                        statement: EXPIRE_PII,
                        params: sql_params![now, before],
                        expect: Expect::Any,
                    }],
                    guard: true,
                },
                AuditEntry::new(
                    "order.pii_retention",
                    "orders",
                    AuditDetails::new().int("completed_before_ms", before),
                ),
            )],
        )
        .await?;
    Ok(())
}
