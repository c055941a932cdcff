//! Durable jobs: one queue, on both backends, for workflow executions, backups and the
//! NocoDB mirror. This module owns the `jobs` table; a job's step journal is in
//! [`crate::journal`] and schedule ticks in [`crate::schedule`].
//!
//! # Model
//! - **Enqueue** ([`Store::enqueue`], or [`enqueue_change`] inside a larger commit, e.g.
//!   with the event cursor that triggered it) writes a `queued` job with a JSON payload
//!   and a due time. It is idempotent on `(kind, dedup_key)`: enqueuing the same key
//!   again writes nothing (no audit row either) and returns the existing job, so one
//!   webhook delivery or one schedule tick creates one job. Dedup lasts as long as the
//!   job is kept (see pruning).
//! - **Claim** ([`Store::claim`]) is one `UPDATE … RETURNING`: the oldest due `queued`
//!   job of the worker's kinds becomes `running` with a lease (owner, expiry), its
//!   `attempts` and its fencing token `lease_token` each grow by one. On PostgreSQL the
//!   candidate row is picked `FOR UPDATE SKIP LOCKED`, so concurrent claimers in any
//!   number of processes never take the same job and never wait on each other; on
//!   SQLite the single writer runs the statement, so claims are serialised.
//! - **Fencing.** The token is the authority over a job, not the clock. Every commit for
//!   a job carries a statement that touches the job's row only `WHERE id = … AND
//!   lease_token = … AND state = 'running'`, with [`Expect::Fence`] ([`Lease::fence`],
//!   and the statements of [`Store::complete`], [`Store::fail`], [`Store::retry_at`] and
//!   the journal's commits). It runs in the same transaction as the rest of the commit,
//!   so a worker whose lease expired and whose job was re-queued or claimed again gets
//!   [`StoreError::Fenced`] and writes nothing, not even an audit row. A holder whose
//!   lease expired but whom nobody replaced may still commit (no one else ran the job);
//!   expiry only decides when the reaper steps in. On PostgreSQL the fencing statement
//!   also locks the job's row until COMMIT, so neither the reaper nor a claimer can move
//!   the job between the check and the commit.
//! - **Heartbeat** ([`Store::heartbeat`]) extends the lease only while the token is
//!   current (a stale holder learns it is fenced). Heartbeat every third of the lease.
//! - **Reaper** ([`Store::reap_expired`]) re-queues, in a bounded batch, running jobs
//!   whose lease expired and that have attempts left; a job out of attempts is failed
//!   instead (audited, actor `system:jobs`), so a job that kills its worker every time
//!   cannot loop. A re-queued job keeps its journal: its next holder resumes from it.
//! - **Attempts** count claims; [`Store::retry_at`] refuses once they are used up.
//!   [`Backoff`] computes exponential delays with jitter for retries.
//! - **Defer** ([`Store::defer_until`]) puts a running job back to sleep until a time
//!   without spending an attempt: a durable `wait` sleeps in the queue, not in a worker,
//!   and survives restarts (the wait step's journal commit records why).
//! - **Wake-up.** Workers poll for due jobs (a claim that finds nothing is one indexed
//!   read); in the process that enqueued, [`Store::writes`] wakes them at once. No
//!   `LISTEN/NOTIFY` and no session advisory locks, so PgBouncer in transaction mode is
//!   fine.
//! - **Pruning** ([`Store::prune_jobs`]) deletes finished jobs by age and by count, a
//!   bounded batch per call; their journal rows go with them (`ON DELETE CASCADE`).
//!
//! # Audited and unaudited writes
//! Enqueue, complete, fail, retry and the reaper's final failure decide what happens to
//! work done on someone's behalf: they go through [`Store::commit`] with the actor the
//! caller passes (`workflow:NAME@VERSION/EXECUTION` for a workflow). Claims, heartbeats,
//! the reaper's re-queue, deferring and the retention prune are lease bookkeeping: they
//! record which
//! process holds a job and until when, change no data, and happen every few seconds per
//! running job, so auditing them would bury the chain in noise. They go through
//! [`Store::write_unaudited`], whose doc lists them. Every outcome a lease leads to is
//! audited, and the journal's step commits are too ([`crate::journal`]).
//!
//! # What the store does not look at
//! The payload is stored as JSON text and never interpreted: a payload must not carry PII
//! in clear (reference an order by id, or seal the value with the vault first). Error
//! text is stored as given, cut to [`MAX_ERROR_CHARS`]: the caller scrubs it first.

