//! Operating jobs: concurrency admission, ending a job early (skip, operator cancel),
//! a job's first start, and copying committed journal rows into a new job (a rerun).
//!
//! # Concurrency admission
//! A job that belongs to a concurrency group (a key, e.g. `workflow:sync-orders`) is
//! claimed like any other, then admitted ([`Store::admit`]) before it does any work. The
//! admission is one transaction: an upsert of the key's row in `job_concurrency` (on
//! PostgreSQL it locks that row until COMMIT, so two processes admitting jobs of the same
//! key take turns), then an update that records the key on the job only while fewer
//! than `limit` other running jobs hold it. Under READ COMMITTED the second statement
//! runs after the lock is granted, so it sees every admission committed before it: two
//! processes can never both fill the last slot. SQLite runs one writer at a time, so the
//! same statements are serialised anyway. A running job that holds the key fills a slot
//! until it leaves `running` (success, failure, retry, wait, cancel); a job re-claimed
//! after a retry counts as holding its old key until it is admitted again, which only
//! ever errs on the side of fewer jobs running.
//!
//! # Ending early
//! A skipped job (its limit was full and its workflow says `on_limit: skip`) ends
//! `cancelled`, fenced like a completion, with an audit row. An operator's cancel
//! ([`Store::cancel_job`]) ends a queued or running job `cancelled` and bumps its fencing
//! token in the same audited commit: the worker running it, if any, is refused at its
//! next commit (step, completion or failure) and stops there, writing nothing; its
//! unfinished step attempt is closed as failed with the error `cancelled`.

use serde_json::Value;
use stockade_core::Actor;
// Due times, claims, lease expiries and the reaper read the clock the processes share
// (the database's when this host's wall clock is off), never this host's alone.
use stockade_core::clock::now_ms;

use super::{FINISH, JobState, LEASE, Lease, NewJob, stored_error};
use crate::change::{AuditDetails, AuditEntry, Change, Mutation};
use crate::journal::{StepOutput, StepRecord, StepStatus};
use crate::sql::Expect;
use crate::{Result, Store, StoreError, sql_params};

/// What [`Store::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The job holds a slot of its key: run it.
    Admitted,
    /// `limit` other running jobs hold the key: the job may not run now.
    Full,
}

/// The workflow a job runs: its payload's top-level `"workflow"` string, if any (the
/// indexed `jobs.workflow` column).
pub(crate) fn workflow_of(job: &NewJob) -> Option<String> {
    job.payload
        .get("workflow")
        .and_then(Value::as_str)
        .filter(|w| !w.is_empty() && w.len() <= 200)
        .map(str::to_owned)
}

const LOCK_KEY: &str = "INSERT INTO job_concurrency (key, touched_at_ms) VALUES ($1, $2)
  ON CONFLICT (key) DO UPDATE SET touched_at_ms = excluded.touched_at_ms";

const ADMIT: &str = "UPDATE jobs SET concurrency_key = $1
  WHERE id = $2 AND lease_token = $3 AND state = 'running'
    AND (SELECT COUNT(*) FROM jobs o
          WHERE o.concurrency_key = $1 AND o.state = 'running' AND o.id <> $2) < $4";

const ADMIT_REFUSED: &str = "a free slot of the job's concurrency key";

const CANCEL: &str = "UPDATE jobs SET state = 'cancelled', lease_token = lease_token + 1,
        finished_at_ms = $1, updated_at_ms = $1, lease_owner = NULL, lease_expires_at_ms = NULL,
        last_error = $2
  WHERE id = $3 AND state IN ('queued', 'running')";

const CLOSE_STEPS: &str =
    "UPDATE job_steps SET status = 'failed', finished_at_ms = $1, error = 'cancelled'
  WHERE job_id = $2 AND status = 'running'";

const COPY_STEP: &str = "INSERT INTO job_steps (job_id, step_id, attempt, seq, lease_token, status,
        started_at_ms, finished_at_ms, output, output_sealed, error)
  VALUES ($1, $2, $3, $4, 0, 'succeeded', $5, $6, $7, $8, NULL)";

impl Lease {
    /// The fenced, audited change that ends the job `cancelled` because its concurrency
    /// limit was full (`on_limit: skip`), recording `reason`.
    pub fn skip_change(&self, reason: &str) -> Change {
        Change::new(
            Mutation::Sql {
                statement: FINISH,
                params: sql_params![
                    JobState::Cancelled.as_str(),
                    stored_error(reason),
                    now_ms(),
                    self.job_id.as_str(),
                    self.token
                ],
                expect: Expect::Fence(LEASE),
            },
            AuditEntry::new(
                "job.skip",
                format!("job:{}", self.job_id),
                AuditDetails::new()
                    .str("kind", &self.kind)
                    .str("reason", "concurrency_limit"),
            ),
        )
    }
}

