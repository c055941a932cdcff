//! Retention of workflow executions: finished jobs of a kind older than a cutoff, or
//! beyond the newest `keep` of their workflow, deleted in bounded batches with their
//! journal (`ON DELETE CASCADE`); old schedule ticks and idle concurrency keys with them;
//! then, on SQLite, freed pages handed back to the file system.
//!
//! # SQLite space
//! A delete leaves free pages inside the file; SQLite reuses them for new rows, so the
//! file stops growing, but it does not shrink. A database created by this version has
//! `auto_vacuum = INCREMENTAL` (set before its first table), and [`Store::reclaim_space`]
//! runs `PRAGMA incremental_vacuum` to shrink it by the freed pages, a bounded number
//! per call. A database created before is switched to that mode once, by a full `VACUUM`
//! when the retention migration is applied (see [`crate::retention`]).
//! PostgreSQL's autovacuum does this job there (the `jobs` table is tuned for it in 0010).
//!
//! Retention deletes are bookkeeping (listed on [`Store::write_unaudited`]): nothing a
//! person decided is removed, only the record of finished runs past the configured age
//! and count.

use super::check_batch;
use crate::{Result, Store, sql_params};

/// Free pages one [`Store::reclaim_space`] call hands back at most (64 MiB of 4 KiB
/// pages; it is repeated by the next prune pass).
pub const RECLAIM_PAGES: i64 = 16_384;

/// What one [`Store::prune_executions`] call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub jobs: u64,
    pub ticks: u64,
}

const PRUNE: &str = "DELETE FROM jobs WHERE id IN (
   SELECT r.id FROM (
     SELECT id, finished_at_ms,
            ROW_NUMBER() OVER (PARTITION BY workflow ORDER BY finished_at_ms DESC, id DESC) AS rn
       FROM jobs WHERE kind = $1 AND finished_at_ms IS NOT NULL) r
    WHERE r.finished_at_ms < $2 OR r.rn > $3
    ORDER BY r.finished_at_ms, r.id LIMIT $4)";

const IDLE_KEYS: &str = "DELETE FROM job_concurrency WHERE touched_at_ms < $1
   AND key NOT IN (SELECT concurrency_key FROM jobs
                    WHERE state = 'running' AND concurrency_key IS NOT NULL)";

impl Store {
    /// One bounded pass: delete at most `batch` finished jobs of `kind` that finished
    /// before `finished_before_ms` or are beyond the newest `keep` of their workflow
    /// (their journal goes with them), at most `batch` schedule ticks fired before the
    /// cutoff (never a schedule's newest), and concurrency keys idle since then. Call
    /// again while `jobs` or `ticks` equals `batch`.
    pub async fn prune_executions(
        &self,
        kind: &str,
        finished_before_ms: i64,
        keep: i64,
        batch: i64,
    ) -> Result<PruneReport> {
        check_batch(batch)?;
        let jobs = self
            .write_unaudited(
                PRUNE,
                sql_params![kind, finished_before_ms, keep.max(0), batch],
            )
            .await?;
        let ticks = self.prune_ticks(finished_before_ms, batch).await?;
        self.write_unaudited(IDLE_KEYS, sql_params![finished_before_ms])
            .await?;
        Ok(PruneReport { jobs, ticks })
    }

    /// Hand up to [`RECLAIM_PAGES`] free pages back to the file system (SQLite with
    /// incremental auto-vacuum; nothing elsewhere). Returns whether the database reclaims
    /// space this way (`false`: an older SQLite file without it, or PostgreSQL).
    pub async fn reclaim_space(&self) -> Result<bool> {
        if self.is_postgres() {
            return Ok(false);
        }
        let mode: i64 = self.count("PRAGMA auto_vacuum", vec![]).await?;
        if mode != 2 {
            return Ok(false);
        }
        // A pragma takes no bound parameter: the bound is in the text.
        self.write_unaudited_rows("PRAGMA incremental_vacuum(16384)", vec![])
            .await?;
        // In WAL mode the file shrinks when the log is folded back into it.
        self.checkpoint().await?;
        Ok(true)
    }
}