use serde_json::Value;
use stockade_core::Actor;
// Due times, claims, lease expiries and the reaper read the clock the processes share
// (the database's when this host's wall clock is off), never this host's alone.
use stockade_core::clock::now_ms;

use crate::change::{AuditDetails, AuditEntry, Change, Mutation};
use crate::sql::{Columns, Expect, FromRow};
use crate::{Result, Store, StoreError, sql_params};

mod backoff;
mod ops;
mod prune;
pub use backoff::Backoff;
pub use ops::{Admission, copy_steps_change};
pub use prune::{PruneReport, RECLAIM_PAGES};

/// Attempts a job gets unless its [`NewJob`] says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i64 = 3;
/// Stored error text is cut to this many characters.
pub const MAX_ERROR_CHARS: usize = 2000;
/// The largest batch the reaper and the prune take in one call.
pub const MAX_BATCH: i64 = 10_000;
/// What a refused fencing check names in its error.
pub(crate) const LEASE: &str = "the job's lease (its fencing token)";

/// The states a job moves through: `queued` → `running` → `succeeded` | `failed`, and
/// back to `queued` on a retry or when the reaper takes an expired lease; `cancelled`
/// when an operator cancels it or a concurrency limit skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for JobState {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "queued" => Ok(JobState::Queued),
            "running" => Ok(JobState::Running),
            "succeeded" => Ok(JobState::Succeeded),
            "failed" => Ok(JobState::Failed),
            "cancelled" => Ok(JobState::Cancelled),
            _ => Err(()),
        }
    }
}

/// A job to enqueue.
#[derive(Clone, PartialEq)]
pub struct NewJob {
    /// What runs it (`workflow`, `backup`, `nocodb.mirror`): lowercase letters, digits,
    /// `.`, `_`, `-`, `:`; at most 64.
    pub kind: String,
    /// With a key, a second enqueue of the same `(kind, key)` writes nothing.
    pub dedup_key: Option<String>,
    pub payload: Value,
    pub run_at_ms: i64,
    pub max_attempts: i64,
    /// Enqueue only while this workflow is enabled with this version active (checked in
    /// the enqueue's own statement, so a workflow disabled or replaced a moment before
    /// gets no job from a trigger that read the registry earlier).
    pub while_active: Option<(String, i64)>,
}

impl std::fmt::Debug for NewJob {
    // The payload may be large or sensitive: show its size only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewJob")
            .field("kind", &self.kind)
            .field("dedup_key", &self.dedup_key)
            .field("run_at_ms", &self.run_at_ms)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl NewJob {
    /// A job due now, with [`DEFAULT_MAX_ATTEMPTS`] and no dedup key.
    pub fn new(kind: &str, payload: Value) -> Self {
        NewJob {
            kind: kind.to_owned(),
            dedup_key: None,
            payload,
            run_at_ms: now_ms(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            while_active: None,
        }
    }

    /// See [`NewJob::while_active`].
    pub fn requiring_active(mut self, workflow: &str, version: i64) -> Self {
        self.while_active = Some((workflow.to_owned(), version));
        self
    }

    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    pub fn run_at(mut self, run_at_ms: i64) -> Self {
        self.run_at_ms = run_at_ms;
        self
    }

    pub fn max_attempts(mut self, n: i64) -> Self {
        self.max_attempts = n;
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        check_kind(&self.kind)?;
        if let Some(k) = &self.dedup_key {
            check_text("dedup key", k, 256)?;
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return Err(StoreError::Invalid("max_attempts (1 to 1000)".into()));
        }
        Ok(())
    }
}

/// What [`Store::enqueue`] did: the job's id, and whether this call created it (false:
/// the dedup key named an existing job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: String,
    pub created: bool,
}

/// A claimed job: what the worker runs and the token it commits under.
#[derive(Clone, PartialEq)]
pub struct Lease {
    pub job_id: String,
    pub kind: String,
    pub dedup_key: Option<String>,
    pub payload: Value,
    /// The fencing token: grows by one on every claim of this job.
    pub token: i64,
    /// This claim's number (1 for the first).
    pub attempt: i64,
    pub max_attempts: i64,
    pub worker: String,
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("job_id", &self.job_id)
            .field("kind", &self.kind)
            .field("token", &self.token)
            .field("attempt", &self.attempt)
            .field("worker", &self.worker)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

impl FromRow for Lease {
    fn from_row(c: &mut Columns<'_>) -> Result<Self> {
        Ok(Lease {
            job_id: c.get()?,
            kind: c.get()?,
            dedup_key: c.get()?,
            payload: c.json("a job's payload")?,
            token: c.get()?,
            attempt: c.get()?,
            max_attempts: c.get()?,
            worker: c.get()?,
            expires_at_ms: c.get()?,
        })
    }
}

/// A job as stored (payload omitted: read it through a claim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: String,
    pub kind: String,
    pub dedup_key: Option<String>,
    pub state: JobState,
    pub run_at_ms: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at_ms: Option<i64>,
    pub lease_token: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

impl FromRow for JobRecord {
    fn from_row(c: &mut Columns<'_>) -> Result<Self> {
        Ok(JobRecord {
            id: c.get()?,
            kind: c.get()?,
            dedup_key: c.get()?,
            state: c.parse("a job's state")?,
            run_at_ms: c.get()?,
            attempts: c.get()?,
            max_attempts: c.get()?,
            lease_owner: c.get()?,
            lease_expires_at_ms: c.get()?,
            lease_token: c.get()?,
            last_error: c.get()?,
            created_at_ms: c.get()?,
            updated_at_ms: c.get()?,
            finished_at_ms: c.get()?,
        })
    }
}

/// What one reaper pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Expired leases whose jobs went back to the queue.
    pub requeued: u64,
    /// Expired leases of jobs out of attempts, failed.
    pub failed: u64,
}

fn check_kind(kind: &str) -> Result<()> {
    let ok = !kind.is_empty()
        && kind.len() <= 64
        && kind.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b':')
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "job kind (1 to 64 of a-z, 0-9, '.', '_', '-', ':')".into(),
        ))
    }
}