/// The change that copies `rows` (succeeded step attempts of an earlier job) into the
/// journal of `to`, as committed: the new job's run skips those steps and feeds their
/// stored outputs on. Put it after the new job's enqueue in the same commit.
pub fn copy_steps_change(from: &str, to: &str, rows: &[StepRecord]) -> Change {
    let now = now_ms();
    let steps = rows
        .iter()
        .filter(|r| r.status == StepStatus::Succeeded)
        .enumerate()
        .map(|(i, r)| {
            let (json, sealed) = match &r.output {
                StepOutput::None => (None, None),
                StepOutput::Json(v) => (Some(v.to_string()), None),
                StepOutput::Sealed(b) => (None, Some(b.clone())),
            };
            Mutation::Sql {
                statement: COPY_STEP,
                params: sql_params![
                    to,
                    r.step_id.as_str(),
                    1_i64,
                    i64::try_from(i).unwrap_or(i64::MAX) + 1,
                    r.started_at_ms,
                    r.finished_at_ms.unwrap_or(now),
                    json,
                    sealed
                ],
                expect: Expect::One("a copied journal row"),
            }
        })
        .collect::<Vec<_>>();
    let details = AuditDetails::new()
        .str("from", from)
        .int("steps", i64::try_from(steps.len()).unwrap_or(i64::MAX));
    Change::new(
        Mutation::Many {
            steps,
            guard: false,
        },
        AuditEntry::new("job.copy_steps", format!("job:{to}"), details),
    )
}

impl Store {
    /// Admit the claimed job of `lease` to concurrency key `key`, where at most `limit`
    /// jobs run at once (see the module doc for why no two processes exceed it). An
    /// admission is audited (`job.admit`); a refusal writes nothing. A stale lease gets
    /// [`StoreError::Fenced`].
    pub async fn admit(
        &self,
        actor: &Actor,
        lease: &Lease,
        key: &str,
        limit: i64,
    ) -> Result<Admission> {
        super::check_text("concurrency key", key, 256)?;
        if !(1..=1000).contains(&limit) {
            return Err(StoreError::Invalid("concurrency limit (1 to 1000)".into()));
        }
        let change = Change::new(
            Mutation::Many {
                steps: vec![
                    Mutation::Sql {
                        statement: LOCK_KEY,
                        params: sql_params![key, now_ms()],
                        expect: Expect::Any,
                    },
                    Mutation::Sql {
                        statement: ADMIT,
                        params: sql_params![key, lease.job_id.as_str(), lease.token, limit],
                        expect: Expect::One(ADMIT_REFUSED),
                    },
                ],
                guard: false,
            },
            AuditEntry::new(
                "job.admit",
                format!("job:{}", lease.job_id),
                AuditDetails::new().str("key", key).int("limit", limit),
            ),
        );
        match self.commit(actor, vec![change]).await {
            Ok(_) => Ok(Admission::Admitted),
            Err(StoreError::NotFound(what)) if what.contains(ADMIT_REFUSED) => {
                let current = self
                    .count(
                        "SELECT COUNT(*) FROM jobs WHERE id = $1 AND lease_token = $2 AND state = 'running'",
                        sql_params![lease.job_id.as_str(), lease.token],
                    )
                    .await?;
                if current == 1 {
                    Ok(Admission::Full)
                } else {
                    Err(StoreError::Fenced(LEASE.into()))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// When the job's first claim started it (`None` before its first claim).
    pub async fn job_started_at(&self, id: &str) -> Result<Option<i64>> {
        let v: Option<Option<i64>> = self
            .query_one_as(
                "SELECT started_at_ms FROM jobs WHERE id = $1",
                sql_params![id],
            )
            .await?;
        Ok(v.flatten())
    }

    /// Cancel job `id` as `actor`: a queued job never runs; a running one is fenced off
    /// (its worker's next commit is refused) and its unfinished step attempt is closed.
    /// Returns the state it had. Refused, writing nothing, for an unknown job
    /// ([`StoreError::NotFound`]) or one that has finished ([`StoreError::Conflict`]).
    pub async fn cancel_job(&self, actor: &Actor, id: &str, reason: &str) -> Result<JobState> {
        let before = self
            .job(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("job {id:?}")))?;
        if !matches!(before.state, JobState::Queued | JobState::Running) {
            return Err(StoreError::Conflict(format!(
                "the job is {} already; only a queued or running job can be cancelled",
                before.state.as_str()
            )));
        }
        let now = now_ms();
        let change = Change::new(
            Mutation::Many {
                steps: vec![
                    Mutation::Sql {
                        statement: CANCEL,
                        params: sql_params![now, stored_error(reason), id],
                        expect: Expect::Any,
                    },
                    Mutation::Sql {
                        statement: CLOSE_STEPS,
                        params: sql_params![now, id],
                        expect: Expect::Any,
                    },
                ],
                guard: true,
            },
            AuditEntry::new(
                "job.cancel",
                format!("job:{id}"),
                AuditDetails::new()
                    .str("kind", &before.kind)
                    .str("was", before.state.as_str()),
            ),
        );
        let receipt = self.commit(actor, vec![change]).await?;
        if receipt.last_seq >= receipt.first_seq {
            self.announce_finished(id);
            Ok(before.state)
        } else {
            Err(StoreError::Conflict(
                "the job finished while it was being cancelled".into(),
            ))
        }
    }
}
