//! The step journal of a job (owned here: `job_steps`): what lets an execution resume,
//! not repeat, after its worker died.
//!
//! - **Rows.** One per `(job, step, attempt)`: when the attempt started (and its place
//!   among the job's starts, `seq`), under which fencing token, and once it finished,
//!   its status, output and error. An attempt of a
//!   step is numbered per job and step (1, 2, …), across claims: a step re-run by the
//!   next holder after a crash is the next attempt, not attempt 1 again.
//! - **Start** ([`Store::start_step`]) inserts the `running` row in one statement that
//!   also checks the lease's token (a stale holder is [`StoreError::Fenced`]) and that
//!   the step has not succeeded already (a committed step is never started again). It is
//!   bookkeeping, unaudited like the lease itself ([`Store::write_unaudited`]).
//! - **Commit** ([`Store::commit_step`], or [`Lease::step_change`] in a larger commit)
//!   records the outcome in an audited commit that starts with the lease's fencing check
//!   and carries the step's own effects (a stock adjustment and its audit row), so the
//!   effect, its journal entry and its audit rows are written together or not at all.
//! - **Resume** ([`Store::resume_point`]): the latest finished attempt of every step
//!   that finished, and the steps started but never finished (in flight when the worker
//!   died). An executor skips the steps that succeeded and re-runs the in-flight ones
//!   with the same idempotency key, [`idempotency_key`] `= <job id>/<step id>`: it does
//!   not change between attempts, so a receiver that already applied the request
//!   recognises the retry.
//! - **What the store does not read.** A step's output is JSON text, or opaque bytes the
//!   caller sealed ([`StepOutput::Sealed`]: vault ciphertext for outputs holding PII);
//!   the store never decrypts or parses them. Error text is stored as given (cut to
//!   [`crate::jobs::MAX_ERROR_CHARS`]): **the caller scrubs it** of secrets and PII
//!   before it gets here, because anything persisted is readable by whoever can read
//!   executions.

use serde_json::Value;
use stockade_core::Actor;
use stockade_core::time::now_ms;

use crate::change::{AuditDetails, AuditEntry, Change, Mutation};
use crate::jobs::{LEASE, Lease, check_text, stored_error};
use crate::sql::{Columns, Expect, FromRow};
use crate::{Result, Store, StoreError, sql_params};

/// The largest step output stored (JSON text or sealed bytes).
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// The idempotency key of a step of a job: `<job id>/<step id>`, the same for every
/// attempt (sent as `Idempotency-Key` by `http.request`, used by alerts for dedup).
pub fn idempotency_key(job_id: &str, step_id: &str) -> String {
    format!("{job_id}/{step_id}")
}

/// A step's stored output.
#[derive(Clone, PartialEq)]
pub enum StepOutput {
    /// Nothing stored (no output, or an output holding PII that is not kept).
    None,
    Json(Value),
    /// Bytes the caller sealed (vault ciphertext); stored and returned as they are.
    Sealed(Vec<u8>),
}

impl std::fmt::Debug for StepOutput {
    // Outputs may hold business data: show their shape only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepOutput::None => f.write_str("None"),
            StepOutput::Json(_) => f.write_str("Json(..)"),
            StepOutput::Sealed(b) => write!(f, "Sealed({} bytes)", b.len()),
        }
    }
}

/// How a step attempt ended, as the caller reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    Succeeded(StepOutput),
    /// The error text, scrubbed by the caller.
    Failed(String),
}

/// A journal row's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Running,
    Succeeded,
    Failed,
}

impl std::str::FromStr for StepStatus {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "running" => Ok(StepStatus::Running),
            "succeeded" => Ok(StepStatus::Succeeded),
            "failed" => Ok(StepStatus::Failed),
            _ => Err(()),
        }
    }
}

/// One attempt of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub step_id: String,
    pub attempt: i64,
    /// The fencing token of the claim that ran this attempt.
    pub token: i64,
    pub status: StepStatus,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub output: StepOutput,
    pub error: Option<String>,
}

impl FromRow for StepRecord {
    fn from_row(c: &mut Columns<'_>) -> Result<Self> {
        let step_id = c.get()?;
        let attempt = c.get()?;
        let token = c.get()?;
        let status = c.parse("a journal step's status")?;
        let started_at_ms = c.get()?;
        let finished_at_ms = c.get()?;
        let json: Option<String> = c.get()?;
        let sealed: Option<Vec<u8>> = c.get()?;
        let output = match (json, sealed) {
            (_, Some(bytes)) => StepOutput::Sealed(bytes),
            (Some(text), None) => StepOutput::Json(
                serde_json::from_str(&text)
                    .map_err(|_| StoreError::Corrupt("a journal step's output".into()))?,
            ),
            (None, None) => StepOutput::None,
        };
        Ok(StepRecord {
            step_id,
            attempt,
            token,
            status,
            started_at_ms,
            finished_at_ms,
            output,
            error: c.get()?,
        })
    }
}