/// A name or key: 1 to `max` characters, no control characters.
pub(crate) fn check_text(field: &str, text: &str, max: usize) -> Result<()> {
    let n = text.chars().count();
    if n == 0 || n > max || text.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{field} (1 to {max} characters, no control characters)"
        )));
    }
    Ok(())
}

pub(crate) fn check_batch(batch: i64) -> Result<()> {
    if (1..=MAX_BATCH).contains(&batch) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "batch size (1 to {MAX_BATCH})"
        )))
    }
}

/// Error text as stored: at most [`MAX_ERROR_CHARS`] characters.
pub(crate) fn stored_error(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => format!("{}…", &error[..end]),
        None => error.to_owned(),
    }
}

pub(crate) fn new_job_id() -> Result<String> {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| StoreError::Database("the system random generator failed".into()))?;
    Ok(format!("job_{}", hex::encode(bytes)))
}

/// The insert of a new job (nothing when its dedup key exists, or when its
/// [`NewJob::while_active`] workflow is not active at that version; `expect` says whether
/// that is allowed). `claim`: the job is inserted already claimed by this lease.
pub(crate) fn insert_job(
    id: &str,
    job: &NewJob,
    now: i64,
    expect: Expect,
    claim: Option<(&str, i64)>,
) -> Mutation {
    let (owner, expires) = match claim {
        Some((owner, expires)) => (Some(owner.to_owned()), Some(expires)),
        None => (None, None),
    };
    let (active_name, active_version) = match &job.while_active {
        Some((n, v)) => (Some(n.clone()), Some(*v)),
        None => (None, None),
    };
    Mutation::Sql {
        statement: INSERT_JOB,
        params: sql_params![
            id,
            job.kind.as_str(),
            job.dedup_key.clone(),
            job.payload.to_string(),
            job.run_at_ms,
            job.max_attempts,
            now,
            ops::workflow_of(job),
            owner,
            expires,
            active_name,
            active_version
        ],
        expect,
    }
}

