//! What a claimed execution passes before its first step: its concurrency limit and
//! its whole-execution timeout.
//!
//! # Concurrency
//! A workflow with `concurrency: {limit, key, on_limit}` is admitted to the key
//! `NAME:` + the SHA-256 of the key's evaluated value (the workflow's name when `key` is
//! absent) through [`Store::admit`], which holds across processes (see the store's
//! `jobs::ops`). The key is hashed so that an expression over buyer data never stores
//! that data on the job row. When the limit is full:
//! - `queue`: the job goes back to the queue for [`REQUEUE_MS`] without spending an
//!   attempt (lease bookkeeping, like a `wait`), and is admitted once a slot frees.
//!   Waiting jobs are not kept in arrival order.
//! - `skip`: the job ends `cancelled` with the reason in its error text (audited
//!   `job.skip`; `stockade workflow runs` shows it).
//! - `fail`: the job ends `failed` with a clear error (audited `job.fail`), but no error
//!   event is appended and no `on_error` workflow runs: a burst of triggers against a
//!   full limit is the limit doing its job, and must not become a burst of alerts.
//!
//! # Timeout
//! `timeout` bounds the whole execution measured from its first claim (`jobs.started_at_ms`),
//! across resumes, retries of the job and durable waits: a resumed execution only gets
//! what is left, and one resumed after its deadline fails at once with class `timeout`
//! through the normal failure path (error event, `on_error`).

use std::time::Duration;

use serde_json::Value;
// Due times and leases are on the clock the processes share (stockade_core::clock).
use stockade_core::clock::now_ms;
use stockade_store::Admission;

use super::error::Failure;
use super::{ErrorClass, ExecError, Executor, Frame, Run, RunOutcome, StepError};
use crate::definition::OnLimit;
use crate::expr;

/// How long a job waiting for a concurrency slot stays in the queue before it asks again.
pub const REQUEUE_MS: i64 = 1_000;

/// What the gate decided.
pub(crate) enum Gate {
    /// Run the steps, within this much time (`None`: no timeout).
    Run(Option<Duration>),
    /// The run ends here with this outcome (limit reached; already written).
    Done(RunOutcome),
    /// The execution fails through the normal path (its deadline passed, its key did
    /// not evaluate).
    Fail(Failure),
}

fn failure(class: ErrorClass, message: String) -> Failure {
    Failure {
        step: String::new(),
        error: StepError::new(class, message),
        attempts: 1,
        pending: None,
    }
}

impl Executor {
    pub(crate) async fn gate(&self, run: &Run, frame: &Frame) -> Result<Gate, ExecError> {
        let workflow = &frame.def.workflow;
        if let Some(c) = &workflow.concurrency {
            let value = match &c.key {
                None => Value::String(String::new()),
                Some(k) => match expr::eval_string(&self.env, &k.value, &frame.scope) {
                    Ok(v) => v.value,
                    Err(e) => {
                        return Ok(Gate::Fail(failure(
                            ErrorClass::Expression,
                            format!("concurrency.key: {e}"),
                        )));
                    }
                },
            };
            let digest =
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.to_string().as_bytes());
            let key = format!(
                "{}:{}",
                frame.def.name(),
                hex::encode(&digest.as_ref()[..16])
            );
            let limit = i64::from(c.limit.value);
            if self
                .store
                .admit(&frame.actor, &run.lease, &key, limit)
                .await?
                == Admission::Full
            {
                return self
                    .limited(run, frame, c.on_limit, limit)
                    .await
                    .map(Gate::Done);
            }
        }
        let Some(timeout) = &workflow.timeout else {
            return Ok(Gate::Run(None));
        };
        let started = self
            .store
            .job_started_at(&run.lease.job_id)
            .await?
            .unwrap_or_else(now_ms);
        let budget = i64::try_from(timeout.value.duration.as_millis()).unwrap_or(i64::MAX);
        let left = budget.saturating_sub(now_ms().saturating_sub(started));
        if left <= 0 {
            return Ok(Gate::Fail(failure(
                ErrorClass::Timeout,
                format!(
                    "the execution ran longer than its timeout {} (counted from its first start)",
                    timeout.value
                ),
            )));
        }
        Ok(Gate::Run(Some(Duration::from_millis(
            u64::try_from(left).unwrap_or(0),
        ))))
    }

    async fn limited(
        &self,
        run: &Run,
        frame: &Frame,
        on_limit: OnLimit,
        limit: i64,
    ) -> Result<RunOutcome, ExecError> {
        let reason =
            format!("concurrency limit reached: {limit} execution(s) of this key were running");
        match on_limit {
            OnLimit::Queue => {
                let later = now_ms().saturating_add(REQUEUE_MS);
                self.store.defer_until(&run.lease, later).await?;
            }
            OnLimit::Skip => {
                let skip = run.lease.skip_change(&format!("skipped: {reason}"));
                self.store.commit(&frame.actor, vec![skip]).await?;
            }
            OnLimit::Fail => {
                self.store
                    .fail(
                        &frame.actor,
                        &run.lease,
                        &format!("failed: {reason} (on_limit: fail)"),
                    )
                    .await?;
            }
        }
        Ok(RunOutcome::Limited(on_limit))
    }
}
