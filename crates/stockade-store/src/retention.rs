//! Retention's statements: what each kind of data counts as expired, and its deletion in
//! bounded batches. The policy (which kinds, how old, how often) and the run loop are in
//! `stockade-retention`; this file only knows tables and cutoffs.
//!
//! Invariants:
//! - Every deletion is one statement over at most `batch` rows, its own short
//!   transaction (on SQLite, one turn of the writer thread; on PostgreSQL, one statement
//!   on the pool), so the server's other writes interleave with a long run.
//! - A dry run's count and a run's deletions use the same condition: the count is what
//!   the deletions remove when nothing else changes in between.
//! - Buyer PII is removed from the order, never the order: its buyer columns are set to
//!   NULL and `pii_deleted_at_ms` marks it (what the console and the API read as removed).
//!   Lines, stock history and the order's business fields stay.
//! - Deletions are bookkeeping on [`Store::write_unaudited`]; the run's one audited commit
//!   ([`Store::record_retention_run`]) carries the counts per kind, never contents.
//! - Audit rows are never deleted here.
//!
//! # SQLite space
//! A database created by this version has `auto_vacuum = INCREMENTAL` (set before its first
//! table); one created before is converted by the next `stockade migrate` (the upgrade
//! that brings this part's migration): [`convert_auto_vacuum`] runs
//! `PRAGMA auto_vacuum = INCREMENTAL; VACUUM;` on the migrating connection, before the
//! writer thread and any reader exist. If another process holds the file, it fails with a
//! message saying to stop it and migrate again (the migration itself is already applied;
//! the next `migrate` converts). After a run, [`Store::reclaim_space`] hands the freed
//! pages back to the file system.

use rusqlite::Connection;

use crate::jobs::check_batch;
use crate::sqlite::db_err;
use crate::{
    AuditDetails, AuditEntry, Change, Expect, Mutation, Result, Store, sql::SqlValue, sql_params,
};

/// The schema version that brings retention (its tables and indexes).
pub const MIGRATION: i64 = 19;

/// Order status ranks from which an order counts as delivered (or ended: cancelled,
/// returned) — see `stockade-sync`'s `rank`.
pub const DELIVERED_RANK: i64 = 4;

/// One kind of expiring data with its cutoff(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Buyer fields of one marketplace's orders: delivered (or cancelled, returned)
    /// orders whose last status change is before `delivered_before_ms`; orders never
    /// reported delivered whose last status change is before `undelivered_before_ms`.
    BuyerPii {
        marketplace: String,
        delivered_before_ms: i64,
        undelivered_before_ms: i64,
    },
    /// Finished jobs of `kind` (with their journal) finished before the cutoff.
    JobsOfKind { kind: String, before_ms: i64 },
    /// Finished jobs of every other kind than `except`, and schedule ticks fired before
    /// the cutoff (never a schedule's newest).
    OtherJobs { except: String, before_ms: i64 },
    /// Outbound request log rows.
    EgressLog { before_ms: i64 },
    /// Events routed by the alert pipeline before the cutoff; unrouted ones before
    /// `unrouted_before_ms`.
    Events {
        before_ms: i64,
        unrouted_before_ms: i64,
    },
    /// Alert deliveries no longer pending (sent or held) created before the cutoff.
    AlertDeliveries { before_ms: i64 },
    /// Sessions that expired before the cutoff.
    Sessions { before_ms: i64 },
    /// Bans that ended (lifted or ran out) before the cutoff, in seconds. Permanent bans
    /// never lifted are kept.
    Bans { before_s: i64 },
}

const PII_COUNT: &str = "SELECT COUNT(*) FROM orders o JOIN connections c ON c.id = o.connection_id
  WHERE o.pii_deleted_at_ms IS NULL AND c.marketplace = $1
    AND ((o.status_rank >= 4 AND o.updated_at_ms < $2) OR (o.status_rank < 4 AND o.updated_at_ms < $3))";
const PII_DELETE: &str = "UPDATE orders SET buyer_name = NULL, buyer_email = NULL,
    buyer_phone = NULL, buyer_address = NULL, pii_deleted_at_ms = $4
  WHERE id IN (SELECT o.id FROM orders o JOIN connections c ON c.id = o.connection_id
    WHERE o.pii_deleted_at_ms IS NULL AND c.marketplace = $1
      AND ((o.status_rank >= 4 AND o.updated_at_ms < $2) OR (o.status_rank < 4 AND o.updated_at_ms < $3))
    ORDER BY o.updated_at_ms, o.id LIMIT $5)";

const JOBS_KIND_COUNT: &str = "SELECT COUNT(*) FROM jobs
  WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $2 AND kind = $1";
const JOBS_KIND_DELETE: &str = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
  WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $2 AND kind = $1
  ORDER BY finished_at_ms, id LIMIT $3)";
const JOBS_OTHER_COUNT: &str = "SELECT COUNT(*) FROM jobs
  WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $2 AND kind <> $1";
