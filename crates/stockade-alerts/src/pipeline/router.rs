//! The router: the event stream → classified alerts → outbox rows.
//!
//! Events are written by their producers in the same transaction as the failure (sync
//! error events, oversells, egress anomalies, access security events). The router reads
//! the events after its cursor (subscriber `alerts`, see [`stockade_store::events`]),
//! classifies each into an allow-listed, scrubbed [`Alert`], and in one transaction
//! writes an outbox row per channel that takes it (the first of its aggregation key), or
//! folds it into the key's open window (see [`super::windows`]), marks the events routed
//! and moves its cursor past them. The cursor moves only from where the batch began, in
//! the same transaction as the batch's outbox rows and windows, so each event is routed
//! exactly once, across restarts and processes. One process routes at a time: the one
//! holding the lease `alert_router` (the others wait and take over within seconds of its
//! end), and its commits carry the lease's fence; routing now ([`super::Alerts::route_now`])
//! takes the same lease and is refused while another process holds it. Without the lease
//! every process raced for every batch: each lost race rolled a transaction back and
//! logged a failure, about a hundred a second under load with two processes. It wakes on every write this process
//! makes and polls for other processes' writes; it also prunes delivered rows hourly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, sql_params};
use tokio::sync::watch;

use super::prune::prune;
use super::windows::{UPSERT_WINDOW, Window, flush_windows, follow_up, load_windows};
use super::{ACTOR, AlertsError, Inner, Result, lock, ms, now_ms};
use crate::classify::classify;
use crate::config::AlertsConfig;
use crate::model::Alert;

/// Events routed per transaction.
const ROUTE_BATCH: i64 = 500;

const INSERT_OUTBOX: &str = "INSERT INTO alert_outbox (channel, created_at_ms, severity, events, alert, state, attempts, next_at_ms)
     VALUES ($1, $2, $3, $4, $5, 'pending', 0, $2)";

pub(super) fn outbox_steps(
    config: &AlertsConfig,
    alert: &Alert,
    now: i64,
    steps: &mut Vec<Mutation>,
) -> u64 {
    let json = match serde_json::to_string(alert) {
        Ok(j) => j,
        Err(_) => return 0,
    };
    let mut n = 0;
    for ch in config.channels.iter().filter(|c| c.accepts(alert)) {
        steps.push(Mutation::Sql {
            statement: INSERT_OUTBOX,
            params: sql_params![
                ch.name.as_str(),
                now,
                alert.severity.rank(),
                alert.count.max(1),
                json.as_str()
            ],
            expect: Expect::One("alert outbox row"),
        });
        n += 1;
    }
    n
}

