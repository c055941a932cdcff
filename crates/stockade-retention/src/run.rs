//! One retention run, and the schedule that repeats it.
//!
//! Invariants:
//! - A dry run only counts: it writes nothing (no lease, no record, no audit row).
//! - A run holds the one retention lease (`retention_lease`) for its whole length,
//!   renewed between batches, so two processes never run at once; a run that finds the
//!   lease held by a live holder returns [`RunError::Busy`] and writes nothing.
//! - Each kind is deleted in batches of `Rules::batch` rows, each a short transaction of
//!   its own, until a batch comes back short.
//! - After the deletions: the SQLite write-ahead log is folded back (no removed
//!   ciphertext lingers there) and freed pages are handed back (incremental vacuum);
//!   then one audited commit records the run with its counts per kind.

use std::time::Duration;

use stockade_core::{Actor, clock::now_ms};
use stockade_store::{Store, StoreError, retention::RunRecord};

use crate::rules::{Planned, Rules};

/// The actor of retention's audit rows.
pub const ACTOR: Actor = Actor::System("retention");

/// How long a lease lasts without renewal (a dead process's lease frees itself).
const LEASE_MS: i64 = 10 * 60 * 1000;

/// At most this many incremental-vacuum calls per run (each hands back up to 64 MiB).
const RECLAIM_CALLS: usize = 64;

/// Why a run did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "another retention run is in progress (its lease expires within 10 minutes); try again later"
    )]
    Busy,
    #[error("retention: {0}")]
    Store(#[from] StoreError),
}

/// One kind's line in a run's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindReport {
    pub kind: &'static str,
    pub rule: String,
    pub cutoff_ms: i64,
    /// Rows that would go (dry run) or went.
    pub rows: i64,
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub dry_run: bool,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub kinds: Vec<KindReport>,
    /// Deletion statements run (0 on a dry run).
    pub batches: u64,
    /// Whether freed SQLite pages were handed back.
    pub reclaimed: bool,
}

impl Report {
    /// Rows removed (or that would be) over all kinds.
    pub fn total(&self) -> i64 {
        self.kinds.iter().map(|k| k.rows).sum()
    }
}

/// Count what `rules` would remove now; writes nothing.
pub async fn dry_run(store: &Store, rules: &Rules) -> Result<Report, RunError> {
    let started = now_ms();
    let mut kinds = Vec::new();
    for p in rules.plan(started) {
        let rows = store.retention_count(&p.target).await?;
        kinds.push(line(&p, rows));
    }
    Ok(Report {
        dry_run: true,
        started_at_ms: started,
        finished_at_ms: now_ms(),
        kinds,
        batches: 0,
        reclaimed: false,
    })
}

/// Remove what `rules` say has expired, record the run, and reclaim space.
pub async fn run(store: &Store, rules: &Rules) -> Result<Report, RunError> {
    let holder = format!("{}-{}", std::process::id(), now_ms());
    let started = now_ms();
    if !store
        .claim_retention(&holder, started, started + LEASE_MS)
        .await?
    {
        return Err(RunError::Busy);
    }
    let result = run_held(store, rules, &holder, started).await;
    if let Err(e) = store.release_retention(&holder).await {
        tracing::warn!(error = %e, "retention: could not release the lease (it expires by itself)");
    }
    result
}

async fn run_held(
    store: &Store,
    rules: &Rules,
    holder: &str,
    started: i64,
) -> Result<Report, RunError> {
    let mut kinds = Vec::new();
    let mut batches = 0;
    for p in rules.plan(started) {
        let mut rows = 0_i64;
        loop {
            let n = store
                .retention_delete(&p.target, rules.batch, now_ms())
                .await?;
            batches += 1;
            rows += i64::try_from(n).unwrap_or(i64::MAX);
            let now = now_ms();
            if !store.claim_retention(holder, now, now + LEASE_MS).await? {
                return Err(RunError::Busy);
            }
            if i64::try_from(n).unwrap_or(i64::MAX) < rules.batch {
                break;
            }
            // Let the server's own writes in between batches.
            tokio::task::yield_now().await;
        }
        kinds.push(line(&p, rows));
    }
    store.checkpoint().await?;
    let reclaimed = reclaim(store).await?;
    let report = Report {
        dry_run: false,
        started_at_ms: started,
        finished_at_ms: now_ms(),
        kinds,
        batches,
        reclaimed,
    };
    store
        .record_retention_run(
            &ACTOR,
            &RunRecord {
                started_at_ms: report.started_at_ms,
                finished_at_ms: report.finished_at_ms,
                removed: report.total(),
                counts: report
                    .kinds
                    .iter()
                    .map(|k| (k.kind.to_owned(), k.rows))
                    .collect(),
            },
        )
        .await?;
    Ok(report)
}

/// Hand freed SQLite pages back until none are left (bounded); `false` on PostgreSQL
/// or a SQLite file without incremental auto-vacuum.
async fn reclaim(store: &Store) -> Result<bool, RunError> {
    let mut reclaimed = false;
    for _ in 0..RECLAIM_CALLS {
        if !store.reclaim_space().await? {
            break;
        }
        reclaimed = true;
        if store.count("PRAGMA freelist_count", vec![]).await? == 0 {
            break;
        }
    }
    Ok(reclaimed)
}

fn line(p: &Planned, rows: i64) -> KindReport {
    KindReport {
        kind: p.kind,
        rule: p.rule.clone(),
        cutoff_ms: p.cutoff_ms,
        rows,
    }
}

/// Run every `rules.every_s` until `stop` changes (the first run at once); one run at a
/// time in this process, and across processes by the lease.
pub async fn schedule(store: Store, rules: Rules, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = Duration::from_secs(u64::try_from(rules.every_s.max(1)).unwrap_or(3_600));
    loop {
        match run(&store, &rules).await {
            Ok(r) => tracing::info!(
                removed = r.total(),
                batches = r.batches,
                "retention run finished"
            ),
            Err(RunError::Busy) => tracing::debug!("retention: another process is running it"),
            Err(e) => tracing::warn!(error = %e, "retention run failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}