/// A claimed insert (`$9` the lease owner) starts `running` with token 1 and attempt 1,
/// like a first claim; `$11`/`$12` the workflow that must be active, if any.
const INSERT_JOB: &str = "INSERT INTO jobs (id, kind, dedup_key, payload, state, run_at_ms, attempts, max_attempts,
        lease_token, created_at_ms, updated_at_ms, workflow, lease_owner, lease_expires_at_ms, started_at_ms)
  SELECT $1, $2, $3, $4, CASE WHEN $9 IS NULL THEN 'queued' ELSE 'running' END, $5,
         CASE WHEN $9 IS NULL THEN 0 ELSE 1 END, $6,
         CASE WHEN $9 IS NULL THEN 0 ELSE 1 END, $7, $7, $8, $9, $10,
         CASE WHEN $9 IS NULL THEN NULL ELSE $7 END
   WHERE $11 IS NULL OR EXISTS (SELECT 1 FROM workflows w
                                 WHERE w.name = $11 AND w.enabled = 1 AND w.active_version = $12)
  ON CONFLICT (kind, dedup_key) DO NOTHING";

/// The audit row of an enqueue: the job's kind, due time, attempts and whether it has a
/// dedup key (never its payload), with `more`.
fn enqueue_audit(id: &str, job: &NewJob, more: AuditDetails) -> AuditEntry {
    AuditEntry::new(
        "job.enqueue",
        format!("job:{id}"),
        more.str("kind", &job.kind)
            .int("run_at_ms", job.run_at_ms)
            .int("max_attempts", job.max_attempts)
            .bool("dedup", job.dedup_key.is_some()),
    )
}

/// The audited change that enqueues `job`, and the id the job gets if it is new. When
/// the dedup key exists already the change writes nothing, audit row included.
pub fn enqueue_change(job: &NewJob) -> Result<(String, Change)> {
    job.check()?;
    let id = new_job_id()?;
    let audit = enqueue_audit(&id, job, AuditDetails::new());
    let insert = insert_job(&id, job, now_ms(), Expect::Any, None);
    let change = Change::new(
        Mutation::Many {
            steps: vec![insert],
            guard: true,
        },
        audit,
    );
    Ok((id, change))
}

/// The audited change that enqueues `job` already claimed by `worker` for `lease_ms`, and
/// the lease it holds once committed (see [`Store::enqueue_claimed`]). `required`: the
/// change must write the job or the whole commit fails ([`StoreError::NotFound`]: the
/// dedup key exists or the [`NewJob::while_active`] workflow is not active at that
/// version), for a commit that goes on to act under the lease; otherwise it is then a
/// no-op without an audit row.
pub fn claimed_change(
    job: &NewJob,
    worker: &str,
    lease_ms: i64,
    required: bool,
) -> Result<(Lease, Change)> {
    job.check()?;
    check_text("worker id", worker, 128)?;
    check_lease(lease_ms)?;
    let id = new_job_id()?;
    let now = now_ms();
    let expires = now.saturating_add(lease_ms);
    let audit = enqueue_audit(&id, job, AuditDetails::new().bool("claimed", true));
    let mutation = if required {
        insert_job(
            &id,
            job,
            now,
            Expect::One("a new job of an enabled workflow at its active version"),
            Some((worker, expires)),
        )
    } else {
        Mutation::Many {
            steps: vec![insert_job(
                &id,
                job,
                now,
                Expect::Any,
                Some((worker, expires)),
            )],
            guard: true,
        }
    };
    let lease = Lease {
        job_id: id,
        kind: job.kind.clone(),
        dedup_key: job.dedup_key.clone(),
        payload: job.payload.clone(),
        token: 1,
        attempt: 1,
        max_attempts: job.max_attempts,
        worker: worker.to_owned(),
        expires_at_ms: expires,
    };
    Ok((lease, Change::new(mutation, audit)))
}

const FINISH: &str =
    "UPDATE jobs SET state = $1, last_error = $2, finished_at_ms = $3, updated_at_ms = $3,
        lease_owner = NULL, lease_expires_at_ms = NULL
  WHERE id = $4 AND lease_token = $5 AND state = 'running'";

const RETRY: &str =
    "UPDATE jobs SET state = 'queued', run_at_ms = $1, last_error = $2, updated_at_ms = $3,
        lease_owner = NULL, lease_expires_at_ms = NULL
  WHERE id = $4 AND lease_token = $5 AND state = 'running'";

impl Lease {
    /// The fencing check as a step of a commit: touches this job's row only while this
    /// lease's token is current, and refuses the whole commit otherwise. Put it first in
    /// a [`Mutation::Many`] (not guarded) with the changes made on the job's behalf.
    pub fn fence(&self) -> Mutation {
        Mutation::Sql {
            statement: "UPDATE jobs SET updated_at_ms = $1 WHERE id = $2 AND lease_token = $3 AND state = 'running'",
            params: sql_params![now_ms(), self.job_id.as_str(), self.token],
            expect: Expect::Fence(LEASE),
        }
    }

