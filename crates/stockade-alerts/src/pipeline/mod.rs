//! The pipeline: event → severity → aggregation → scrubbing → outbox → sender.
//!
//! - **Router.** Events are written by their producers in the same transaction as the
//!   failure (sync error events, oversells, egress anomalies, access security events).
//!   The router reads unrouted events, classifies each into an allow-listed, scrubbed
//!   [`Alert`], and in one transaction writes an outbox row per channel that takes it
//!   (the first of its aggregation key), or folds it into the key's open window, and
//!   marks the events routed. It wakes on every write this process makes and polls for
//!   other processes' writes.
//! - **Windows.** When a window closes with folded repeats, one follow-up per channel
//!   says how many and since when; the window reopens, so a failure that goes on
//!   produces one message per window, not one per event.
//! - **Senders.** One per channel, in the process holding the channel's lease. Each
//!   message takes every due row (a burst becomes one digest), waits for the channel's
//!   rate budget, is rendered, signed and sent through the egress gateway, and its
//!   outcome is committed with an audit row: delivered; rate-limited or failing (kept,
//!   retried with backoff); or a configuration error (held, not retried, raised on the
//!   other channels and the dashboard, released when the channel's settings change or
//!   by `stockade alert retry`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use stockade_core::Actor;
use stockade_egress::Gateway;
use stockade_store::{
    AuditDetails, AuditEntry, Change, Expect, Mutation, SqlRow, Store, StoreError, sql_params,
};
use stockade_vault::Vault;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::channel::{ChannelClient, Outcome};
use crate::config::{AlertsConfig, ChannelConfig};
use crate::model::{Alert, EventRow, Severity, classify};

const ACTOR: Actor = Actor::System("alerts");
/// Events routed per transaction.
const ROUTE_BATCH: i64 = 500;
/// Rows considered for one message.
const SEND_BATCH: i64 = 50;
/// How long a sender's lease on its channel lasts, and how often it is renewed.
const LEASE: Duration = Duration::from_secs(30);
const LEASE_RENEW: Duration = Duration::from_secs(10);
/// A message sent less than `GATHER_AFTER` after the previous one waits `GATHER` for the
/// rest of its burst.
const GATHER_AFTER: Duration = Duration::from_secs(2);
const GATHER: Duration = Duration::from_millis(100);

/// Why the pipeline failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("alert store error: {0}")]
    Store(#[from] StoreError),
    #[error("invalid alert settings: {0}")]
    Config(String),
    #[error("unknown alert channel {0:?}: it is not in the [alerts] configuration")]
    UnknownChannel(String),
}

pub type Result<T, E = AlertsError> = std::result::Result<T, E>;

