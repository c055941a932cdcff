//! The senders: one per channel, in the process holding the channel's lease
//! ([`super::lease`]); what they commit carries the lease's fence.
//!
//! Each message takes every due row (a burst becomes one digest), waits for the
//! channel's rate budget ([`super::limiter`]), is rendered, signed and sent through the
//! egress gateway, and its outcome is committed with an audit row ([`super::outcome`]).
//! A misconfigured channel sends nothing: its alerts are held (not retried, raised on the
//! other channels and the dashboard) and released when the channel's settings change or
//! by `stockade alert retry` ([`release_held`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use stockade_store::{
    AuditDetails, AuditEntry, Change, Expect, Grant, Mutation, Store, StoreError, sql_params,
};
use tokio::sync::watch;

use super::lease::{LEASE, log_fenced};
use super::outcome::record_outcome;
use super::{ACTOR, ChannelRuntime, Inner, Result, lock, now_ms};
use crate::channel::Outcome;
use crate::model::{Alert, StoredAlert};

/// Rows considered for one message.
const SEND_BATCH: i64 = 50;
/// A message sent less than `GATHER_AFTER` after the previous one waits `GATHER` for the
/// rest of its burst.
const GATHER_AFTER: Duration = Duration::from_secs(2);
const GATHER: Duration = Duration::from_millis(100);

/// A due outbox row.
pub(super) struct Row {
    pub(super) id: i64,
    pub(super) events: i64,
    pub(super) attempts: i64,
    pub(super) alert: Alert,
}

async fn due_rows(inner: &Inner, channel: &str, now: i64) -> Result<Vec<Row>> {
    let rows: Vec<(i64, i64, i64, StoredAlert)> = inner
        .store
        .query_as(
            "SELECT id, events, attempts, alert FROM alert_outbox
              WHERE channel = $1 AND state = 'pending' AND next_at_ms <= $2
              ORDER BY severity DESC, id LIMIT $3",
            sql_params![channel, now, SEND_BATCH],
        )
        .await?;
    let rows = rows
        .into_iter()
        .filter_map(|(id, events, attempts, StoredAlert(alert))| {
            Some(Row {
                id,
                events,
                attempts,
                alert: alert?,
            })
        });
    Ok(rows.collect())
}

pub(super) async fn channel_status(
    inner: &Inner,
    channel: &str,
) -> Option<(String, Option<String>)> {
    inner
        .store
        .query_one_as(
            "SELECT status, fingerprint FROM alert_channels WHERE name = $1",
            sql_params![channel],
        )
        .await
        .ok()?
}

pub(super) async fn sender_loop(
    inner: Arc<Inner>,
    ch: Arc<ChannelRuntime>,
    mut stop: watch::Receiver<bool>,
) {
    let name = ch.client.config.name.clone();
    let mut checked_fp_at: Option<Instant> = None;
    let mut last_sent: Option<Instant> = None;
    let mut gathered = false;
    loop {
        if *stop.borrow() {
            return;
        }
        // Only the holder of the channel's lease sends (its keeper wakes this loop when
        // it takes the lease).
        let Some(grant) = ch.lease.current() else {
            tokio::select! {
                _ = tokio::time::sleep(LEASE / 3) => {}
                _ = ch.wake.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        // A misconfigured channel holds its alerts until its settings change.
        if let Some((status, fp)) = channel_status(&inner, &name).await
            && status == "misconfigured"
        {
            misconfigured_round(&inner, &ch, &grant, fp, &mut checked_fp_at, &mut stop).await;
            continue;
        }
        let now = now_ms();
        let rows = match due_rows(&inner, &name, now).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(channel = %name, "reading the alert outbox: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if rows.is_empty() {
            wait_for_due(&inner, &ch, &name, &mut stop).await;
            continue;
        }
        // Rate budget: wait, then take whatever became due meanwhile into the message.
        let wait = {
            let cfg = &ch.client.config;
            lock(&ch.limiter).wait(cfg.per_second, cfg.per_minute, Instant::now())
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => { return; }
            }
            continue;
        }
        // Right after a message, wait a moment so the rest of a burst (events committed
        // one by one) leaves as one digest instead of a message each: the first alert of
        // a quiet spell still goes at once.
        if !gathered && last_sent.is_some_and(|t| t.elapsed() < GATHER_AFTER) {
            gathered = true;
            tokio::select! {
                _ = tokio::time::sleep(GATHER) => {}
                _ = stop.changed() => { return; }
            }
            continue;
        }
        gathered = false;
        let alerts: Vec<Alert> = rows.iter().map(|r| r.alert.clone()).collect();
        let n = ch.client.fitting(&alerts);
        let batch = &rows[..n];
        last_sent = Some(Instant::now());
        lock(&ch.limiter).sent.push_back(Instant::now());
        let outcome = ch.client.send(&inner.vault, &alerts[..n]).await;
        // The outcome commits under the lease's fence: a sender that lost the channel
        // while the message was in flight writes nothing over the new holder's work.
        match record_outcome(&inner, &ch, &grant, batch, &outcome).await {
            Ok(()) => {}
            Err(super::AlertsError::Store(StoreError::Fenced(_))) => {
                log_fenced(&name, "sending");
                ch.lease.lost(&grant);
                continue;
            }
            Err(e) => tracing::warn!(channel = %name, "recording an alert delivery failed: {e}"),
        }
        let kind = ch.client.config.kind.as_str();
        let outcome_word = if matches!(outcome, Outcome::Delivered { .. }) {
            "sent"
        } else {
            "failed"
        };
        inner
            .telemetry
            .count(kind, outcome_word, batch.len() as u64);
        match &outcome {
            Outcome::Delivered { .. } => lock(&inner.stats).messages_sent += 1,
            Outcome::RateLimited { wait, .. } => {
                lock(&inner.stats).send_failures += 1;
                lock(&ch.limiter).blocked_until = Some(Instant::now() + *wait);
            }
            _ => lock(&inner.stats).send_failures += 1,
        }
    }
}

/// One round of a misconfigured channel: release its held alerts if its settings changed
/// (checked every 15 s), else hold what is pending and wait.
async fn misconfigured_round(
    inner: &Inner,
    ch: &ChannelRuntime,
    grant: &Grant,
    fp: Option<String>,
    checked_fp_at: &mut Option<Instant>,
    stop: &mut watch::Receiver<bool>,
) {
    let name = ch.client.config.name.as_str();
    if checked_fp_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(15)) {
        *checked_fp_at = Some(Instant::now());
        let now_fp = ch.client.fingerprint(&inner.vault).await;
        if fp.as_deref() != Some(now_fp.as_str()) {
            if let Err(e) = release_held(&inner.store, name, "configuration changed").await {
                tracing::warn!(channel = %name, "releasing held alerts: {e}");
            }
            return;
        }
    }
    match hold_pending(inner, ch.client.config.kind.as_str(), name, grant).await {
        Ok(()) => {}
        Err(super::AlertsError::Store(StoreError::Fenced(_))) => {
            log_fenced(name, "holding alerts");
            ch.lease.lost(grant);
        }
        Err(e) => tracing::warn!(channel = %name, "holding alerts: {e}"),
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        _ = ch.wake.notified() => {}
        _ = stop.changed() => {}
    }
}