    /// Whether a retry is allowed (this claim was not the last attempt).
    pub fn attempts_left(&self) -> bool {
        self.attempt < self.max_attempts
    }

    fn finish(&self, state: JobState, error: Option<String>, action: &str) -> Change {
        let mut details = AuditDetails::new()
            .str("kind", &self.kind)
            .int("attempt", self.attempt);
        if error.is_some() {
            details = details.bool("error", true);
        }
        Change::new(
            Mutation::Sql {
                statement: FINISH,
                params: sql_params![
                    state.as_str(),
                    error,
                    now_ms(),
                    self.job_id.as_str(),
                    self.token
                ],
                expect: Expect::Fence(LEASE),
            },
            AuditEntry::new(action, format!("job:{}", self.job_id), details),
        )
    }

    /// The fenced, audited change that marks the job succeeded.
    pub fn complete_change(&self) -> Change {
        self.finish(JobState::Succeeded, None, "job.complete")
    }

    /// The fenced, audited change that marks the job failed with `error` (scrubbed by
    /// the caller).
    pub fn fail_change(&self, error: &str) -> Change {
        self.finish(JobState::Failed, Some(stored_error(error)), "job.fail")
    }

    /// The fenced, audited change that puts the job back in the queue, due at
    /// `run_at_ms`, recording `error` (scrubbed by the caller).
    pub fn retry_change(&self, run_at_ms: i64, error: &str) -> Change {
        Change::new(
            Mutation::Sql {
                statement: RETRY,
                params: sql_params![
                    run_at_ms,
                    stored_error(error),
                    now_ms(),
                    self.job_id.as_str(),
                    self.token
                ],
                expect: Expect::Fence(LEASE),
            },
            AuditEntry::new(
                "job.retry",
                format!("job:{}", self.job_id),
                AuditDetails::new()
                    .str("kind", &self.kind)
                    .int("attempt", self.attempt)
                    .int("run_at_ms", run_at_ms),
            ),
        )
    }
}

/// `+kind` keeps SQLite off the (kind, dedup_key) index, which would walk every job of
/// the kind ever run (finished ones too) and sort them: the partial index of queued jobs
/// (`jobs_queued`, in claim order) is read instead, so a claim costs the same with 20,000
/// finished executions as with none (3.7 ms → 0.05 ms measured; SQLite has no statistics
/// to choose by, as nothing runs ANALYZE).
const CLAIM_SQLITE: &str = "UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires_at_ms = $2,
        lease_token = lease_token + 1, attempts = attempts + 1, updated_at_ms = $3,
        started_at_ms = COALESCE(started_at_ms, $3)
  WHERE state = 'queued' AND id = (
        SELECT id FROM jobs WHERE state = 'queued' AND run_at_ms <= $3
           AND +kind IN (SELECT value FROM json_each($4))
         ORDER BY run_at_ms, id LIMIT 1)
  RETURNING id, kind, dedup_key, payload, lease_token, attempts, max_attempts, lease_owner, lease_expires_at_ms";

const CLAIM_PG: &str = "UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires_at_ms = $2,
        lease_token = lease_token + 1, attempts = attempts + 1, updated_at_ms = $3,
        started_at_ms = COALESCE(started_at_ms, $3)
  WHERE state = 'queued' AND id = (
        SELECT id FROM jobs WHERE state = 'queued' AND run_at_ms <= $3
           AND kind IN (SELECT jsonb_array_elements_text($4::jsonb))
         ORDER BY run_at_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED)
  RETURNING id, kind, dedup_key, payload, lease_token, attempts, max_attempts, lease_owner, lease_expires_at_ms";

// The outer WHERE repeats the conditions: on PostgreSQL a row changed since the inner
// SELECT saw it (committed, heartbeated) is re-checked against them, not requeued.
const REQUEUE_SQLITE: &str = "UPDATE jobs SET state = 'queued', run_at_ms = $1, updated_at_ms = $1,
        lease_owner = NULL, lease_expires_at_ms = NULL,
        last_error = 'the lease expired: the worker stopped or lost contact'
  WHERE state = 'running' AND lease_expires_at_ms < $1 AND attempts < max_attempts AND id IN (
        SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at_ms < $1 AND attempts < max_attempts
         ORDER BY lease_expires_at_ms LIMIT $2)";