fn now_ms() -> i64 {
    stockade_core::time::now_ms()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Counters since start (for the bench and the demo).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PipelineStats {
    pub events_routed: u64,
    pub events_folded: u64,
    pub outbox_rows: u64,
    pub messages_sent: u64,
    pub send_failures: u64,
}

struct Limiter {
    sent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl Limiter {
    /// How long until one more message may go out within (per second, per minute).
    fn wait(&mut self, per_second: u32, per_minute: u32, now: Instant) -> Duration {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.sent.pop_front();
        }
        let mut wait = Duration::ZERO;
        if let Some(b) = self.blocked_until {
            if b > now {
                wait = b - now;
            } else {
                self.blocked_until = None;
            }
        }
        let windows = [
            (Duration::from_secs(1), per_second as usize),
            (Duration::from_secs(60), per_minute as usize),
        ];
        for (window, limit) in windows {
            let recent: Vec<&Instant> = self
                .sent
                .iter()
                .filter(|t| now.duration_since(**t) < window)
                .collect();
            if recent.len() >= limit.max(1) {
                // The oldest of the last `limit` sends must leave the window.
                let oldest = recent[recent.len() - limit.max(1)];
                // A little slack so the platform's clock sees us inside the limit.
                wait = wait.max(window + Duration::from_millis(50) - now.duration_since(*oldest));
            }
        }
        wait
    }
}

struct ChannelRuntime {
    client: ChannelClient,
    wake: Notify,
    limiter: Mutex<Limiter>,
}

struct Inner {
    store: Store,
    vault: Arc<Vault>,
    config: AlertsConfig,
    channels: Vec<Arc<ChannelRuntime>>,
    holder: String,
    wake_router: Notify,
    stats: Mutex<PipelineStats>,
}

/// The running pipeline.
pub struct Alerts {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("channels", &self.inner.config.channels.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Alerts {
    /// Start the router and one sender per channel on the current runtime. The gateway
    /// must allow the channels' hosts.
    pub async fn start(
        store: Store,
        vault: Arc<Vault>,
        gateway: &Gateway,
        config: AlertsConfig,
    ) -> Result<Alerts> {
        config.validate().map_err(AlertsError::Config)?;
        let env = store.environment().as_str();
        let channels: Vec<Arc<ChannelRuntime>> = config
            .channels
            .iter()
            .map(|c| {
                Arc::new(ChannelRuntime {
                    client: ChannelClient::new(
                        gateway,
                        c.clone(),
                        env,
                        config.dashboard_url.clone(),
                    ),
                    wake: Notify::new(),
                    limiter: Mutex::new(Limiter {
                        sent: VecDeque::new(),
                        blocked_until: None,
                    }),
                })
            })
            .collect();
        for c in &config.channels {
            store
                .touch(
                    "INSERT INTO alert_channels (name, kind, status, failures, lease_until_ms) VALUES ($1, $2, 'ok', 0, 0) ON CONFLICT (name) DO NOTHING",
                    sql_params![c.name.as_str(), c.kind.as_str()],
                )
                .await?;
        }
        let holder = format!(
            "{}-{}",
            std::process::id(),
            hex::encode(now_ms().to_be_bytes())
        );
        let inner = Arc::new(Inner {
            store,
            vault,
            config,
            channels,
            holder,
            wake_router: Notify::new(),
            stats: Mutex::new(PipelineStats::default()),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(router_loop(inner.clone(), stop_rx.clone()))];
        for ch in &inner.channels {
            tasks.push(tokio::spawn(sender_loop(
                inner.clone(),
                ch.clone(),
                stop_rx.clone(),
            )));
        }
        Ok(Alerts { inner, stop, tasks })
    }

    /// Look for new events now.
    pub fn wake(&self) {
        self.inner.wake_router.notify_one();
    }

    /// Route pending events and close due windows now (tests, and `alert route`).
    pub async fn route_now(&self) -> Result<usize> {
        let n = route_batch(&self.inner).await?;
        flush_windows(&self.inner).await?;
        Ok(n)
    }

    pub fn stats(&self) -> PipelineStats {
        *lock(&self.inner.stats)
    }

    /// Stop the tasks. Nothing is lost: unrouted events and unsent rows stay in the
    /// database for the next start.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for ch in &self.inner.channels {
            ch.wake.notify_one();
        }
        self.inner.wake_router.notify_one();
        for t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                tracing::warn!("an alert task did not stop in time");
            }
        }
        // Give the lease back so another process can send at once.
        let _ = self
            .inner
            .store
            .touch(
                "UPDATE alert_channels SET lease_until_ms = 0 WHERE holder = $1",
                sql_params![self.inner.holder.as_str()],
            )
            .await;
    }
}

fn event_from(row: &SqlRow) -> Result<EventRow> {
    Ok(EventRow {
        id: row.int(0)?,
        at_ms: row.int(1)?,
        source: row.text(2)?,
        kind: row.text(3)?,
        caller: row.text(4)?,
        host: row.text(5)?,
        path_template: row.text(6)?,
        operation: row.text(7)?,
        status: row.opt_int(8)?,
        detail: row.text(9)?,
    })
}

struct Window {
    opened_at_ms: i64,
    closes_at_ms: i64,
    folded: i64,
    alert: Alert,
    dirty: bool,
}

