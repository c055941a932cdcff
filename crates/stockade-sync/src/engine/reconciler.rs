//! The reconciler: reads every listing's quantity back from the channel every
//! `reconcile_interval`. A settled listing (nothing pending) that shows something else
//! than its target gets a new target version, so the pusher sends it again; the others
//! only get their checked quantity and time recorded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use stockade_marketplaces::Connector;
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, sql_params};

use super::{ACTIVE, ACTOR, Inner, Live, SyncEngine};
use crate::catalog::ListingIds;
use crate::metrics::Metrics;
use crate::{Result, SyncError, now_ms};

impl SyncEngine {
    /// Reconcile one connection now.
    pub async fn reconcile_now(&self, name: &str) -> Result<usize> {
        let live = self
            .get_live(name)
            .ok_or_else(|| SyncError::UnknownConnection(name.to_owned()))?;
        reconcile_once(&self.inner, &live).await
    }
}

const LISTINGS_OF: &str =
    "SELECT sku, listing_ref, target_qty, target_version, pushed_version FROM listings
     WHERE connection_id = $1 ORDER BY sku";
const DRIFT: &str =
    "UPDATE listings SET channel_qty = $1, checked_at_ms = $2, target_version = target_version + 1
     WHERE connection_id = $3 AND sku = $4 AND target_version = $5 AND pushed_version = $5";
const CHECKED: &str = "UPDATE listings SET channel_qty = $1, checked_at_ms = $2 WHERE connection_id = $3 AND sku = $4";

pub(super) async fn reconcile_loop(inner: Arc<Inner>, live: Arc<Live>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if live.status() != ACTIVE {
            continue;
        }
        if let Err(e) = reconcile_once(&inner, &live).await {
            warn_unless_unreachable!(e, connection = %live.name, error = %e, "reconciliation failed");
            inner
                .metrics
                .error(format!("{}: reconciliation failed: {e}", live.name));
        }
    }
}

/// Read every listing's quantity back; a settled listing that shows something else than
/// its target gets a new version, so the pusher sends it again. Returns the drift count.
async fn reconcile_once(inner: &Arc<Inner>, live: &Arc<Live>) -> Result<usize> {
    let rows: Vec<(String, String, i64, i64, i64)> = inner
        .store
        .query_as(LISTINGS_OF, sql_params![live.id])
        .await?;
    let listings: Vec<_> = rows
        .into_iter()
        .map(|(sku, ids, target, version, pushed)| {
            let ids: ListingIds = serde_json::from_str(&ids).unwrap_or_default();
            (sku, ids, target, version, pushed)
        })
        .collect();
    let mut drift = 0;
    let now = now_ms();
    for chunk in listings.chunks(50) {
        let refs: Vec<_> = chunk.iter().map(|(s, ids, ..)| ids.to_ref(s)).collect();
        let seen: HashMap<String, u32> = live
            .connector
            .get_quantities(&refs)
            .await?
            .into_iter()
            .collect();
        let mut steps = Vec::new();
        let mut drifted = 0i64;
        for (sku, _, target, version, pushed) in chunk {
            let Some(&q) = seen.get(sku) else { continue };
            let q = i64::from(q);
            if q != *target && version == pushed {
                drifted += 1;
                steps.push(Mutation::Sql {
                    statement: DRIFT,
                    params: sql_params![q, now, live.id, sku.as_str(), *version],
                    expect: Expect::Any,
                });
            } else {
                steps.push(Mutation::Sql {
                    statement: CHECKED,
                    params: sql_params![q, now, live.id, sku.as_str()],
                    expect: Expect::Any,
                });
            }
        }
        if steps.is_empty() {
            continue;
        }
        inner
            .store
            .commit(
                &ACTOR,
                vec![Change::new(
                    Mutation::Many {
                        steps,
                        guard: false,
                    },
                    AuditEntry::new(
                        "listing.reconcile",
                        format!("connection:{}", live.name),
                        AuditDetails::new()
                            .int("checked", chunk.len() as i64)
                            .int("drift", drifted),
                    ),
                )],
            )
            .await?;
        drift += usize::try_from(drifted).unwrap_or(0);
    }
    Metrics::inc(&inner.metrics.reconcile_runs, 1);
    Metrics::inc(&inner.metrics.drift_repaired, drift as u64);
    if drift > 0 {
        tracing::warn!(connection = %live.name, drift, "channel quantities drifted; pushing the right ones again");
        live.wake.notify_one();
    }
    Ok(drift)
}