// PostgreSQL picks the batch once in a CTE: an `IN (SELECT … FOR UPDATE SKIP LOCKED
// LIMIT n)` subquery may be re-run per row and then ignore its LIMIT.
const REQUEUE_PG: &str = "WITH picked AS (
        SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at_ms < $1 AND attempts < max_attempts
         ORDER BY lease_expires_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED)
  UPDATE jobs SET state = 'queued', run_at_ms = $1, updated_at_ms = $1,
        lease_owner = NULL, lease_expires_at_ms = NULL,
        last_error = 'the lease expired: the worker stopped or lost contact'
   FROM picked
  WHERE jobs.id = picked.id AND jobs.state = 'running' AND jobs.lease_expires_at_ms < $1
    AND jobs.attempts < jobs.max_attempts";

const DEAD: &str = "UPDATE jobs SET state = 'failed', finished_at_ms = $1, updated_at_ms = $1,
        lease_owner = NULL, lease_expires_at_ms = NULL,
        last_error = 'the lease expired on the last attempt: the job stopped its worker every time'
  WHERE id = $2 AND lease_token = $3 AND state = 'running' AND lease_expires_at_ms < $1";

const REAPER: Actor = Actor::System("jobs");

impl Store {
    /// Enqueue `job` as `actor` (audited). Idempotent on its dedup key.
    pub async fn enqueue(&self, actor: &Actor, job: &NewJob) -> Result<Enqueued> {
        let (id, change) = enqueue_change(job)?;
        let receipt = self.commit(actor, vec![change]).await?;
        if receipt.last_seq >= receipt.first_seq {
            return Ok(Enqueued { id, created: true });
        }
        let existing: Option<String> = self
            .query_one_as(
                "SELECT id FROM jobs WHERE kind = $1 AND dedup_key = $2",
                sql_params![job.kind.as_str(), job.dedup_key.clone()],
            )
            .await?;
        if let (None, Some((name, version))) = (&existing, &job.while_active) {
            return Err(StoreError::Conflict(format!(
                "workflow {name:?} is no longer enabled at version {version}; nothing was enqueued"
            )));
        }
        existing
            .map(|id| Enqueued { id, created: false })
            .ok_or_else(|| StoreError::NotFound("the job holding this dedup key".into()))
    }

    /// Enqueue `job` already claimed by `worker` for `lease_ms` (audited like
    /// [`Store::enqueue`]): for a process that runs the job at once, without a second
    /// write to claim it. The job is `running` with token 1 and attempt 1, exactly as
    /// after a first claim, so a worker that dies before finishing it leaves an expiring
    /// lease the reaper re-queues like any other. `None` when nothing was written: the
    /// dedup key exists, or the [`NewJob::while_active`] workflow is not active at that
    /// version.
    pub async fn enqueue_claimed(
        &self,
        actor: &Actor,
        job: &NewJob,
        worker: &str,
        lease_ms: i64,
    ) -> Result<Option<Lease>> {
        let (lease, change) = claimed_change(job, worker, lease_ms, false)?;
        let receipt = self.commit(actor, vec![change]).await?;
        if receipt.last_seq < receipt.first_seq {
            return Ok(None);
        }
        Ok(Some(lease))
    }

    /// Claim the oldest due job of one of `kinds` for `worker`, leased for `lease_ms`.
    /// `None` when nothing is due.
    pub async fn claim(
        &self,
        worker: &str,
        kinds: &[&str],
        lease_ms: i64,
    ) -> Result<Option<Lease>> {
        check_text("worker id", worker, 128)?;
        check_lease(lease_ms)?;
        if kinds.is_empty() {
            return Err(StoreError::Invalid("job kinds (at least one)".into()));
        }
        for k in kinds {
            check_kind(k)?;
        }
        let kinds_json = Value::from(kinds.to_vec()).to_string();
        let now = now_ms();
        let statement = if self.is_postgres() {
            CLAIM_PG
        } else {
            CLAIM_SQLITE
        };
        let rows = self
            .write_unaudited_rows(
                statement,
                sql_params![worker, now.saturating_add(lease_ms), now, kinds_json],
            )
            .await?;
        rows.first().map(|r| r.decode()).transpose()
    }