const JOBS_OTHER_DELETE: &str = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
  WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $2 AND kind <> $1
  ORDER BY finished_at_ms, id LIMIT $3)";
const TICKS_WHERE_COUNT: &str = "SELECT COUNT(*) FROM schedule_ticks s WHERE s.fired_at_ms < $1
  AND s.tick_ms < (SELECT MAX(m.tick_ms) FROM schedule_ticks m WHERE m.schedule = s.schedule)";

const EGRESS_COUNT: &str = "SELECT COUNT(*) FROM egress_log WHERE at_ms < $1";
const EGRESS_DELETE: &str = "DELETE FROM egress_log WHERE id IN (SELECT id FROM egress_log
  WHERE at_ms < $1 ORDER BY at_ms LIMIT $2)";

const EVENTS_COUNT: &str = "SELECT COUNT(*) FROM events
  WHERE at_ms < $1 AND (delivered_at_ms IS NOT NULL OR at_ms < $2)";
const EVENTS_DELETE: &str = "DELETE FROM events WHERE id IN (SELECT id FROM events
  WHERE at_ms < $1 AND (delivered_at_ms IS NOT NULL OR at_ms < $2) ORDER BY at_ms LIMIT $3)";

const ALERTS_COUNT: &str =
    "SELECT COUNT(*) FROM alert_outbox WHERE state <> 'pending' AND created_at_ms < $1";
const ALERTS_DELETE: &str = "DELETE FROM alert_outbox WHERE id IN (SELECT id FROM alert_outbox
  WHERE state <> 'pending' AND created_at_ms < $1 ORDER BY created_at_ms LIMIT $2)";

const SESSIONS_COUNT: &str = "SELECT COUNT(*) FROM sessions WHERE expires_at_ms < $1";
const SESSIONS_DELETE: &str = "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions
  WHERE expires_at_ms < $1 ORDER BY expires_at_ms LIMIT $2)";

const BANS_COUNT: &str = "SELECT COUNT(*) FROM bans
  WHERE COALESCE(lifted_at_s, until_s) IS NOT NULL AND COALESCE(lifted_at_s, until_s) < $1";
const BANS_DELETE: &str = "DELETE FROM bans WHERE id IN (SELECT id FROM bans
  WHERE COALESCE(lifted_at_s, until_s) IS NOT NULL AND COALESCE(lifted_at_s, until_s) < $1
  ORDER BY since_s LIMIT $2)";

/// One finished run, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// Rows removed (or orders whose buyer fields were removed), all kinds together.
    pub removed: i64,
    /// `(kind, count)` in the order the run went through them.
    pub counts: Vec<(String, i64)>,
}

impl Store {
    /// How many rows `target` would remove now.
    pub async fn retention_count(&self, target: &Target) -> Result<i64> {
        let (statement, params) = match target {
            Target::BuyerPii {
                marketplace,
                delivered_before_ms,
                undelivered_before_ms,
            } => (
                PII_COUNT,
                sql_params![
                    marketplace.as_str(),
                    *delivered_before_ms,
                    *undelivered_before_ms
                ],
            ),
            Target::JobsOfKind { kind, before_ms } => {
                (JOBS_KIND_COUNT, sql_params![kind.as_str(), *before_ms])
            }
            Target::OtherJobs { except, before_ms } => {
                let ticks = self
                    .count(TICKS_WHERE_COUNT, sql_params![*before_ms])
                    .await?;
                let jobs = self
                    .count(JOBS_OTHER_COUNT, sql_params![except.as_str(), *before_ms])
                    .await?;
                return Ok(jobs + ticks);
            }
            Target::EgressLog { before_ms } => (EGRESS_COUNT, sql_params![*before_ms]),
            Target::Events {
                before_ms,
                unrouted_before_ms,
            } => (EVENTS_COUNT, sql_params![*before_ms, *unrouted_before_ms]),
            Target::AlertDeliveries { before_ms } => (ALERTS_COUNT, sql_params![*before_ms]),
            Target::Sessions { before_ms } => (SESSIONS_COUNT, sql_params![*before_ms]),
            Target::Bans { before_s } => (BANS_COUNT, sql_params![*before_s]),
        };
        self.count(statement, params).await
    }

