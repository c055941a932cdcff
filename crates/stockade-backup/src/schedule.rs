//! Scheduled backups inside the server (`[backup] every`, `keep`, `dir`, `recipients`).
//!
//! Invariants:
//! - Only public keys are configured; a scheduled backup is always to x25519 recipients.
//! - The next run is due `every` after the last successful one recorded in `backups`, so a
//!   restart neither skips nor doubles a run; a failure is retried after `min(every, 15 min)`.
//! - After a success, the oldest `stockade-ENV-*.age` files in `dir` beyond `keep` are
//!   deleted (only files of that name pattern).
//! - A failure raises an alert event (`backup` / `backup_failed`) with the error's class,
//!   never a path's contents or key, and is a failed `backups` row with its audit row.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stockade_core::Actor;
use stockade_core::event::{Event, EventColumns};
use stockade_store::{AuditDetails, AuditEntry, Change, DatabaseUrl, Store};
use tokio::sync::watch;

use crate::create::{CreateOptions, create};
use crate::crypt::Encryption;

const ACTOR: Actor = Actor::System("backup");

/// The schedule as configured.
#[derive(Debug)]
pub struct Schedule {
    pub every: Duration,
    pub keep: usize,
    pub dir: PathBuf,
    pub encryption: Encryption,
}

/// The file name of a scheduled backup taken at `ms`.
pub fn file_name(env: &str, ms: i64) -> String {
    let t: String = stockade_core::time::format_rfc3339_s(ms)
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    format!("stockade-{env}-{t}.age")
}

/// The `stockade_meta` key recording the schedule this instance runs (compliance
/// evidence reads it from the database): `every=SECONDS keep=N`, or `off`.
pub const SCHEDULE_META: &str = "backup.schedule";

/// Record the schedule in `stockade_meta` (audited) when it changed.
pub async fn record_schedule(store: &Store, every: Option<Duration>, keep: usize) {
    let value = match every {
        Some(e) => format!("every={} keep={keep}", e.as_secs()),
        None => "off".into(),
    };
    let current = store.meta(SCHEDULE_META).await.ok().flatten();
    if current.as_deref() == Some(value.as_str()) || (current.is_none() && every.is_none()) {
        return;
    }
    let change = Change::new(
        stockade_store::Mutation::SetMeta {
            key: SCHEDULE_META.into(),
            value: value.clone(),
        },
        AuditEntry::new(
            "backup.schedule",
            "backup:schedule",
            AuditDetails::new().str("schedule", &value),
        ),
    );
    if let Err(e) = store.commit(&ACTOR, vec![change]).await {
        tracing::warn!("could not record the backup schedule: {e}");
    }
}

/// Parse [`SCHEDULE_META`]: (every, keep).
pub fn parse_schedule(text: &str) -> Option<(Duration, usize)> {
    let mut every = None;
    let mut keep = None;
    for part in text.split_whitespace() {
        if let Some(v) = part.strip_prefix("every=") {
            every = v.parse::<u64>().ok().map(Duration::from_secs);
        } else if let Some(v) = part.strip_prefix("keep=") {
            keep = v.parse().ok();
        }
    }
    Some((every?, keep?))
}