    /// Extend `lease` to `lease_ms` from now, only while its token is current; a stale
    /// lease gets [`StoreError::Fenced`] (stop working on the job).
    pub async fn heartbeat(&self, lease: &mut Lease, lease_ms: i64) -> Result<()> {
        check_lease(lease_ms)?;
        let now = now_ms();
        let until = now.saturating_add(lease_ms);
        let n = self
            .write_unaudited(
                "UPDATE jobs SET lease_expires_at_ms = $1, updated_at_ms = $2
                  WHERE id = $3 AND lease_token = $4 AND state = 'running'",
                sql_params![until, now, lease.job_id.as_str(), lease.token],
            )
            .await?;
        if n != 1 {
            return Err(StoreError::Fenced(LEASE.into()));
        }
        lease.expires_at_ms = until;
        Ok(())
    }

    /// Mark the job succeeded, in one fenced commit with `also` (the last step's effects
    /// and journal entry, applied first).
    pub async fn complete(
        &self,
        actor: &Actor,
        lease: &Lease,
        mut also: Vec<Change>,
    ) -> Result<()> {
        also.push(lease.complete_change());
        self.commit(actor, also).await.map(|_| ())
    }

    /// Mark the job failed for good with `error` (scrubbed by the caller), fenced.
    pub async fn fail(&self, actor: &Actor, lease: &Lease, error: &str) -> Result<()> {
        self.commit(actor, vec![lease.fail_change(error)])
            .await
            .map(|_| ())
    }

    /// Release `lease` and put the job back in the queue until `run_at_ms`, giving back
    /// the attempt its claim counted (a durable wait, not a failure). Fenced like a
    /// heartbeat; lease bookkeeping, unaudited: the wait step's audited journal commit,
    /// made first, records the decision.
    pub async fn defer_until(&self, lease: &Lease, run_at_ms: i64) -> Result<()> {
        let n = self
            .write_unaudited(
                "UPDATE jobs SET state = 'queued', run_at_ms = $1, updated_at_ms = $2,
                        attempts = attempts - 1, lease_owner = NULL, lease_expires_at_ms = NULL
                  WHERE id = $3 AND lease_token = $4 AND state = 'running'",
                sql_params![run_at_ms, now_ms(), lease.job_id.as_str(), lease.token],
            )
            .await?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Fenced(LEASE.into()))
        }
    }

    /// Put the job back in the queue, due at `run_at_ms` (see [`Backoff`]), fenced.
    /// Refused once the job has used all its attempts: fail it instead.
    pub async fn retry_at(
        &self,
        actor: &Actor,
        lease: &Lease,
        run_at_ms: i64,
        error: &str,
    ) -> Result<()> {
        if !lease.attempts_left() {
            return Err(StoreError::Invalid(
                "retry: the job has used all its attempts; fail it instead".into(),
            ));
        }
        self.commit(actor, vec![lease.retry_change(run_at_ms, error)])
            .await
            .map(|_| ())
    }

    /// One reaper pass over at most `batch` expired leases of each kind (re-queue, fail).
    pub async fn reap_expired(&self, batch: i64) -> Result<ReapReport> {
        check_batch(batch)?;
        let now = now_ms();
        let statement = if self.is_postgres() {
            REQUEUE_PG
        } else {
            REQUEUE_SQLITE
        };
        let requeued = self
            .write_unaudited(statement, sql_params![now, batch])
            .await?;
        let dead: Vec<(String, i64, i64)> = self
            .query_as(
                "SELECT id, lease_token, attempts FROM jobs
                  WHERE state = 'running' AND lease_expires_at_ms < $1 AND attempts >= max_attempts
                  ORDER BY lease_expires_at_ms LIMIT $2",
                sql_params![now, batch],
            )
            .await?;
        if dead.is_empty() {
            return Ok(ReapReport {
                requeued,
                failed: 0,
            });
        }
        let changes = dead
            .iter()
            .map(|(id, token, attempts)| {
                let fail = Mutation::Sql {
                    statement: DEAD,
                    params: sql_params![now, id.as_str(), *token],
                    expect: Expect::Any,
                };
                Change::new(
                    Mutation::Many {
                        steps: vec![fail],
                        guard: true,
                    },
                    AuditEntry::new(
                        "job.fail",
                        format!("job:{id}"),
                        AuditDetails::new()
                            .str("reason", "lease_expired")
                            .int("attempts", *attempts),
                    ),
                )
            })
            .collect();
        let receipt = self.commit(&REAPER, changes).await?;
        let failed = u64::try_from(receipt.last_seq - receipt.first_seq + 1).unwrap_or(0);
        Ok(ReapReport { requeued, failed })
    }

    /// Jobs waiting in the queue (state `queued`, due or not), per kind: what `/metrics`
    /// reads at scrape time.
    pub async fn queued_jobs(&self) -> Result<Vec<(String, i64)>> {
        self.query_as(
            "SELECT kind, COUNT(*) FROM jobs WHERE state = 'queued' GROUP BY kind ORDER BY kind",
            sql_params![],
        )
        .await
    }

    /// A job by id.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        self.query_one_as(
            "SELECT id, kind, dedup_key, state, run_at_ms, attempts, max_attempts, lease_owner,
                    lease_expires_at_ms, lease_token, last_error, created_at_ms, updated_at_ms, finished_at_ms
               FROM jobs WHERE id = $1",
            sql_params![id],
        )
        .await
    }

    /// Delete, at most `batch` at a time, finished jobs (and their journal) that finished
    /// before `finished_before_ms`, then the oldest finished jobs beyond the newest
    /// `keep`. Returns how many jobs went; call again while it returns `batch`.
    pub async fn prune_jobs(&self, finished_before_ms: i64, keep: i64, batch: i64) -> Result<u64> {
        check_batch(batch)?;
        let by_age = self
            .write_unaudited(
                "DELETE FROM jobs WHERE id IN (
                   SELECT id FROM jobs WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $1
                    ORDER BY finished_at_ms, id LIMIT $2)",
                sql_params![finished_before_ms, batch],
            )
            .await?;
        let left = batch - i64::try_from(by_age).unwrap_or(batch);
        let finished = self
            .count(
                "SELECT COUNT(*) FROM jobs WHERE finished_at_ms IS NOT NULL",
                vec![],
            )
            .await?;
        let surplus = (finished - keep.max(0)).min(left);
        if surplus <= 0 {
            return Ok(by_age);
        }
        let by_count = self
            .write_unaudited(
                "DELETE FROM jobs WHERE id IN (
                   SELECT id FROM jobs WHERE finished_at_ms IS NOT NULL
                    ORDER BY finished_at_ms, id LIMIT $1)",
                sql_params![surplus],
            )
            .await?;
        Ok(by_age + by_count)
    }
}