/// A started step attempt: what [`Store::commit_step`] needs back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepStarted {
    pub step_id: String,
    pub attempt: i64,
    pub idempotency_key: String,
}

/// Where an execution resumes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumePoint {
    pub job_id: String,
    /// The latest finished attempt of each step that finished, in the order the steps
    /// were first started. A step that `Succeeded` must not run again (the store refuses
    /// to start it); a `Failed` one is the executor's call (continue, or retry).
    pub committed: Vec<StepRecord>,
    /// Steps whose latest attempt started and never finished: the worker died between
    /// the step's effect and its commit, or before the effect. Re-run them with the same
    /// idempotency key (the `attempt` here is the one that was lost).
    pub in_flight: Vec<StepStarted>,
}

impl ResumePoint {
    /// The committed outcome of `step_id`, if it has one.
    pub fn committed(&self, step_id: &str) -> Option<&StepRecord> {
        self.committed.iter().find(|r| r.step_id == step_id)
    }

    /// Whether `step_id` succeeded already (skip it).
    pub fn succeeded(&self, step_id: &str) -> bool {
        self.committed(step_id)
            .is_some_and(|r| r.status == StepStatus::Succeeded)
    }
}

const START: &str = "INSERT INTO job_steps (job_id, step_id, attempt, seq, lease_token, status, started_at_ms)
  SELECT $1, $2, n.next, s.next, $3, 'running', $4
    FROM (SELECT COALESCE(MAX(attempt), 0) + 1 AS next FROM job_steps WHERE job_id = $1 AND step_id = $2) n,
         (SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM job_steps WHERE job_id = $1) s
   WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND lease_token = $3 AND state = 'running')
     AND NOT EXISTS (SELECT 1 FROM job_steps WHERE job_id = $1 AND step_id = $2 AND status = 'succeeded')
  RETURNING attempt";

const FINISH_STEP: &str = "UPDATE job_steps SET status = $1, finished_at_ms = $2, output = $3, output_sealed = $4, error = $5
  WHERE job_id = $6 AND step_id = $7 AND attempt = $8 AND lease_token = $9 AND status = 'running'";

/// A whole attempt recorded at once (its start was never journaled: see
/// [`Lease::attempt_change`]); refused when the step succeeded already.
const RECORD_ATTEMPT: &str = "INSERT INTO job_steps (job_id, step_id, attempt, seq, lease_token, status, started_at_ms,
        finished_at_ms, output, output_sealed, error)
  SELECT $1, $2, $3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_steps WHERE job_id = $1), $4, $5, $6, $7, $8, $9, $10
   WHERE NOT EXISTS (SELECT 1 FROM job_steps WHERE job_id = $1 AND step_id = $2 AND status = 'succeeded')";

const SELECT_STEPS: &str = "SELECT step_id, attempt, lease_token, status, started_at_ms, finished_at_ms, output, output_sealed, error
  FROM job_steps WHERE job_id = $1 ORDER BY seq, started_at_ms";

/// A step outcome as its journal columns: status, output, sealed output, error.
type Columns4 = (
    &'static str,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
);

fn outcome_columns(outcome: &StepOutcome) -> Result<Columns4> {
    let columns = match outcome {
        StepOutcome::Succeeded(StepOutput::None) => ("succeeded", None, None, None),
        StepOutcome::Succeeded(StepOutput::Json(v)) => {
            ("succeeded", Some(v.to_string()), None, None)
        }
        StepOutcome::Succeeded(StepOutput::Sealed(b)) => ("succeeded", None, Some(b.clone()), None),
        StepOutcome::Failed(e) => ("failed", None, None, Some(stored_error(e))),
    };
    let size = columns.1.as_ref().map_or(0, String::len) + columns.2.as_ref().map_or(0, Vec::len);
    if size > MAX_OUTPUT_BYTES {
        return Err(StoreError::Invalid(format!(
            "step output (larger than {MAX_OUTPUT_BYTES} bytes)"
        )));
    }
    Ok(columns)
}

fn step_audit(job_id: &str, step: &StepStarted, status: &str) -> AuditEntry {
    AuditEntry::new(
        "job.step",
        format!("job:{job_id}"),
        AuditDetails::new()
            .str("step", &step.step_id)
            .int("attempt", step.attempt)
            .str("status", status),
    )
}

impl Lease {
    /// The audited change that records `outcome` for the started attempt `step`, fenced
    /// by this lease. Put the step's own effects in the same commit, after it.
    pub fn step_change(&self, step: &StepStarted, outcome: &StepOutcome) -> Result<Change> {
        let (status, output, sealed, error) = outcome_columns(outcome)?;
        let record = Mutation::Sql {
            statement: FINISH_STEP,
            params: sql_params![
                status,
                now_ms(),
                output,
                sealed,
                error,
                self.job_id.as_str(),
                step.step_id.as_str(),
                step.attempt,
                self.token
            ],
            expect: Expect::One("a running attempt of this step started under this lease"),
        };
        Ok(Change::new(
            Mutation::Many {
                steps: vec![self.fence(), record],
                guard: false,
            },
            step_audit(&self.job_id, step, status),
        ))
    }