/// Nothing is due: sleep until the next pending row is (at most 2 s), a wake or a stop.
async fn wait_for_due(
    inner: &Inner,
    ch: &ChannelRuntime,
    name: &str,
    stop: &mut watch::Receiver<bool>,
) {
    let next = inner
        .store
        .query_one_as::<Option<i64>>(
            "SELECT MIN(next_at_ms) FROM alert_outbox WHERE channel = $1 AND state = 'pending'",
            sql_params![name],
        )
        .await
        .ok()
        .flatten()
        .flatten();
    let wait = next.map_or(Duration::from_secs(2), |t| {
        Duration::from_millis(u64::try_from((t - now_ms()).clamp(1, 2000)).unwrap_or(2000))
    });
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = ch.wake.notified() => {}
        _ = stop.changed() => {}
    }
}

/// While a channel is misconfigured, new alerts for it are held at once (not sent to
/// be refused again).
async fn hold_pending(
    inner: &Inner,
    kind: &'static str,
    channel: &str,
    grant: &Grant,
) -> Result<()> {
    let n = outbox_rows(&inner.store, channel, "pending").await?;
    if n == 0 {
        return Ok(());
    }
    inner
        .store
        .commit(
            &ACTOR,
            vec![Change::new(
                Mutation::Many {
                    steps: vec![
                        grant.fence(),
                        Mutation::Sql {
                            statement: "UPDATE alert_outbox SET state = 'held', last_error = 'held: the channel is misconfigured' WHERE channel = $1 AND state = 'pending'",
                            params: sql_params![channel],
                            expect: Expect::Any,
                        },
                    ],
                    guard: false,
                },
                AuditEntry::new(
                    "alert.hold",
                    format!("alert_channel:{channel}"),
                    AuditDetails::new().str("channel", channel).int("rows", n),
                ),
            )],
        )
        .await?;
    inner
        .telemetry
        .count(kind, "held", u64::try_from(n).unwrap_or(0));
    Ok(())
}

/// How many of `channel`'s outbox rows are in `state`.
pub(super) async fn outbox_rows(store: &Store, channel: &str, state: &str) -> Result<i64> {
    let count = "SELECT COUNT(*) FROM alert_outbox WHERE channel = $1 AND state = $2";
    Ok(store.count(count, sql_params![channel, state]).await?)
}

/// Release a channel's held alerts for sending again (after its configuration was
/// fixed). Returns how many rows were released.
pub async fn release_held(store: &Store, channel: &str, why: &str) -> Result<u64> {
    let n = outbox_rows(store, channel, "held").await?;
    let now = now_ms();
    store
        .commit(
            &ACTOR,
            vec![Change::new(
                Mutation::Many {
                    steps: vec![
                        Mutation::Sql {
                            statement: "UPDATE alert_outbox SET state = 'pending', next_at_ms = $2 WHERE channel = $1 AND state = 'held'",
                            params: sql_params![channel, now],
                            expect: Expect::Any,
                        },
                        Mutation::Sql {
                            statement: "UPDATE alert_channels SET status = 'ok', failures = 0, fingerprint = NULL WHERE name = $1",
                            params: sql_params![channel],
                            expect: Expect::Any,
                        },
                    ],
                    guard: false,
                },
                AuditEntry::new(
                    "alert.release",
                    format!("alert_channel:{channel}"),
                    AuditDetails::new()
                        .str("channel", channel)
                        .int("rows", n)
                        .str("why", why),
                ),
            )],
        )
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}