const INSERT_OUTBOX: &str = "INSERT INTO alert_outbox (channel, created_at_ms, severity, events, alert, state, attempts, next_at_ms)
     VALUES ($1, $2, $3, $4, $5, 'pending', 0, $2)";

fn outbox_steps(config: &AlertsConfig, alert: &Alert, now: i64, steps: &mut Vec<Mutation>) -> u64 {
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

/// The follow-up of a window that folded repeats.
fn follow_up(w: &Window) -> Alert {
    let mut a = w.alert.clone();
    a.count = w.folded;
    a.since_ms = Some(w.opened_at_ms);
    a
}

async fn load_windows(store: &Store) -> Result<HashMap<String, Window>> {
    let rows = store
        .query(
            "SELECT key, opened_at_ms, closes_at_ms, folded, alert FROM alert_windows",
            vec![],
        )
        .await?;
    let mut map = HashMap::with_capacity(rows.len());
    for r in rows {
        let Ok(alert) = serde_json::from_str::<Alert>(&r.text(4)?) else {
            continue;
        };
        map.insert(
            r.text(0)?,
            Window {
                opened_at_ms: r.int(1)?,
                closes_at_ms: r.int(2)?,
                folded: r.int(3)?,
                alert,
                dirty: false,
            },
        );
    }
    Ok(map)
}

const UPSERT_WINDOW: &str = "INSERT INTO alert_windows (key, opened_at_ms, closes_at_ms, folded, alert) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (key) DO UPDATE SET opened_at_ms = excluded.opened_at_ms, closes_at_ms = excluded.closes_at_ms,
        folded = excluded.folded, alert = excluded.alert";

/// Route up to one batch of unrouted events. Returns how many were routed.
async fn route_batch(inner: &Inner) -> Result<usize> {
    let rows = inner
        .store
        .query(
            "SELECT id, at_ms, source, kind, caller, host, path_template, operation, status, detail
               FROM events WHERE delivered_at_ms IS NULL ORDER BY id LIMIT $1",
            sql_params![ROUTE_BATCH],
        )
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    let window_ms = ms(inner.config.window);
    let mut windows = load_windows(&inner.store).await?;
    let mut steps = Vec::with_capacity(rows.len() * 2);
    let (mut outbox, mut folded, mut alerted) = (0u64, 0u64, 0u64);
    for row in &rows {
        let ev = event_from(row)?;
        steps.push(Mutation::Sql {
            statement: "UPDATE events SET delivered_at_ms = $1 WHERE id = $2 AND delivered_at_ms IS NULL",
            params: sql_params![now, ev.id],
            expect: Expect::One("unrouted event"),
        });
        let Some(alert) = classify(&ev) else {
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
    let n = rows.len();
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

/// Close due windows: a follow-up for those that folded repeats (and reopen them), a
/// quiet end for the others. Returns when the next window closes.
async fn flush_windows(inner: &Inner) -> Result<Option<i64>> {
    let now = now_ms();
    let due = inner
        .store
        .query(
            "SELECT key, opened_at_ms, closes_at_ms, folded, alert FROM alert_windows WHERE closes_at_ms <= $1 ORDER BY closes_at_ms LIMIT 200",
            sql_params![now],
        )
        .await?;
    if !due.is_empty() {
        let window_ms = ms(inner.config.window);
        let mut steps = Vec::new();
        let mut followups = 0u64;
        for r in &due {
            let key = r.text(0)?;
            let closes = r.int(2)?;
            let folded = r.int(3)?;
            let alert = serde_json::from_str::<Alert>(&r.text(4)?).ok();
            match alert {
                Some(alert) if folded > 0 => {
                    let w = Window {
                        opened_at_ms: r.int(1)?,
                        closes_at_ms: closes,
                        folded,
                        alert,
                        dirty: false,
                    };
                    followups += outbox_steps(&inner.config, &follow_up(&w), now, &mut steps);
                    steps.push(Mutation::Sql {
                        statement: "UPDATE alert_windows SET opened_at_ms = $2, closes_at_ms = $3, folded = 0 WHERE key = $1 AND closes_at_ms = $4",
                        params: sql_params![key, now, now + window_ms, closes],
                        expect: Expect::One("alert window"),
                    });
                }
                _ => steps.push(Mutation::Sql {
                    statement: "DELETE FROM alert_windows WHERE key = $1 AND closes_at_ms = $2",
                    params: sql_params![key, closes],
                    expect: Expect::One("alert window"),
                }),
            }
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
                        "alert.windows.close",
                        "alerts",
                        AuditDetails::new()
                            .int("windows", i64::try_from(due.len()).unwrap_or(0))
                            .int("outbox", i64::try_from(followups).unwrap_or(0)),
                    ),
                )],
            )
            .await?;
        lock(&inner.stats).outbox_rows += followups;
        if followups > 0 {
            for ch in &inner.channels {
                ch.wake.notify_one();
            }
        }
    }
    let next = inner
        .store
        .query_one("SELECT MIN(closes_at_ms) FROM alert_windows", vec![])
        .await?;
    Ok(next.and_then(|r| r.opt_int(0).ok().flatten()))
}

async fn router_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
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
        match route_batch(&inner).await {
            Ok(n) => more = n as i64 == ROUTE_BATCH,
            Err(e) => tracing::warn!("alert routing failed (retrying): {e}"),
        }
        if next_close.is_none_or(|t| t <= now_ms()) {
            match flush_windows(&inner).await {
                Ok(next) => next_close = next,
                Err(e) => tracing::warn!("closing alert windows failed (retrying): {e}"),
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

/// A due outbox row.
struct Row {
    id: i64,
    events: i64,
    attempts: i64,
    alert: Alert,
}

async fn due_rows(inner: &Inner, channel: &str, now: i64) -> Result<Vec<Row>> {
    let rows = inner
        .store
        .query(
            "SELECT id, events, attempts, alert FROM alert_outbox
              WHERE channel = $1 AND state = 'pending' AND next_at_ms <= $2
              ORDER BY severity DESC, id LIMIT $3",
            sql_params![channel, now, SEND_BATCH],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Ok(alert) = serde_json::from_str::<Alert>(&r.text(3)?) else {
            continue;
        };
        out.push(Row {
            id: r.int(0)?,
            events: r.int(1)?,
            attempts: r.int(2)?,
            alert,
        });
    }
    Ok(out)
}

/// Hold the channel's sending lease (one process sends per channel).
async fn take_lease(inner: &Inner, channel: &str) -> bool {
    let now = now_ms();
    match inner
        .store
        .touch(
            "UPDATE alert_channels SET holder = $2, lease_until_ms = $3 WHERE name = $1 AND (holder = $2 OR holder IS NULL OR lease_until_ms < $4)",
            sql_params![channel, inner.holder.as_str(), now + ms(LEASE), now],
        )
        .await
    {
        Ok(n) => n == 1,
        Err(e) => {
            tracing::warn!(channel, "alert channel lease: {e}");
            false
        }
    }
}

/// Messages this channel sent in the last minute (by any process), so a restart does
/// not reset the rate budget.
async fn seed_limiter(inner: &Inner, ch: &ChannelRuntime) {
    let name = ch.client.config.name.as_str();
    let since = now_ms() - 60_000;
    let Ok(rows) = inner
        .store
        .query(
            "SELECT DISTINCT sent_at_ms FROM alert_outbox WHERE channel = $1 AND sent_at_ms > $2",
            sql_params![name, since],
        )
        .await
    else {
        return;
    };
    let now_i = Instant::now();
    let now = now_ms();
    let mut l = lock(&ch.limiter);
    for r in rows {
        if let Ok(Some(t)) = r.opt_int(0) {
            let age = Duration::from_millis(u64::try_from((now - t).max(0)).unwrap_or(0));
            if let Some(at) = now_i.checked_sub(age) {
                l.sent.push_back(at);
            }
        }
    }
    l.sent.make_contiguous().sort();
}

async fn channel_status(inner: &Inner, channel: &str) -> Option<(String, Option<String>)> {
    let r = inner
        .store
        .query_one(
            "SELECT status, fingerprint FROM alert_channels WHERE name = $1",
            sql_params![channel],
        )
        .await
        .ok()??;
    Some((r.text(0).ok()?, r.opt_text(1).ok()?))
}

fn backoff(inner: &Inner, attempts: i64) -> Duration {
    let base = inner.config.retry_base;
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    let d = base.saturating_mul(2u32.saturating_pow(exp));
    d.min(inner.config.retry_max)
}

async fn sender_loop(inner: Arc<Inner>, ch: Arc<ChannelRuntime>, mut stop: watch::Receiver<bool>) {
    let name = ch.client.config.name.clone();
    let mut leased_at: Option<Instant> = None;
    let mut checked_fp_at: Option<Instant> = None;
    let mut last_sent: Option<Instant> = None;
    let mut gathered = false;
    loop {
        if *stop.borrow() {
            return;
        }
        // Lease.
        if leased_at.is_none_or(|t| t.elapsed() >= LEASE_RENEW) {
            let was = leased_at.is_some();
            if take_lease(&inner, &name).await {
                if !was {
                    seed_limiter(&inner, &ch).await;
                }
                leased_at = Some(Instant::now());
            } else {
                leased_at = None;
                tokio::select! {
                    _ = tokio::time::sleep(LEASE_RENEW) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        }
        // A misconfigured channel holds its alerts until its settings change.
        if let Some((status, fp)) = channel_status(&inner, &name).await
            && status == "misconfigured"
        {
            if checked_fp_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(15)) {
                checked_fp_at = Some(Instant::now());
                let now_fp = ch.client.fingerprint(&inner.vault).await;
                if fp.as_deref() != Some(now_fp.as_str()) {
                    if let Err(e) = release_held(&inner.store, &name, "configuration changed").await
                    {
                        tracing::warn!(channel = %name, "releasing held alerts: {e}");
                    }
                    continue;
                }
            }
            if let Err(e) = hold_pending(&inner, &name).await {
                tracing::warn!(channel = %name, "holding alerts: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = ch.wake.notified() => {}
                _ = stop.changed() => {}
            }
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
            let next = inner
                .store
                .query_one(
                    "SELECT MIN(next_at_ms) FROM alert_outbox WHERE channel = $1 AND state = 'pending'",
                    sql_params![name.as_str()],
                )
                .await
                .ok()
                .flatten()
                .and_then(|r| r.opt_int(0).ok().flatten());
            let wait = next.map_or(Duration::from_secs(2), |t| {
                Duration::from_millis(u64::try_from((t - now_ms()).clamp(1, 2000)).unwrap_or(2000))
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ch.wake.notified() => {}
                _ = stop.changed() => {}
            }
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
        if let Err(e) = record_outcome(&inner, &ch, batch, &outcome).await {
            tracing::warn!(channel = %name, "recording an alert delivery failed: {e}");
        }
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

const INSERT_ALERTS_EVENT: &str = "INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
     VALUES ($1, 'alerts', $2, $3, '', '', 'send', NULL, $4)";

async fn record_outcome(
    inner: &Inner,
    ch: &ChannelRuntime,
    batch: &[Row],
    outcome: &Outcome,
) -> Result<()> {
    let cfg = &ch.client.config;
    let name = cfg.name.as_str();
    let now = now_ms();
    let attempts = batch.iter().map(|r| r.attempts).max().unwrap_or(0) + 1;
    let events: i64 = batch.iter().map(|r| r.events).sum();
    let detail = outcome.detail().to_owned();
    let mut steps = Vec::new();
    let previous = channel_status(inner, name).await.map(|s| s.0);
    let failures_before = inner
        .store
        .query_one(
            "SELECT failures FROM alert_channels WHERE name = $1",
            sql_params![name],
        )
        .await?
        .and_then(|r| r.int(0).ok())
        .unwrap_or(0);
    match outcome {
        Outcome::Delivered { .. } => {
            for r in batch {
                steps.push(Mutation::Sql {
                    statement: "UPDATE alert_outbox SET state = 'sent', attempts = attempts + 1, sent_at_ms = $2, last_error = NULL WHERE id = $1",
                    params: sql_params![r.id, now],
                    expect: Expect::Any,
                });
            }
            steps.push(Mutation::Sql {
                statement: "UPDATE alert_channels SET status = 'ok', last_error = NULL, last_ok_ms = $2, last_attempt_ms = $2, failures = 0 WHERE name = $1",
                params: sql_params![name, now],
                expect: Expect::Any,
            });
        }
        Outcome::RateLimited { .. } | Outcome::Transient { .. } => {
            let (next, status) = match outcome {
                Outcome::RateLimited { wait, .. } => (now + ms(*wait), "rate_limited"),
                _ => (now + ms(backoff(inner, attempts)), "failing"),
            };
            for r in batch {
                steps.push(Mutation::Sql {
                    statement: "UPDATE alert_outbox SET attempts = attempts + 1, next_at_ms = $2, last_error = $3 WHERE id = $1",
                    params: sql_params![r.id, next, detail.as_str()],
                    expect: Expect::Any,
                });
            }
            steps.push(Mutation::Sql {
                statement: "UPDATE alert_channels SET status = $2, last_error = $3, last_attempt_ms = $4, failures = failures + 1 WHERE name = $1",
                params: sql_params![name, status, detail.as_str(), now],
                expect: Expect::Any,
            });
            if status == "failing" && failures_before + 1 == i64::from(inner.config.down_after) {
                let held = pending_count(inner, name).await;
                steps.push(Mutation::Sql {
                    statement: INSERT_ALERTS_EVENT,
                    params: sql_params![
                        now,
                        "channel_down",
                        format!("alerts:{name}"),
                        serde_json::json!({"channel": name, "reason": detail, "held": held})
                            .to_string()
                    ],
                    expect: Expect::One("alerts event"),
                });
            }
        }
        Outcome::Config { .. } => {
            let fp = ch.client.fingerprint(&inner.vault).await;
            steps.push(Mutation::Sql {
                statement: "UPDATE alert_outbox SET state = 'held', attempts = attempts + 1, last_error = $2 WHERE channel = $1 AND state = 'pending'",
                params: sql_params![name, detail.as_str()],
                expect: Expect::Any,
            });
            steps.push(Mutation::Sql {
                statement: "UPDATE alert_channels SET status = 'misconfigured', last_error = $2, last_attempt_ms = $3, failures = failures + 1, fingerprint = $4 WHERE name = $1",
                params: sql_params![name, detail.as_str(), now, fp],
                expect: Expect::Any,
            });
            if previous.as_deref() != Some("misconfigured") {
                let held = pending_count(inner, name).await;
                steps.push(Mutation::Sql {
                    statement: INSERT_ALERTS_EVENT,
                    params: sql_params![
                        now,
                        "channel_config",
                        format!("alerts:{name}"),
                        serde_json::json!({"channel": name, "reason": detail, "held": held})
                            .to_string()
                    ],
                    expect: Expect::One("alerts event"),
                });
            }
        }
    }
    if !matches!(outcome, Outcome::Delivered { .. }) {
        tracing::warn!(
            channel = name,
            status = outcome.status(),
            "alert delivery: {detail}"
        );
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
                    "alert.delivery",
                    format!("alert_channel:{name}"),
                    AuditDetails::new()
                        .str("channel", name)
                        .str("kind", cfg.kind.as_str())
                        .str("status", outcome.status())
                        .int("attempts", attempts)
                        .int("alerts", i64::try_from(batch.len()).unwrap_or(0))
                        .int("events", events)
                        .int("first_row", batch.first().map_or(0, |r| r.id)),
                ),
            )],
        )
        .await?;
    Ok(())
}

async fn pending_count(inner: &Inner, channel: &str) -> i64 {
    inner
        .store
        .query_one(
            "SELECT COUNT(*) FROM alert_outbox WHERE channel = $1 AND state IN ('pending', 'held')",
            sql_params![channel],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.int(0).ok())
        .unwrap_or(0)
}

/// While a channel is misconfigured, new alerts for it are held at once (not sent to
/// be refused again).
async fn hold_pending(inner: &Inner, channel: &str) -> Result<()> {
    let n = inner
        .store
        .query_one(
            "SELECT COUNT(*) FROM alert_outbox WHERE channel = $1 AND state = 'pending'",
            sql_params![channel],
        )
        .await?
        .and_then(|r| r.int(0).ok())
        .unwrap_or(0);
    if n == 0 {
        return Ok(());
    }
    inner
        .store
        .commit(
            &ACTOR,
            vec![Change::new(
                Mutation::Sql {
                    statement: "UPDATE alert_outbox SET state = 'held', last_error = 'held: the channel is misconfigured' WHERE channel = $1 AND state = 'pending'",
                    params: sql_params![channel],
                    expect: Expect::Any,
                },
                AuditEntry::new(
                    "alert.hold",
                    format!("alert_channel:{channel}"),
                    AuditDetails::new().str("channel", channel).int("rows", n),
                ),
            )],
        )
        .await?;
    Ok(())
}

/// Release a channel's held alerts for sending again (after its configuration was
/// fixed). Returns how many rows were released.
pub async fn release_held(store: &Store, channel: &str, why: &str) -> Result<u64> {
    let n = store
        .query_one(
            "SELECT COUNT(*) FROM alert_outbox WHERE channel = $1 AND state = 'held'",
            sql_params![channel],
        )
        .await?
        .and_then(|r| r.int(0).ok())
        .unwrap_or(0);
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

/// A channel's state as the dashboard and `stockade alert status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelStatus {
    pub name: String,
    pub kind: String,
    /// ok | failing | misconfigured | rate_limited
    pub status: String,
    pub last_error: Option<String>,
    pub last_ok_ms: Option<i64>,
    pub pending: i64,
    pub held: i64,
    pub sent: i64,
}

/// Every known channel's state.
pub async fn channel_statuses(store: &Store) -> Result<Vec<ChannelStatus>> {
    let rows = store
        .query(
            "SELECT c.name, c.kind, c.status, c.last_error, c.last_ok_ms,
                    (SELECT COUNT(*) FROM alert_outbox o WHERE o.channel = c.name AND o.state = 'pending'),
                    (SELECT COUNT(*) FROM alert_outbox o WHERE o.channel = c.name AND o.state = 'held'),
                    (SELECT COUNT(*) FROM alert_outbox o WHERE o.channel = c.name AND o.state = 'sent')
               FROM alert_channels c ORDER BY c.name",
            vec![],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(ChannelStatus {
            name: r.text(0)?,
            kind: r.text(1)?,
            status: r.text(2)?,
            last_error: r.opt_text(3)?,
            last_ok_ms: r.opt_int(4)?,
            pending: r.int(5)?,
            held: r.int(6)?,
            sent: r.int(7)?,
        });
    }
    Ok(out)
}

/// One recent alert as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentAlert {
    pub id: i64,
    pub channel: String,
    pub state: String,
    pub attempts: i64,
    pub events: i64,
    pub created_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub alert: Alert,
}

/// The newest outbox rows (scrubbed alerts only).
pub async fn recent_alerts(store: &Store, limit: i64) -> Result<Vec<RecentAlert>> {
    let rows = store
        .query(
            "SELECT id, channel, state, attempts, events, created_at_ms, sent_at_ms, last_error, alert
               FROM alert_outbox ORDER BY id DESC LIMIT $1",
            sql_params![limit.clamp(1, 1000)],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Ok(alert) = serde_json::from_str::<Alert>(&r.text(8)?) else {
            continue;
        };
        out.push(RecentAlert {
            id: r.int(0)?,
            channel: r.text(1)?,
            state: r.text(2)?,
            attempts: r.int(3)?,
            events: r.int(4)?,
            created_at_ms: r.int(5)?,
            sent_at_ms: r.opt_int(6)?,
            last_error: r.opt_text(7)?,
            alert,
        });
    }
    Ok(out)
}

/// Send a signed test message to one channel now (not through the outbox) and report
/// the platform's answer. Audited as `alert.test`.
pub async fn test_channel(
    store: &Store,
    vault: &Vault,
    gateway: &Gateway,
    channel: &ChannelConfig,
    dashboard: Option<String>,
    actor: &Actor,
) -> Result<Outcome> {
    channel.validate().map_err(AlertsError::Config)?;
    let env = store.environment().as_str();
    let client = ChannelClient::new(gateway, channel.clone(), env, dashboard);
    let now = now_ms();
    let alert = Alert {
        severity: Severity::Info,
        source: "test".into(),
        kind: "test".into(),
        title: "Test alert from Stockade: this channel works".into(),
        facts: vec![
            ("Channel".into(), channel.name.clone()),
            ("Kind".into(), channel.kind.as_str().into()),
        ],
        message: None,
        hint: Some("Sent by `stockade alert test`; nothing failed.".into()),
        key: format!("test:{now}"),
        event_id: 0,
        at_ms: now,
        count: 1,
        since_ms: None,
        about_channel: None,
    };
    let outcome = client.send(vault, &[alert]).await;
    store
        .commit(
            actor,
            vec![Change::event(AuditEntry::new(
                "alert.test",
                format!("alert_channel:{}", channel.name),
                AuditDetails::new()
                    .str("channel", &channel.name)
                    .str("kind", channel.kind.as_str())
                    .str("status", outcome.status()),
            ))],
        )
        .await?;
    if matches!(outcome, Outcome::Delivered { .. }) {
        // A channel that works again releases what it held.
        let held = store
            .query_one(
                "SELECT COUNT(*) FROM alert_outbox WHERE channel = $1 AND state = 'held'",
                sql_params![channel.name.as_str()],
            )
            .await?
            .and_then(|r| r.int(0).ok())
            .unwrap_or(0);
        if held > 0 {
            release_held(store, &channel.name, "test message delivered").await?;
        }
    }
    Ok(outcome)
}

/// Delete delivered outbox rows older than `retention` (the router does this hourly; the
/// audit log keeps each delivery's record).
pub async fn prune(store: &Store, retention: Duration) -> Result<u64> {
    let cutoff = now_ms() - ms(retention);
    Ok(store
        .touch(
            "DELETE FROM alert_outbox WHERE state = 'sent' AND sent_at_ms < $1",
            sql_params![cutoff],
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_keeps_both_windows() {
        let mut l = Limiter {
            sent: VecDeque::new(),
            blocked_until: None,
        };
        let t0 = Instant::now();
        for i in 0..4 {
            assert!(l.wait(4, 90, t0 + Duration::from_millis(i)).is_zero());
            l.sent.push_back(t0 + Duration::from_millis(i));
        }
        let w = l.wait(4, 90, t0 + Duration::from_millis(10));
        assert!(
            w > Duration::from_millis(900) && w <= Duration::from_millis(1100),
            "{w:?}"
        );
        // Per minute: 18 sent spread over 36 s → the 19th waits for the first to age out.
        let mut l = Limiter {
            sent: VecDeque::new(),
            blocked_until: None,
        };
        for i in 0..18u64 {
            l.sent.push_back(t0 + Duration::from_secs(i * 2));
        }
        let w = l.wait(18, 18, t0 + Duration::from_secs(36));
        assert!(
            w >= Duration::from_secs(24) && w <= Duration::from_secs(25),
            "{w:?}"
        );
        l.blocked_until = Some(t0 + Duration::from_secs(600));
        assert!(l.wait(18, 18, t0 + Duration::from_secs(36)) >= Duration::from_secs(560));
    }
}