    /// The audited change that records a whole attempt of `step` (started at
    /// `started_at_ms`, ended with `outcome`) whose start was never journaled, fenced by
    /// this lease. For a step whose only effects are the changes committed with this
    /// record (it reaches nothing outside the database): if the process dies before the
    /// commit, nothing of the attempt exists and the step simply runs again. Refused
    /// ([`StoreError::NotFound`] for the whole commit) when the step succeeded already.
    pub fn attempt_change(
        &self,
        step: &StepStarted,
        started_at_ms: i64,
        outcome: &StepOutcome,
    ) -> Result<Change> {
        let (status, output, sealed, error) = outcome_columns(outcome)?;
        let record = Mutation::Sql {
            statement: RECORD_ATTEMPT,
            params: sql_params![
                self.job_id.as_str(),
                step.step_id.as_str(),
                step.attempt,
                self.token,
                status,
                started_at_ms,
                now_ms(),
                output,
                sealed,
                error
            ],
            expect: Expect::One("a step that has not succeeded already"),
        };
        Ok(Change::new(
            Mutation::Many {
                steps: vec![self.fence(), record],
                guard: false,
            },
            step_audit(&self.job_id, step, status),
        ))
    }
}

impl Store {
    /// Record that `step_id` starts under `lease`: the next attempt number and the
    /// step's idempotency key. Refused ([`StoreError::Fenced`]) when the lease is stale,
    /// and ([`StoreError::Conflict`]) when the step has succeeded already.
    pub async fn start_step(&self, lease: &Lease, step_id: &str) -> Result<StepStarted> {
        check_text("step id", step_id, 200)?;
        let rows = self
            .write_unaudited_rows(
                START,
                sql_params![lease.job_id.as_str(), step_id, lease.token, now_ms()],
            )
            .await?;
        if let Some(row) = rows.first() {
            return Ok(StepStarted {
                step_id: step_id.to_owned(),
                attempt: row.decode()?,
                idempotency_key: idempotency_key(&lease.job_id, step_id),
            });
        }
        let done = self
            .count(
                "SELECT COUNT(*) FROM job_steps WHERE job_id = $1 AND step_id = $2 AND status = 'succeeded'",
                sql_params![lease.job_id.as_str(), step_id],
            )
            .await?;
        if done > 0 {
            Err(StoreError::Conflict(
                "this step has succeeded already and is not run again".into(),
            ))
        } else {
            Err(StoreError::Fenced(LEASE.into()))
        }
    }

    /// Record `outcome` for `step` in one audited commit, fenced by `lease`, with the
    /// step's effects `also`. A stale lease writes nothing ([`StoreError::Fenced`]).
    pub async fn commit_step(
        &self,
        actor: &Actor,
        lease: &Lease,
        step: &StepStarted,
        outcome: &StepOutcome,
        also: Vec<Change>,
    ) -> Result<()> {
        let mut changes = Vec::with_capacity(also.len() + 1);
        changes.push(lease.step_change(step, outcome)?);
        changes.extend(also);
        self.commit(actor, changes).await.map(|_| ())
    }

    /// Every attempt of every step of a job, in start order (the run's timeline).
    pub async fn journal(&self, job_id: &str) -> Result<Vec<StepRecord>> {
        self.query_as(SELECT_STEPS, sql_params![job_id]).await
    }

    /// Where `job_id` resumes: its committed steps and its steps in flight.
    pub async fn resume_point(&self, job_id: &str) -> Result<ResumePoint> {
        let rows = self.journal(job_id).await?;
        // The latest attempt of each step, in the order steps first started.
        let mut latest: Vec<StepRecord> = Vec::new();
        let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for r in rows {
            match at.get(&r.step_id).and_then(|&i| latest.get_mut(i)) {
                Some(l) if l.attempt < r.attempt => *l = r,
                Some(_) => {}
                None => {
                    at.insert(r.step_id.clone(), latest.len());
                    latest.push(r);
                }
            }
        }
        let (running, committed): (Vec<_>, Vec<_>) = latest
            .into_iter()
            .partition(|r| r.status == StepStatus::Running);
        Ok(ResumePoint {
            job_id: job_id.to_owned(),
            committed,
            in_flight: running
                .into_iter()
                .map(|r| StepStarted {
                    idempotency_key: idempotency_key(job_id, &r.step_id),
                    step_id: r.step_id,
                    attempt: r.attempt,
                })
                .collect(),
        })
    }
}
