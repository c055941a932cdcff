//! Schedule ticks (owned here: `schedule_ticks`): a schedule fires once per tick, across
//! processes and restarts.
//!
//! A tick is the instant a schedule is due (`tick_ms`, computed by the caller from the
//! cron and time zone). Firing inserts the row `(schedule, tick_ms)`; the primary key
//! lets exactly one insert succeed, whichever process and however often it is retried,
//! and the loser's commit writes nothing (no audit row either). Ticks only move forward:
//! a tick at or before the schedule's newest fired tick never fires, so pruning old rows
//! cannot let an old tick fire again, and a process whose clock lags cannot fire a tick
//! that a process ahead of it already passed. [`Store::fire_schedule`]
//! inserts the tick and enqueues its job in the same audited commit, so there is no
//! window in which a tick is taken but its job lost: use it rather than
//! [`Store::claim_tick`] followed by an enqueue. [`Store::last_tick`] gives the newest
//! fired tick, for the catch-up rule after downtime (`missed: skip | run_once`), which
//! the scheduler applies. Old ticks are pruned by [`Store::prune_ticks`], always keeping
//! each schedule's newest one.

use stockade_core::Actor;
// Due times, claims, lease expiries and the reaper read the clock the processes share
// (the database's when this host's wall clock is off), never this host's alone.
use stockade_core::clock::now_ms;

use crate::change::{AuditDetails, AuditEntry, Change, Mutation};
use crate::jobs::{NewJob, check_batch, check_text, insert_job, new_job_id};
use crate::sql::Expect;
use crate::{Result, Store, sql_params};

/// What a tick's job that could not be inserted (its dedup key is taken) is called.
const TICK_JOB: &str = "a new job for this tick (give it no dedup key, or one naming the tick)";

fn insert_tick(schedule: &str, tick_ms: i64, job_id: Option<&str>) -> Mutation {
    Mutation::Sql {
        statement: "INSERT INTO schedule_ticks (schedule, tick_ms, fired_at_ms, job_id)
                    SELECT $1, $2, $3, $4
                     WHERE NOT EXISTS (SELECT 1 FROM schedule_ticks WHERE schedule = $1 AND tick_ms >= $2)
                    ON CONFLICT (schedule, tick_ms) DO NOTHING",
        params: sql_params![schedule, tick_ms, now_ms(), job_id.map(str::to_owned)],
        expect: Expect::Any,
    }
}

fn tick_audit(schedule: &str, tick_ms: i64) -> AuditDetails {
    AuditDetails::new()
        .str("schedule", schedule)
        .int("tick_ms", tick_ms)
}

impl Store {
    /// Take tick `tick_ms` of `schedule`: true exactly once for each pair, whichever
    /// process asks and however often (audited when it fires).
    pub async fn claim_tick(&self, actor: &Actor, schedule: &str, tick_ms: i64) -> Result<bool> {
        check_text("schedule name", schedule, 200)?;
        let change = Change::new(
            Mutation::Many {
                steps: vec![insert_tick(schedule, tick_ms, None)],
                guard: true,
            },
            AuditEntry::new(
                "schedule.tick",
                format!("schedule:{schedule}"),
                tick_audit(schedule, tick_ms),
            ),
        );
        let receipt = self.commit(actor, vec![change]).await?;
        Ok(receipt.last_seq >= receipt.first_seq)
    }

    /// Take tick `tick_ms` of `schedule` and enqueue `job` for it, in one audited
    /// commit. The new job's id when this call fired the tick; `None` when the tick had
    /// fired already (nothing written). A `job` whose dedup key names an existing job
    /// is refused and the tick stays free.
    pub async fn fire_schedule(
        &self,
        actor: &Actor,
        schedule: &str,
        tick_ms: i64,
        job: &NewJob,
    ) -> Result<Option<String>> {
        check_text("schedule name", schedule, 200)?;
        job.check()?;
        let id = new_job_id()?;
        let now = now_ms();
        let change = Change::new(
            Mutation::Many {
                steps: vec![
                    insert_tick(schedule, tick_ms, Some(&id)),
                    insert_job(&id, job, now, Expect::One(TICK_JOB), None),
                ],
                guard: true,
            },
            AuditEntry::new(
                "schedule.fire",
                format!("schedule:{schedule}"),
                tick_audit(schedule, tick_ms)
                    .str("job", &id)
                    .str("kind", &job.kind),
            ),
        );
        let receipt = self.commit(actor, vec![change]).await?;
        Ok((receipt.last_seq >= receipt.first_seq).then_some(id))
    }

    /// The newest tick of `schedule` that fired, if any.
    pub async fn last_tick(&self, schedule: &str) -> Result<Option<i64>> {
        let q = "SELECT MAX(tick_ms) FROM schedule_ticks WHERE schedule = $1";
        Ok(self
            .query_one_as::<Option<i64>>(q, sql_params![schedule])
            .await?
            .flatten())
    }

    /// Delete at most `batch` ticks fired before `fired_before_ms`, never a schedule's
    /// newest tick (the catch-up rule reads it). Retention bookkeeping, unaudited.
    pub async fn prune_ticks(&self, fired_before_ms: i64, batch: i64) -> Result<u64> {
        check_batch(batch)?;
        self.write_unaudited(
            "DELETE FROM schedule_ticks WHERE (schedule, tick_ms) IN (
               SELECT s.schedule, s.tick_ms FROM schedule_ticks s
                WHERE s.fired_at_ms < $1
                  AND s.tick_ms < (SELECT MAX(m.tick_ms) FROM schedule_ticks m WHERE m.schedule = s.schedule)
                ORDER BY s.fired_at_ms LIMIT $2)",
            sql_params![fired_before_ms, batch],
        )
        .await
    }
}
