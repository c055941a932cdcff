//! The audit chain's state for pages that show it on every view (the console's audit log
//! and compliance pages), without walking a million rows per view.
//!
//! Invariants: the first check of a process walks the whole chain; every later check walks
//! the rows appended since the last good point, linked to that point's hash, so an
//! appended row that does not follow is found at once; the whole chain is walked again —
//! in the background, the view answering from the incremental walk meanwhile — once the
//! last whole walk is older than [`FULL_EVERY_MS`], so a row altered in place below the
//! last good point is found within that time. A problem found forgets the good point: the
//! next view walks the whole chain again. `stockade audit verify` always walks it all.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Mutex;

use crate::audit::{Hash, VerifyReport};
use crate::{Result, Store};

/// How old the last whole walk may be before a view starts another (15 minutes).
pub const FULL_EVERY_MS: i64 = 15 * 60 * 1000;

/// What a page shows of the chain.
#[derive(Debug, Clone)]
pub struct WatchedChain {
    /// The walk that ended this check (rows, head, the first problem).
    pub report: VerifyReport,
    /// Rows verified in all: the last whole walk and every row checked after it.
    pub rows_verified: u64,
    /// When the whole chain was last walked without a problem (UTC ms), if it was.
    pub full_walk_at_ms: Option<i64>,
}

/// The last good point of this process.
#[derive(Debug, Default)]
pub(crate) struct AuditWatch {
    good: Mutex<Option<Good>>,
    full_running: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Good {
    seq: i64,
    hash: Hash,
    rows: u64,
    full_at_ms: i64,
}

pub(crate) async fn check(
    store: &Store,
    watch: &std::sync::Arc<AuditWatch>,
) -> Result<WatchedChain> {
    let mut good = watch.good.lock().await;
    let Some(g) = *good else {
        let report = store.verify_audit_after(None).await?;
        let now = stockade_core::time::now_ms();
        *good = remember(&report, report.rows_checked, now);
        return Ok(watched(report, (*good).map(|g| g.rows), *good));
    };
    let report = store.verify_audit_after(Some((g.seq, g.hash))).await?;
    let rows = g.rows + report.rows_checked;
    *good = remember(&report, rows, g.full_at_ms);
    let stale = stockade_core::time::now_ms() - g.full_at_ms > FULL_EVERY_MS;
    if good.is_some() && stale && !watch.full_running.swap(true, Ordering::AcqRel) {
        let (store, watch) = (store.clone(), watch.clone());
        tokio::spawn(async move {
            full_walk(&store, &watch).await;
            watch.full_running.store(false, Ordering::Release);
        });
    }
    Ok(watched(report, Some(rows), *good))
}

/// Walk the whole chain and replace the good point with its result (or forget it).
async fn full_walk(store: &Store, watch: &AuditWatch) {
    let Ok(report) = store.verify_audit_after(None).await else {
        return;
    };
    let now = stockade_core::time::now_ms();
    let mut good = watch.good.lock().await;
    match (remember(&report, report.rows_checked, now), *good) {
        // Rows appended while the walk ran are checked by the next view from here.
        (Some(fresh), Some(old)) if old.seq > fresh.seq => {
            *good = Some(Good {
                full_at_ms: now,
                ..old
            })
        }
        (fresh, _) => *good = fresh,
    }
}

fn remember(report: &VerifyReport, rows: u64, full_at_ms: i64) -> Option<Good> {
    if report.problem.is_some() {
        return None;
    }
    report.head.map(|(seq, hash)| Good {
        seq,
        hash,
        rows,
        full_at_ms,
    })
}

fn watched(report: VerifyReport, rows: Option<u64>, good: Option<Good>) -> WatchedChain {
    WatchedChain {
        rows_verified: rows.unwrap_or(report.rows_checked),
        full_walk_at_ms: good.map(|g| g.full_at_ms),
        report,
    }
}
