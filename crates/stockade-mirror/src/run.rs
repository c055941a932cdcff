//! The background mirror: one task per configured sink copying the audit chain.
//!
//! Each task: take the sink's lease (one process of several mirrors a sink) → resume from
//! what the destination holds (NocoDB's highest `seq`; the file's last complete line) →
//! copy the rows after it in `seq` order, at most `batch` per request, paced by the
//! gateway's bucket → record `acked_seq` after each confirmed batch. Any failure is
//! recorded (`last_error`, `failures`), counted, retried with backoff (a 429 waits the
//! time NocoDB asked), and followed by a fresh resume, so nothing is sent twice or
//! skipped. A sink failing longer than `alert_after` raises an `audit_mirror`/`failing`
//! event (an alert), and its recovery an `audit_mirror`/`recovered` one.
//!
//! Invariants: the task only reads the audit table, never holds a write lock and is never
//! awaited by a commit; it wakes on this process's writes or polls every [`POLL`].

use std::sync::Arc;
use std::time::Duration;

use stockade_core::Actor;
use stockade_core::event::{Event, EventColumns};
use stockade_egress::Gateway;
use stockade_store::{AuditDetails, AuditEntry, AuditRow, Change, Store};
use stockade_vault::Vault;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{FileSinkConfig, MirrorConfig, NocoSinkConfig};
use crate::file_sink::FileSink;
use crate::noco::{Noco, NocoError};
use crate::telemetry::MirrorTelemetry;
use crate::{POLL, SINK_FILE, SINK_NOCODB, columns, state, status};

/// How long a lease lasts; renewed every third of it.
const LEASE_MS: i64 = 30_000;
/// The longest pause between retries after failures.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often the running NocoDB sink checks the table's columns again.
const COLUMN_CHECK_MS: i64 = 60_000;

/// What the sinks use from the process.
#[derive(Clone)]
pub struct MirrorDeps {
    pub store: Store,
    pub vault: Arc<Vault>,
    pub gateway: Gateway,
    pub telemetry: MirrorTelemetry,
}

impl std::fmt::Debug for MirrorDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorDeps").finish_non_exhaustive()
    }
}

/// The running mirror.
#[derive(Debug)]
pub struct Mirror {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Why a batch did not go, and how long to wait before the next attempt.
struct Failed {
    message: String,
    wait: Option<Duration>,
}

impl From<NocoError> for Failed {
    fn from(e: NocoError) -> Failed {
        let wait = match &e {
            NocoError::RateLimited(d) => Some(*d),
            e if !e.is_transient() => Some(BACKOFF_MAX),
            _ => None,
        };
        Failed {
            message: e.to_string(),
            wait,
        }
    }
}

/// One destination.
enum Target {
    Noco {
        cfg: NocoSinkConfig,
        conn: Option<Box<(Noco, String)>>,
        checked_at: i64,
    },
    File {
        cfg: FileSinkConfig,
        sink: Option<FileSink>,
    },
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Noco { .. } => SINK_NOCODB,
            Target::File { .. } => SINK_FILE,
        }
    }

    fn batch(&self) -> usize {
        match self {
            Target::Noco { cfg, .. } => cfg.batch,
            Target::File { .. } => 1000,
        }
    }

    /// Connect and find the last row the destination holds.
    async fn resume(&mut self, deps: &MirrorDeps, acked: i64) -> Result<i64, Failed> {
        match self {
            Target::Noco {
                cfg,
                conn,
                checked_at,
            } => {
                *conn = None;
                let noco = Noco::connect(&deps.gateway, &deps.vault, cfg).await?;
                let table = noco.open_table().await?;
                let max = noco.max_seq(&table).await?;
                *checked_at = stockade_core::clock::now_ms();
                *conn = Some(Box::new((noco, table)));
                Ok(max)
            }
            Target::File { cfg, sink } => {
                *sink = None;
                let cfg = cfg.clone();
                let opened = tokio::task::spawn_blocking(move || FileSink::open(&cfg, acked))
                    .await
                    .map_err(|e| Failed {
                        message: e.to_string(),
                        wait: None,
                    })?
                    .map_err(|message| Failed {
                        message,
                        wait: None,
                    })?;
                let last = opened.last_seq();
                *sink = Some(opened);
                Ok(last)
            }
        }
    }

    /// Copy `rows` (all after the resume point, in order); confirmed on `Ok`.
    async fn send(&mut self, rows: Vec<AuditRow>) -> Result<(), Failed> {
        match self {
            Target::Noco {
                conn, checked_at, ..
            } => {
                let Some((noco, table)) = conn.as_deref() else {
                    return Err(Failed {
                        message: "not connected".into(),
                        wait: None,
                    });
                };
                let now = stockade_core::clock::now_ms();
                if now - *checked_at > COLUMN_CHECK_MS {
                    let problems = columns::check(&noco.columns(table).await?);
                    if !problems.is_empty() {
                        return Err(NocoError::Columns(problems).into());
                    }
                    *checked_at = now;
                }
                let records: Vec<_> = rows.iter().map(columns::record).collect();
                noco.insert(table, &records).await.map_err(Failed::from)
            }
            Target::File { sink, .. } => {
                let Some(mut s) = sink.take() else {
                    return Err(Failed {
                        message: "file not open".into(),
                        wait: None,
                    });
                };
                let (s, r) = tokio::task::spawn_blocking(move || {
                    let r = s.write_batch(&rows);
                    (s, r)
                })
                .await
                .map_err(|e| Failed {
                    message: e.to_string(),
                    wait: None,
                })?;
                if r.is_ok() {
                    *sink = Some(s);
                }
                r.map_err(|message| Failed {
                    message,
                    wait: None,
                })
            }
        }
    }
}