/// Run until `stop` turns true.
pub async fn run(
    store: Store,
    database: DatabaseUrl,
    data_dir: PathBuf,
    schedule: Schedule,
    mut stop: watch::Receiver<bool>,
) {
    let retry = schedule.every.min(Duration::from_secs(900));
    record_schedule(&store, Some(schedule.every), schedule.keep).await;
    loop {
        let wait = match crate::record::last_ok(&store, "create").await {
            Ok(Some(last)) => {
                let due = last
                    .created_at_ms
                    .saturating_add(schedule.every.as_millis() as i64);
                Duration::from_millis(
                    u64::try_from(due - stockade_core::clock::now_ms()).unwrap_or(0),
                )
            }
            Ok(None) => Duration::ZERO,
            Err(e) => {
                tracing::warn!("backup schedule: cannot read the last backup: {e}");
                retry
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        // Several processes on one database: one backs up, the others wait their turn
        // and then find the backup done (the `last_ok` read above, next time round).
        let Some(turn) = take_turn(&store, &schedule).await else {
            tokio::select! {
                _ = tokio::time::sleep(retry.min(Duration::from_secs(60))) => {}
                _ = stop.changed() => return,
            }
            continue;
        };
        let ok = run_once(&store, &database, &data_dir, &schedule).await;
        let _ = store.release_lease(&turn).await;
        if !ok {
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// The lease a scheduled backup runs under, across processes sharing the database.
const LEASE: &str = "backup:schedule";
/// Long enough for a large backup; a process that dies mid-backup frees it after this.
const LEASE_MS: i64 = 30 * 60 * 1000;

/// Take the backup lease and check that a backup is still due (another process may
/// have just written one). None: not this process's turn.
async fn take_turn(store: &Store, s: &Schedule) -> Option<stockade_store::Grant> {
    use std::hash::{BuildHasher, Hasher};
    let holder = format!(
        "backup-{}-{:x}",
        std::process::id(),
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    );
    let grant = match store.acquire_lease(LEASE, &holder, LEASE_MS).await {
        Ok(Some(g)) => g,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!("backup schedule: cannot take the backup lease: {e}");
            return None;
        }
    };
    let due = match crate::record::last_ok(store, "create").await {
        Ok(Some(last)) => {
            last.created_at_ms
                .saturating_add(s.every.as_millis() as i64)
                <= stockade_core::clock::now_ms()
        }
        Ok(None) => true,
        Err(_) => false,
    };
    if due {
        Some(grant)
    } else {
        let _ = store.release_lease(&grant).await;
        None
    }
}

/// One scheduled backup; true on success.
pub async fn run_once(
    store: &Store,
    database: &DatabaseUrl,
    data_dir: &Path,
    s: &Schedule,
) -> bool {
    let env = store.environment().as_str();
    let to = s.dir.join(file_name(env, stockade_core::clock::now_ms()));
    let opts = CreateOptions {
        database,
        to: to.clone(),
        encryption: &s.encryption,
        scratch_parent: data_dir.to_path_buf(),
        trigger: "schedule",
    };
    match create(store, &ACTOR, opts).await {
        Ok(r) => {
            tracing::info!(
                bytes = r.file_bytes,
                elapsed_ms = r.elapsed.as_millis() as u64,
                "scheduled backup written"
            );
            prune(&s.dir, env, s.keep);
            true
        }
        Err(e) => {
            tracing::error!("scheduled backup failed: {e}");
            raise_alert(store, &e).await;
            false
        }
    }
}

/// Delete the oldest scheduled backups of `env` beyond `keep`.
pub fn prune(dir: &Path, env: &str, keep: usize) -> usize {
    let prefix = format!("stockade-{env}-");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".age"))
        })
        .collect();
    files.sort();
    let extra = files.len().saturating_sub(keep);
    let mut removed = 0;
    for p in files.into_iter().take(extra) {
        match std::fs::remove_file(&p) {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!("could not delete old backup {}: {e}", p.display()),
        }
    }
    removed
}

fn class(e: &crate::BackupError) -> &'static str {
    match e {
        crate::BackupError::Usage(_) => "configuration",
        crate::BackupError::BadFile(_) => "file",
        crate::BackupError::Refused(_) => "refused",
        crate::BackupError::Io(_) => "io",
        crate::BackupError::Store(_) => "database",
        crate::BackupError::Vault(_) => "vault",
    }
}

/// An alert event for the pipeline (class only: no paths' contents, no keys).
async fn raise_alert(store: &Store, e: &crate::BackupError) {
    let cls = class(e);
    let ev = Event::Other(EventColumns {
        source: "backup".into(),
        kind: "backup_failed".into(),
        caller: "schedule".into(),
        host: String::new(),
        path_template: String::new(),
        operation: "backup".into(),
        status: None,
        detail: serde_json::json!({ "class": cls }).to_string(),
    });
    let change = Change::new(
        stockade_store::events::append(stockade_core::clock::now_ms(), &ev),
        AuditEntry::new(
            "backup.alert",
            "backup:schedule",
            AuditDetails::new().str("class", cls),
        ),
    );
    if let Err(err) = store.commit(&ACTOR, vec![change]).await {
        tracing::error!("could not raise the backup alert: {err}");
    }
}
