//! Executions as an operator sees them: starting a manual run ([`enqueue_manual`]),
//! listing runs ([`list`]) and one run with its step timeline ([`show`]). Reads the
//! store's `jobs` and `job_steps` tables (owned by the store's `jobs` and `journal`
//! modules); the one write is the run's job, enqueued through an audited commit.
//!
//! Invariants: a manual run is pinned to the active version of an enabled workflow at
//! the moment it is asked for (what the operator reviewed is what runs, even if a newer
//! version is approved while it waits); a workflow that cannot run is refused and nothing
//! is written. Listings show ids, names, states, times and the stored (scrubbed) error
//! text, never a step's output.

use serde_json::{Value, json};
use stockade_core::Actor;
use stockade_store::{Columns, FromRow, JobState, StepRecord, StepStatus, Store, sql_params};

use crate::definition::Workflow;
use crate::exec::{ExecutionPayload, JOB_KIND};
use crate::registry::{self, RegistryError};

/// Why a run could not be started or read. A refusal writes nothing.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "workflow {0:?} cannot run: it is unknown, disabled, or has no active version (`stockade workflow list`); nothing was enqueued"
    )]
    NotRunnable(String),
    #[error(
        "the inputs must be a JSON object of the workflow's declared inputs: {0}; nothing was enqueued"
    )]
    BadInputs(String),
    #[error("no execution {0:?} (`stockade workflow runs` lists them)")]
    UnknownRun(String),
    #[error("refused: {0}; nothing was written")]
    Refused(String),
    #[error("--from-step: {0}; nothing was enqueued")]
    BadStep(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] stockade_store::StoreError),
}

/// A manual run that was enqueued: its execution id and the version it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub execution: String,
    pub version: i64,
}

/// Enqueue a manual run of `name`'s active version with `inputs` (a JSON object; only
/// the declared inputs, and every required one), as `actor` (audited).
pub async fn enqueue_manual(
    store: &Store,
    actor: &Actor,
    name: &str,
    inputs: Value,
) -> Result<Started, RunError> {
    let Some((version, text)) = registry::runnable(store, name).await? else {
        return Err(RunError::NotRunnable(name.to_owned()));
    };
    let workflow = Workflow::parse(&text).map_err(|_| RunError::NotRunnable(name.to_owned()))?;
    check_inputs(&workflow, &inputs)?;
    let mut payload = ExecutionPayload::new(name, inputs, json!({ "kind": "manual" }));
    payload.version = Some(version);
    let job = store.enqueue(actor, &payload.job()).await?;
    Ok(Started {
        execution: job.id,
        version,
    })
}

fn check_inputs(workflow: &Workflow, inputs: &Value) -> Result<(), RunError> {
    let Some(given) = inputs.as_object() else {
        return Err(RunError::BadInputs("not an object".into()));
    };
    if let Some(unknown) = given.keys().find(|k| !workflow.inputs.contains_key(*k)) {
        return Err(RunError::BadInputs(format!("{unknown:?} is not declared")));
    }
    let missing = workflow
        .inputs
        .iter()
        .find(|(k, spec)| spec.required && spec.default.is_none() && !given.contains_key(*k));
    if let Some((k, _)) = missing {
        return Err(RunError::BadInputs(format!("{k:?} is required")));
    }
    Ok(())
}

/// One execution, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub workflow: String,
    /// The version it is pinned to (`None`: the active one when it runs, e.g. an error
    /// workflow's run).
    pub version: Option<i64>,
    pub state: JobState,
    pub attempts: i64,
    pub max_attempts: i64,
    pub created_at_ms: i64,
    /// When its first step started.
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// The stored (scrubbed) error of a failed run.
    pub error: Option<String>,
}

impl RunRow {
    /// Milliseconds from the first step's start to the end (`None` while running).
    pub fn took_ms(&self) -> Option<i64> {
        Some(self.finished_at_ms? - self.started_at_ms.unwrap_or(self.created_at_ms))
    }
}

impl FromRow for RunRow {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        let id = c.get()?;
        let payload: ExecutionPayload = c.json("a workflow job's payload")?;
        Ok(RunRow {
            id,
            workflow: payload.workflow,
            version: payload.version,
            state: c.parse("a job's state")?,
            attempts: c.get()?,
            max_attempts: c.get()?,
            created_at_ms: c.get()?,
            started_at_ms: c.get()?,
            finished_at_ms: c.get()?,
            error: c.get()?,
        })
    }
}

/// The columns of a [`RunRow`], then `FROM jobs`.
macro_rules! select_runs {
    ($where:literal) => {
        concat!(
            "SELECT id, payload, state, attempts, max_attempts, created_at_ms,
                    (SELECT MIN(s.started_at_ms) FROM job_steps s WHERE s.job_id = jobs.id),
                    finished_at_ms, last_error
               FROM jobs ",
            $where
        )
    };
}

