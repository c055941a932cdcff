//! The pusher: one per connection. It pushes the newest target quantity of every listing
//! whose `target_version` is ahead of its `pushed_version` (zeros first, `push_batch` per
//! call), records what the channel confirmed, backs off while the channel fails (raising
//! a `push_failed` event after `push_attempts_before_event` failures), keeps the
//! connection's health streak, and resolves the batch notices of the ingest worker.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stockade_core::event::{Event, MarketFailure};
use stockade_marketplaces::{Connector, MarketError, QuantityPath, QuantityUpdate};
use stockade_store::{AuditDetails, AuditEntry, Change, Columns, FromRow, Mutation, sql_params};
use tokio::sync::mpsc;

use super::commit::tracker_done;
use super::{ACTIVE, ACTOR, Inner, Live, Notice, SyncEngine, market_failure, record_event};
use crate::catalog::ListingIds;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::{Metrics, Samples};
use crate::{Result, SyncOptions, now_ms};

impl SyncEngine {
    /// Wake every pusher (after a catalog import, for instance).
    pub fn wake_pushers(&self) {
        self.inner.listed.mark_stale();
        if let Ok(m) = self.inner.live.read() {
            for l in m.values() {
                l.wake.notify_one();
            }
        }
    }

    /// Whether every listing of every active connection has its newest target confirmed.
    pub async fn settled(&self) -> Result<bool> {
        let waiting = self
            .inner
            .store
            .count(
                "SELECT COUNT(*) FROM listings l JOIN connections c ON c.id = l.connection_id
             WHERE c.status = 'active' AND l.target_version > l.pushed_version",
                vec![],
            )
            .await?;
        Ok(waiting == 0)
    }
}

const PENDING: &str =
    "SELECT sku, listing_ref, target_qty, target_version, pushed_version, acked_qty FROM listings
     WHERE connection_id = $1 AND target_version > pushed_version
     ORDER BY CASE WHEN target_qty = 0 THEN 0 ELSE 1 END, sku LIMIT 500";
#[derive(Clone)]
pub(super) struct Pending {
    pub(super) sku: String,
    ids: ListingIds,
    pub(super) qty: u32,
    version: i64,
    pushed: i64,
    /// What the channel last confirmed (none yet: NULL).
    pub(super) acked: Option<u32>,
}

impl FromRow for Pending {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(Pending {
            sku: c.get()?,
            ids: serde_json::from_str(&c.get::<String>()?).unwrap_or_default(),
            qty: u32::try_from(c.get::<i64>()?.max(0)).unwrap_or(u32::MAX),
            version: c.get()?,
            pushed: c.get()?,
            acked: c
                .get::<Option<i64>>()?
                .map(|q| u32::try_from(q.max(0)).unwrap_or(u32::MAX)),
        })
    }
}