impl Mirror {
    /// Start one task per configured sink (none: an idle handle).
    pub fn start(deps: MirrorDeps, cfg: &MirrorConfig) -> Mirror {
        let (stop, stop_rx) = watch::channel(false);
        let mut targets = Vec::new();
        if let Some(c) = &cfg.nocodb {
            targets.push(Target::Noco {
                cfg: c.clone(),
                conn: None,
                checked_at: 0,
            });
        }
        if let Some(c) = &cfg.file {
            targets.push(Target::File {
                cfg: c.clone(),
                sink: None,
            });
        }
        let tasks = targets
            .into_iter()
            .map(|t| {
                let runner = Runner {
                    deps: deps.clone(),
                    stop: stop_rx.clone(),
                    holder: holder_id(),
                    alert_after_ms: i64::try_from(cfg.alert_after.as_millis()).unwrap_or(i64::MAX),
                    alerted: false,
                };
                tokio::spawn(runner.run(t))
            })
            .collect();
        Mirror { stop, tasks }
    }

    /// Stop the tasks (their leases are released), within `bound`.
    pub async fn stop(self, bound: Duration) {
        let _ = self.stop.send(true);
        for mut t in self.tasks {
            if tokio::time::timeout(bound, &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}

/// This process's and this task's name on the lease: unique per process and start.
fn holder_id() -> String {
    static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{}-{}-{n}",
        std::process::id(),
        stockade_core::clock::now_ms()
    )
}

struct Runner {
    deps: MirrorDeps,
    stop: watch::Receiver<bool>,
    holder: String,
    alert_after_ms: i64,
    alerted: bool,
}

impl Runner {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleep `d`, or less when stopped. `true` when stopped.
    async fn pause(&mut self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        let _ = tokio::time::timeout(d, stop.wait_for(|s| *s)).await;
        self.stopped()
    }

    async fn run(mut self, mut target: Target) {
        let sink = target.name();
        let store = self.deps.store.clone();
        let mut backoff = Duration::from_secs(1);
        if let Err(e) = state::ensure(&store, sink, stockade_core::clock::now_ms()).await {
            tracing::warn!(sink, "audit mirror: cannot record its state: {e}");
        }
        while !self.stopped() {
            let now = stockade_core::clock::now_ms();
            match state::lease(&store, sink, &self.holder, now, now + LEASE_MS).await {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    if self.pause(Duration::from_secs(5)).await {
                        break;
                    }
                    continue;
                }
            }
            let failed = match self.copy(&mut target).await {
                Ok(()) => continue,
                Err(f) => f,
            };
            self.record_failure(sink, &failed.message).await;
            let wait = failed.wait.unwrap_or(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
            if self.pause(wait).await {
                break;
            }
        }
        let _ = state::release(&store, sink, &self.holder).await;
    }

    /// Resume, then copy until a failure, a lost lease (`Ok`) or the stop.
    async fn copy(&mut self, target: &mut Target) -> Result<(), Failed> {
        let sink = target.name();
        let store = self.deps.store.clone();
        let local = |e: stockade_store::StoreError| Failed {
            message: format!("database: {e}"),
            wait: None,
        };
        let acked_before = state::get(&store, sink)
            .await
            .map_err(local)?
            .map_or(0, |s| s.acked_seq);
        let mut acked = target.resume(&self.deps, acked_before).await?;
        let now = stockade_core::clock::now_ms();
        state::resumed(&store, sink, &self.holder, acked, now)
            .await
            .map_err(local)?;
        let mut writes = store.writes();
        let mut renewed = stockade_core::clock::now_ms();
        while !self.stopped() {
            let now = stockade_core::clock::now_ms();
            if now - renewed > LEASE_MS / 3 {
                if !state::lease(&store, sink, &self.holder, now, now + LEASE_MS)
                    .await
                    .map_err(local)?
                {
                    return Ok(());
                }
                renewed = now;
            }
            let (_, lag_rows, lag_s) = status::lag(&store, acked, now).await.map_err(local)?;
            self.deps.telemetry.lag(sink, lag_rows, lag_s);
            let limit = u32::try_from(target.batch()).unwrap_or(100);
            let rows = store.audit_rows(acked, limit).await.map_err(local)?;
            let Some(last) = rows.last().map(|r| r.seq) else {
                writes.borrow_and_update();
                let mut stop = self.stop.clone();
                tokio::select! {
                    _ = writes.changed() => {}
                    _ = stop.wait_for(|s| *s) => {}
                    () = tokio::time::sleep(POLL) => {}
                }
                continue;
            };
            let n = rows.len() as u64;
            if let Err(f) = target.send(rows).await {
                self.deps.telemetry.failed(sink);
                return Err(f);
            }
            acked = last;
            self.deps.telemetry.copied(sink, n);
            self.acked(sink, acked).await.map_err(local)?;
        }
        Ok(())
    }

    /// Record progress; a recovery after an alerted failure raises `recovered`.
    async fn acked(&mut self, sink: &'static str, seq: i64) -> stockade_store::Result<()> {
        let now = stockade_core::clock::now_ms();
        state::ack(&self.deps.store, sink, &self.holder, seq, now).await?;
        if self.alerted {
            self.alerted = false;
            self.raise(sink, "recovered", None).await;
        }
        Ok(())
    }

    async fn record_failure(&mut self, sink: &'static str, message: &str) {
        let store = &self.deps.store;
        let now = stockade_core::clock::now_ms();
        tracing::warn!(sink, "audit mirror: {message}");
        let _ = state::fail(store, sink, &self.holder, message, now).await;
        let since = state::get(store, sink)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.failing_since_ms);
        if !self.alerted && since.is_some_and(|t| now - t >= self.alert_after_ms) {
            self.alerted = true;
            self.raise(sink, "failing", Some(message)).await;
        }
    }

    /// Append an `audit_mirror` event (the alert pipeline routes it). No token, no PII:
    /// the sink's name and the mirror's own error text.
    async fn raise(&self, sink: &'static str, kind: &str, message: Option<&str>) {
        let detail = serde_json::json!({
            "sink": sink,
            "error": message.map(|m| m.chars().take(300).collect::<String>()),
        });
        let columns = EventColumns {
            source: "audit_mirror".into(),
            kind: kind.into(),
            caller: "system:audit-mirror".into(),
            host: String::new(),
            path_template: String::new(),
            operation: format!("mirror.{sink}"),
            status: None,
            detail: detail.to_string(),
        };
        let now = stockade_core::clock::now_ms();
        let change = Change::new(
            stockade_store::events::append(now, &Event::Other(columns)),
            AuditEntry::new(
                &format!("audit_mirror.{kind}"),
                format!("audit_mirror:{sink}"),
                AuditDetails::new().str("sink", sink),
            ),
        );
        if let Err(e) = self
            .deps
            .store
            .commit(&Actor::System("audit-mirror"), vec![change])
            .await
        {
            tracing::warn!(sink, "audit mirror: cannot raise its {kind} alert: {e}");
        }
    }
}