    /// Remove at most `batch` expired rows of `target` in one short transaction; returns
    /// how many went. Call again while it returns `batch`.
    pub async fn retention_delete(&self, target: &Target, batch: i64, now_ms: i64) -> Result<u64> {
        check_batch(batch)?;
        let (statement, params): (&'static str, Vec<SqlValue>) = match target {
            Target::BuyerPii {
                marketplace,
                delivered_before_ms,
                undelivered_before_ms,
            } => (
                PII_DELETE,
                sql_params![
                    marketplace.as_str(),
                    *delivered_before_ms,
                    *undelivered_before_ms,
                    now_ms,
                    batch
                ],
            ),
            Target::JobsOfKind { kind, before_ms } => (
                JOBS_KIND_DELETE,
                sql_params![kind.as_str(), *before_ms, batch],
            ),
            Target::OtherJobs { except, before_ms } => {
                let jobs = self
                    .write_unaudited(
                        JOBS_OTHER_DELETE,
                        sql_params![except.as_str(), *before_ms, batch],
                    )
                    .await?;
                let left = batch - i64::try_from(jobs).unwrap_or(batch);
                if left <= 0 {
                    return Ok(jobs);
                }
                return Ok(jobs + self.prune_ticks(*before_ms, left).await?);
            }
            Target::EgressLog { before_ms } => (EGRESS_DELETE, sql_params![*before_ms, batch]),
            Target::Events {
                before_ms,
                unrouted_before_ms,
            } => (
                EVENTS_DELETE,
                sql_params![*before_ms, *unrouted_before_ms, batch],
            ),
            Target::AlertDeliveries { before_ms } => {
                (ALERTS_DELETE, sql_params![*before_ms, batch])
            }
            Target::Sessions { before_ms } => (SESSIONS_DELETE, sql_params![*before_ms, batch]),
            Target::Bans { before_s } => (BANS_DELETE, sql_params![*before_s, batch]),
        };
        self.write_unaudited(statement, params).await
    }

    /// Take (or renew) the one retention lease until `until_ms` for `holder`; `false`
    /// when another holder's lease is still running.
    pub async fn claim_retention(&self, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        let n = self
            .write_unaudited(
                "UPDATE retention_lease SET holder = $1, until_ms = $3
                  WHERE id = 1 AND (until_ms < $2 OR holder = $1)",
                sql_params![holder, now_ms, until_ms],
            )
            .await?;
        Ok(n == 1)
    }

    /// Give the retention lease up (a no-op when `holder` does not hold it).
    pub async fn release_retention(&self, holder: &str) -> Result<()> {
        self.write_unaudited(
            "UPDATE retention_lease SET holder = NULL, until_ms = 0 WHERE id = 1 AND holder = $1",
            sql_params![holder],
        )
        .await?;
        Ok(())
    }

    /// Record a finished run: its row in `retention_runs` and its one audit row
    /// (`retention.run`, with the counts per kind), in one commit.
    pub async fn record_retention_run(
        &self,
        actor: &stockade_core::Actor,
        run: &RunRecord,
    ) -> Result<()> {
        let mut details = AuditDetails::new()
            .int("removed", run.removed)
            .int("started_at_ms", run.started_at_ms);
        for (kind, n) in &run.counts {
            details = details.int(kind, *n);
        }
        let change = Change::new(
            Mutation::Sql {
                statement:
                    "INSERT INTO retention_runs (started_at_ms, finished_at_ms, removed, counts)
                            VALUES ($1, $2, $3, $4)",
                params: sql_params![
                    run.started_at_ms,
                    run.finished_at_ms,
                    run.removed,
                    encode_counts(&run.counts)
                ],
                expect: Expect::One("retention run"),
            },
            AuditEntry::new("retention.run", "retention", details),
        );
        self.commit(actor, vec![change]).await?;
        Ok(())
    }

    /// The newest recorded run, if any.
    pub async fn last_retention_run(&self) -> Result<Option<RunRecord>> {
        let row: Option<(i64, i64, i64, String)> = self
            .query_one_as(
                "SELECT started_at_ms, finished_at_ms, removed, counts FROM retention_runs
                  ORDER BY id DESC LIMIT 1",
                vec![],
            )
            .await?;
        Ok(row.map(
            |(started_at_ms, finished_at_ms, removed, counts)| RunRecord {
                started_at_ms,
                finished_at_ms,
                removed,
                counts: decode_counts(&counts),
            },
        ))
    }
}

/// `kind=count` pairs separated by commas (kinds are fixed identifiers).
fn encode_counts(counts: &[(String, i64)]) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_counts(text: &str) -> Vec<(String, i64)> {
    text.split(',')
        .filter_map(|pair| {
            let (k, n) = pair.split_once('=')?;
            Some((k.to_owned(), n.parse().ok()?))
        })
        .collect()
}

/// Switch an existing SQLite database to incremental auto-vacuum: the mode takes effect
/// only through a full `VACUUM`, which rewrites the file (it needs about the database's
/// size in free disk and holds the database exclusively while it runs). Called on the
/// migrating connection of `stockade migrate`, before the writer thread and any reader
/// open. A database already in that mode is left alone (nothing written).
pub(crate) fn convert_auto_vacuum(conn: &Connection) -> Result<()> {
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .map_err(db_err)?;
    if mode == 2 {
        return Ok(());
    }
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
        .map_err(|e| {
            crate::StoreError::Database(format!(
                "could not switch the SQLite file to incremental auto-vacuum ({e}); stop every process using it (stockade serve) and run `stockade migrate` again"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trip() {
        let c = vec![("buyer_pii.amazon".to_owned(), 3), ("sessions".into(), 0)];
        assert_eq!(decode_counts(&encode_counts(&c)), c);
        assert!(decode_counts("").is_empty());
    }
}