/// Route up to one batch of unrouted events. Returns how many were routed. Under `grant`
/// (the router's lease), the commit is refused whole if another process took routing over.
pub(super) async fn route_batch(
    inner: &Inner,
    grant: Option<&stockade_store::Grant>,
) -> Result<usize> {
    let batch = inner.events.next_batch(ROUTE_BATCH).await?;
    if batch.events.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    let window_ms = ms(inner.config.window);
    let mut windows = load_windows(&inner.store).await?;
    let mut steps = Vec::with_capacity(batch.events.len() + 3);
    steps.extend(grant.map(stockade_store::Grant::fence));
    steps.push(batch.ack());
    steps.push(batch.mark_routed(now));
    let (mut outbox, mut folded, mut alerted) = (0u64, 0u64, 0u64);
    for ev in &batch.events {
        let Some(alert) = classify(ev) else {
            continue;
        };
        alerted += 1;
        match windows.get_mut(&alert.key) {
            Some(w) if w.closes_at_ms > now => {
                w.folded += 1;
                w.alert = alert;
                w.dirty = true;
                folded += 1;
            }
            existing => {
                if let Some(w) = existing
                    && w.folded > 0
                {
                    // The window closed before the flusher saw it: its follow-up first.
                    outbox += outbox_steps(&inner.config, &follow_up(w), now, &mut steps);
                }
                outbox += outbox_steps(&inner.config, &alert, now, &mut steps);
                windows.insert(
                    alert.key.clone(),
                    Window {
                        opened_at_ms: now,
                        closes_at_ms: now + window_ms,
                        folded: 0,
                        alert,
                        dirty: true,
                    },
                );
            }
        }
    }
    for (key, w) in windows.iter().filter(|(_, w)| w.dirty) {
        let Ok(json) = serde_json::to_string(&w.alert) else {
            continue;
        };
        steps.push(Mutation::Sql {
            statement: UPSERT_WINDOW,
            params: sql_params![key.as_str(), w.opened_at_ms, w.closes_at_ms, w.folded, json],
            expect: Expect::One("alert window"),
        });
    }
    let n = batch.events.len();
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
                    "alert.route",
                    "alerts",
                    AuditDetails::new()
                        .int("events", i64::try_from(n).unwrap_or(i64::MAX))
                        .int("alerted", i64::try_from(alerted).unwrap_or(i64::MAX))
                        .int("folded", i64::try_from(folded).unwrap_or(i64::MAX))
                        .int("outbox", i64::try_from(outbox).unwrap_or(i64::MAX)),
                ),
            )],
        )
        .await?;
    {
        let mut s = lock(&inner.stats);
        s.events_routed += n as u64;
        s.events_folded += folded;
        s.outbox_rows += outbox;
    }
    if outbox > 0 {
        for ch in &inner.channels {
            ch.wake.notify_one();
        }
    }
    Ok(n)
}

pub(super) async fn router_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut writes = inner.store.writes();
    let mut next_close: Option<i64> = None;
    let mut pruned_at: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        if pruned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            pruned_at = Some(Instant::now());
            if let Err(e) = prune(&inner.store, inner.config.retention).await {
                tracing::warn!("pruning delivered alerts failed: {e}");
            }
        }
        // Mark what we have seen before reading, so a write during this round wakes the
        // next one at once.
        writes.borrow_and_update();
        let mut more = false;
        // Only the lease's holder routes; the others wait for it (woken when they take it).
        if let Some(grant) = inner.router_lease.current() {
            let _routing = inner.routing.lock().await;
            match route_batch(&inner, Some(&grant)).await {
                Ok(n) => more = n as i64 == ROUTE_BATCH,
                Err(e) => routing_failed(&inner, &grant, "alert routing", &e),
            }
            if next_close.is_none_or(|t| t <= now_ms()) {
                match flush_windows(&inner, Some(&grant)).await {
                    Ok(next) => next_close = next,
                    Err(e) => routing_failed(&inner, &grant, "closing alert windows", &e),
                }
            }
        }
        if more {
            continue;
        }
        // Our own writes wake us too: a short pause bounds the polling rate under load.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut wait = inner.config.poll_interval;
        if let Some(t) = next_close {
            let until = Duration::from_millis(u64::try_from((t - now_ms()).max(0)).unwrap_or(0));
            wait = wait.min(until);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = writes.changed() => {}
            _ = inner.wake_router.notified() => {}
            _ = stop.changed() => {}
        }
        // A window may have been opened by the batch we are about to route.
        if next_close.is_none() {
            next_close = Some(now_ms() + ms(inner.config.window).min(1000));
        }
    }
}

/// One line for a failed round, or none: the store says once that the database is away,
/// and a fenced commit means the lease passed on (said once here, and routing stops).
fn routing_failed(inner: &Inner, grant: &stockade_store::Grant, what: &str, e: &AlertsError) {
    match e {
        AlertsError::Store(e) if e.is_unavailable() => {
            tracing::debug!("{what} failed (retrying): {e}");
        }
        AlertsError::Store(stockade_store::StoreError::Fenced(_)) => {
            tracing::warn!(
                "{what}: the router's lease passed to another process while this one was paused or slow; nothing was recorded, the new holder routes"
            );
            inner.router_lease.lost(grant);
        }
        e => tracing::warn!("{what} failed (retrying): {e}"),
    }
}