/// Push the newest target of every changed listing; resolve batch notices.
pub(super) async fn push_loop(
    inner: Arc<Inner>,
    live: Arc<Live>,
    mut notices: mpsc::UnboundedReceiver<Notice>,
) {
    let mut waiting: Vec<(Notice, HashSet<String>)> = Vec::new();
    let mut failures: u32 = 0;
    let mut reported = false;
    // A streak recorded by an earlier process is cleared by this one's first good round.
    let mut streak_recorded = true;
    let staleness = inner.metrics.staleness_of(&live.name);
    let lag = inner
        .metrics
        .telemetry
        .push_lag
        .get_or_create(&live.labels())
        .clone();
    let mut again = true;
    // What goes out first and through which path (see `plan`).
    let mut planner = super::plan::Planner::new(
        live.connector.push_paths(),
        inner.opts.lift_rate_limits,
        inner.opts.push_batch,
    );
    let mut lane = super::plan::BulkLane::default();
    // Under which lease today's revision counts were loaded (see `revisions`).
    let mut loaded: super::revisions::Loaded = None;
    let mut pruned_day = i64::MIN;
    loop {
        if !again {
            if failures > 0 {
                // While failing, wake-ups do not shorten the backoff.
                tokio::time::sleep(backoff(&inner.opts, failures)).await;
            } else {
                tokio::select! {
                    _ = live.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
        again = false;
        while let Ok(n) = notices.try_recv() {
            let skus = (*n.skus).clone();
            waiting.push((n, skus));
        }
        // Paused, isolated by an incident or in lockdown: nothing is pushed (the
        // pending quantities stay in the database and go out once it resumes).
        if live.status() != ACTIVE || super::contained(&inner, &live.name) {
            for (n, _) in waiting.drain(..) {
                tracker_done(&inner, n.batch);
            }
            continue;
        }
        // A new owner (or a new start) knows today's revisions before it sends any.
        if !super::revisions::ensure_loaded(&inner, &live, &mut planner, &mut loaded).await {
            continue;
        }
        super::revisions::roll_over(&inner, &live, &planner, &mut pruned_day).await;
        let known = waiting.len();
        let pending = match read_pending(&inner, &live).await {
            Ok(p) => p,
            // The database is away (said once by the store): look again in a second,
            // without growing the channel's backoff.
            Err(e) if e.is_unavailable() => {
                tracing::debug!(connection = %live.name, error = %e, "could not read pending listings");
                continue;
            }
            Err(e) => {
                tracing::warn!(connection = %live.name, error = %e, "could not read pending listings");
                failures = failures.saturating_add(1);
                continue;
            }
        };
        let truncated = pending.len() >= 500;
        if !truncated {
            let set: HashSet<&str> = pending.iter().map(|p| p.sku.as_str()).collect();
            for (_, skus) in waiting.iter_mut().take(known) {
                skus.retain(|s| set.contains(s.as_str()));
            }
        }
        let mut confirmed: HashSet<String> = HashSet::new();
        if !pending.is_empty() {
            let (failed, attempted, more) = super::plan::push_round(
                &inner,
                &live,
                &pending,
                &mut planner,
                &mut lane,
                &mut confirmed,
            )
            .await;
            if confirmed.len() < attempted || failed.is_some() {
                failures = failures.saturating_add(1);
                Metrics::inc(&inner.metrics.push_failures, 1);
                inner
                    .metrics
                    .telemetry
                    .push_outcome(&live.name, "failed", 1);
                let text = failed.as_ref().map_or_else(
                    || "the channel did not confirm the new quantities".to_owned(),
                    crate::health::error_text,
                );
                crate::health::record_failure(&inner.store, live.id, &text, now_ms()).await;
                streak_recorded = true;
                if let Some(e) = &failed {
                    inner
                        .metrics
                        .error(format!("{}: push failed: {e}", live.name));
                    if failures >= inner.opts.push_attempts_before_event && !reported {
                        reported = true;
                        let waiting = pending.len().saturating_sub(confirmed.len());
                        let failure = MarketFailure {
                            attempts: Some(i64::from(failures)),
                            listings: Some(i64::try_from(waiting).unwrap_or(i64::MAX)),
                            ..market_failure(&live.name, e)
                        };
                        let _ = record_event(&inner, Event::PushFailed(failure)).await;
                    }
                }
            } else {
                failures = 0;
                reported = false;
                again = truncated || more;
                if streak_recorded {
                    crate::health::record_ok(&inner.store, live.id).await;
                    streak_recorded = false;
                }
            }
        } else if streak_recorded {
            // Nothing waits for the channel (any more): no streak to show.
            failures = 0;
            crate::health::record_ok(&inner.store, live.id).await;
            streak_recorded = false;
        }
        resolve_notices(&inner, &mut waiting, known, &confirmed, &staleness, &lag);
    }
}

/// The listings waiting for the channel (at most 500, zeros first).
async fn read_pending(inner: &Inner, live: &Live) -> stockade_store::Result<Vec<Pending>> {
    let rows = inner.store.query(PENDING, sql_params![live.id]).await?;
    // A row that does not decode is skipped, not fatal to the pusher.
    Ok(rows.iter().filter_map(|r| r.decode().ok()).collect())
}

/// Resolve notices: a listing is done when it needed nothing or was confirmed. Only the
/// first `known` notices (those the pending read covered) are looked at.
fn resolve_notices(
    inner: &Inner,
    waiting: &mut Vec<(Notice, HashSet<String>)>,
    known: usize,
    confirmed: &HashSet<String>,
    staleness: &Samples,
    lag: &Histogram,
) {
    let now = Instant::now();
    let mut i = 0;
    while i < waiting.len().min(known) {
        let (n, skus) = &mut waiting[i];
        let before = skus.len();
        skus.retain(|s| !confirmed.contains(s));
        if skus.len() < before {
            let d = now.saturating_duration_since(n.first_arrival);
            staleness.record(d);
            lag.observe(d.as_secs_f64());
        }
        if skus.is_empty() {
            let (n, _) = waiting.remove(i);
            tracker_done(inner, n.batch);
        } else {
            i += 1;
        }
    }
}

fn backoff(opts: &SyncOptions, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    opts.push_retry_base
        .saturating_mul(1u32 << exp)
        .min(opts.push_retry_max)
}

/// Send one chunk; record what the channel confirmed. Returns the confirmed SKUs and the
/// last error of a listing the channel refused.
pub(super) async fn push_chunk(
    inner: &Arc<Inner>,
    live: &Arc<Live>,
    chunk: &[&Pending],
    path: Option<QuantityPath>,
) -> std::result::Result<(Vec<String>, Option<MarketError>), MarketError> {
    let updates: Vec<QuantityUpdate> = chunk
        .iter()
        .map(|p| QuantityUpdate {
            sku: p.sku.clone(),
            quantity: p.qty,
            listing: p.ids.to_ref(&p.sku),
        })
        .collect();
    Metrics::inc(&inner.metrics.push_calls, 1);
    inner
        .gateway
        .cap_round_calls(inner.admission.round_cap(inner.opts.max_pending_deliveries));
    let acks = match path {
        Some(path) => live.connector.set_quantities_via(&updates, path).await?,
        None => live.connector.set_quantities(&updates).await?,
    };
    let now = now_ms();
    let mut steps = Vec::new();
    let mut ok = Vec::new();
    let mut err = None;
    let mut zeros = 0;
    for (p, ack) in chunk.iter().zip(acks) {
        if ack.accepted {
            steps.push(Mutation::Row {
                statement: &crate::ack::ACK_ROWS,
                params: sql_params![p.version, i64::from(p.qty), now, live.id, p.sku.as_str()],
            });
            if p.qty == 0 {
                zeros += 1;
            }
            Metrics::inc(
                &inner.metrics.pushes_coalesced,
                u64::try_from((p.version - p.pushed - 1).max(0)).unwrap_or(0),
            );
            ok.push(p.sku.clone());
        } else if let Some(e) = ack.error {
            err = Some(e);
        }
    }
    if !steps.is_empty() {
        let n = steps.len() as i64;
        // Scale-out: refused whole if another process took the connection meanwhile.
        steps.splice(0..0, live.owned.fence(live.id));
        if let Err(e) = inner
            .store
            .commit(
                &ACTOR,
                vec![Change::new(
                    Mutation::Many {
                        steps,
                        guard: false,
                    },
                    AuditEntry::new(
                        "listing.push",
                        format!("connection:{}", live.name),
                        AuditDetails::new().int("listings", n).int("zeros", zeros),
                    ),
                )],
            )
            .await
        {
            if !super::owner::lost(inner, live, &e) && !e.is_unavailable() {
                tracing::warn!(connection = %live.name, error = %e, "could not record confirmed quantities; they will be pushed again");
            }
            return Ok((Vec::new(), err));
        }
        Metrics::inc(&inner.metrics.pushes_confirmed, ok.len() as u64);
        inner
            .metrics
            .telemetry
            .push_outcome(&live.name, "confirmed", ok.len() as u64);
    }
    Ok((ok, err))
}