/// The newest `limit` executions, newest first, of `name` (all workflows without it) in
/// `state` (any without it).
pub async fn list(
    store: &Store,
    name: Option<&str>,
    state: Option<JobState>,
    limit: i64,
) -> Result<Vec<RunRow>, RunError> {
    let state = state.map_or("", JobState::as_str);
    let limit = limit.clamp(1, 10_000);
    // One workflow's runs are read through the `jobs_workflow` index (migration 0012).
    let rows = match name {
        Some(name) => {
            store
                .query_as(
                    select_runs!(
                        "WHERE workflow = $1 AND kind = $2 AND ($3 = '' OR state = $3)
                          ORDER BY created_at_ms DESC, id DESC LIMIT $4"
                    ),
                    sql_params![name, JOB_KIND, state, limit],
                )
                .await?
        }
        None => {
            store
                .query_as(
                    select_runs!(
                        "WHERE kind = $1 AND ($2 = '' OR state = $2)
                          ORDER BY created_at_ms DESC, id DESC LIMIT $3"
                    ),
                    sql_params![JOB_KIND, state, limit],
                )
                .await?
        }
    };
    Ok(rows)
}

/// One page of executions, newest first, like [`list`], starting after `after` (the
/// `(created_at_ms, id)` of the previous page's last row; `None`: the newest). Keyset
/// paging on the same order as [`list`], so rows queued meanwhile never shift a page.
pub async fn list_after(
    store: &Store,
    name: Option<&str>,
    state: Option<JobState>,
    limit: i64,
    after: Option<(i64, &str)>,
) -> Result<Vec<RunRow>, RunError> {
    let state = state.map_or("", JobState::as_str);
    let limit = limit.clamp(1, 10_000);
    let (at, id) = after.unwrap_or((i64::MAX, ""));
    let rows = match name {
        Some(name) => {
            store
                .query_as(
                    select_runs!(
                        "WHERE workflow = $1 AND kind = $2 AND ($3 = '' OR state = $3)
                           AND (created_at_ms < $4 OR (created_at_ms = $4 AND id < $5))
                          ORDER BY created_at_ms DESC, id DESC LIMIT $6"
                    ),
                    sql_params![name, JOB_KIND, state, at, id, limit],
                )
                .await?
        }
        None => {
            store
                .query_as(
                    select_runs!(
                        "WHERE kind = $1 AND ($2 = '' OR state = $2)
                           AND (created_at_ms < $3 OR (created_at_ms = $3 AND id < $4))
                          ORDER BY created_at_ms DESC, id DESC LIMIT $5"
                    ),
                    sql_params![JOB_KIND, state, at, id, limit],
                )
                .await?
        }
    };
    Ok(rows)
}

/// How the step attempt `steps[i]` of a run in `state` reads in a timeline:
/// `succeeded`, `failed`, `running`, or `interrupted` — an attempt the journal still
/// holds as started (its worker died or lost its lease before it finished) once a later
/// attempt of the same step exists or the run is no longer running. The journal keeps
/// such an attempt as it was (the resume point reads it); only its label says what
/// became of it.
pub fn step_label(state: JobState, steps: &[StepRecord], i: usize) -> &'static str {
    let Some(s) = steps.get(i) else {
        return "unknown";
    };
    match s.status {
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::Running => {
            let superseded = steps
                .iter()
                .any(|o| o.step_id == s.step_id && o.attempt > s.attempt);
            if superseded || state != JobState::Running {
                "interrupted"
            } else {
                "running"
            }
        }
    }
}

/// One execution and every attempt of every step, in start order.
pub async fn show(store: &Store, id: &str) -> Result<(RunRow, Vec<StepRecord>), RunError> {
    let row: Option<RunRow> = store
        .query_one_as(
            select_runs!("WHERE kind = $1 AND id = $2"),
            sql_params![JOB_KIND, id],
        )
        .await?;
    let row = row.ok_or_else(|| RunError::UnknownRun(id.to_owned()))?;
    let steps = store.journal(id).await?;
    Ok((row, steps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_store::StepOutput;

    fn attempt(step: &str, attempt: i64, status: StepStatus) -> StepRecord {
        StepRecord {
            step_id: step.into(),
            attempt,
            token: attempt,
            status,
            started_at_ms: 0,
            finished_at_ms: None,
            output: StepOutput::None,
            error: None,
        }
    }

    #[test]
    fn an_attempt_cut_by_a_crash_reads_interrupted() {
        let steps = vec![
            attempt("a", 1, StepStatus::Succeeded),
            attempt("b", 1, StepStatus::Running),
            attempt("b", 2, StepStatus::Running),
        ];
        let labels = |state| -> Vec<&str> {
            (0..steps.len())
                .map(|i| step_label(state, &steps, i))
                .collect()
        };
        // Running: the latest attempt is in flight, the one before was cut.
        assert_eq!(
            labels(JobState::Running),
            ["succeeded", "interrupted", "running"]
        );
        // Queued again after its worker died, or finished: nothing is running.
        for state in [JobState::Queued, JobState::Failed, JobState::Cancelled] {
            assert_eq!(labels(state), ["succeeded", "interrupted", "interrupted"]);
        }
        assert_eq!(step_label(JobState::Running, &steps, 9), "unknown");
    }
}