fn check_lease(lease_ms: i64) -> Result<()> {
    if (1..=86_400_000).contains(&lease_ms) {
        Ok(())
    } else {
        Err(StoreError::Invalid("lease duration (1 ms to 1 day)".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_and_outputs_stay_out_of_debug_output() {
        let job = NewJob::new("workflow", json!({ "buyer": "Jane Doe" })).dedup_key("d1");
        let shown = format!("{job:?}");
        assert!(
            shown.contains("workflow") && !shown.contains("Jane"),
            "{shown}"
        );
        let out = crate::StepOutput::Json(json!({ "buyer": "Jane Doe" }));
        assert_eq!(format!("{out:?}"), "Json(..)");
    }

    #[test]
    fn kinds_keys_and_errors_are_bounded() {
        assert!(check_kind("workflow").is_ok());
        assert!(check_kind("nocodb.mirror").is_ok());
        for bad in ["", "Workflow", "a b", "x\n", &"k".repeat(65)] {
            assert!(check_kind(bad).is_err(), "{bad:?}");
        }
        assert!(check_text("key", "hook:42", 256).is_ok());
        assert!(check_text("key", "a\u{0}b", 256).is_err());
        let long = "é".repeat(MAX_ERROR_CHARS + 5);
        let stored = stored_error(&long);
        assert_eq!(stored.chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(stored_error("short"), "short");
    }

    /// The claim reads the partial index of queued jobs, never every job of the kind:
    /// its cost must not grow with the executions kept in the table.
    #[test]
    fn the_sqlite_claim_reads_only_queued_jobs() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for m in crate::migrate::MIGRATIONS {
            conn.execute_batch(m.sqlite).unwrap();
        }
        let sql = format!("EXPLAIN QUERY PLAN {}", CLAIM_SQLITE.replace('$', "?"));
        let mut stmt = conn.prepare(&sql).unwrap();
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params!["w", 1, 2, r#"["workflow"]"#], |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            plan.iter().any(|l| l.contains("USING INDEX jobs_queued")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{plan:?}");
    }
}
