//! `wait`: a durable pause for a `duration` or `until` a time.
//!
//! # How it is durable
//! - The first time the step runs, its due time is computed once and committed as its
//!   own journal entry `<path>~due` (output `{"due_ms": …}`), fenced like any step.
//! - While the due time is in the future, the run stops with [`ExecError::Deferred`]: the
//!   executor puts the job back in the queue until then ([`Store::defer_until`]), so the
//!   worker is free for other executions and the claim's attempt is given back.
//! - Whoever claims the job next (this process or another, after a restart) resumes from
//!   the journal: the steps before the wait are skipped, the recorded due time is read
//!   back (never recomputed, so a restart does not lengthen the wait), and once it has
//!   passed the step succeeds with `{"waited_until_ms": …, "waited_until": RFC 3339}`.
//!
//! Invariants: the due time is written before the job is deferred; a `wait` never holds a
//! lease while it waits. `event` waits are not run by this build (a typed `unsupported`
//! error). `timeout` bounds the wait: a due time further away than `timeout` fails the
//! step with class `timeout` instead of waiting.
//!
//! [`Store::defer_until`]: stockade_store::Store::defer_until

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
// Due times and leases are on the clock the processes share (stockade_core::clock).
use stockade_core::clock::now_ms;
use stockade_store::{StepOutcome, StepOutput, StepStatus};

use super::error::{ErrorClass, Failure, StepError};
use super::walk::{Flow, expr_error};
use super::{ExecError, Executor, Frame, Run};
use crate::definition::Step;
use crate::expr;

/// The longest wait accepted (a year), so a typo cannot park an execution forever.
pub const MAX_WAIT_MS: i64 = 366 * 24 * 3600 * 1000;

fn invalid(message: impl Into<String>) -> StepError {
    StepError::new(ErrorClass::Invalid, message)
}

/// An ISO-8601 duration parameter in milliseconds.
fn duration_ms(value: &Value, key: &str) -> Result<Option<i64>, StepError> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let d = crate::duration::parse(s.trim())
                .map_err(|e| invalid(format!("wait: `{key}`: {e}")))?;
            Ok(Some(
                i64::try_from(d.duration.as_millis()).unwrap_or(i64::MAX),
            ))
        }
        Some(_) => Err(invalid(format!(
            "wait: `{key}` must be an ISO-8601 duration like PT30S"
        ))),
    }
}

/// The `until` parameter: an RFC 3339 time, or milliseconds since the epoch.
fn until_ms(value: &Value) -> Result<Option<i64>, StepError> {
    match value.get("until") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid("wait: `until` must be a whole number of milliseconds")),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| {
                invalid("wait: `until` must be an RFC 3339 time like 2026-01-31T08:00:00Z")
            }),
        Some(_) => Err(invalid("wait: `until` must be an RFC 3339 time")),
    }
}

/// When a wait with the evaluated parameters `value`, first run at `now`, is due.
pub(crate) fn due_at(value: &Value, now: i64) -> Result<i64, StepError> {
    if value.get("event").is_some_and(|v| !v.is_null()) {
        return Err(StepError::new(
            ErrorClass::Unsupported,
            "wait: `event` waits are not supported by this build; wait for a duration or until a time",
        ));
    }
    let due = match (duration_ms(value, "duration")?, until_ms(value)?) {
        (Some(d), None) => now.saturating_add(d),
        (None, Some(u)) => u,
        (Some(_), Some(_)) => return Err(invalid("wait: give `duration` or `until`, not both")),
        (None, None) => return Err(invalid("wait needs `duration` or `until`")),
    };
    let limit = duration_ms(value, "timeout")?
        .unwrap_or(MAX_WAIT_MS)
        .min(MAX_WAIT_MS);
    if due.saturating_sub(now) > limit {
        return Err(StepError::new(
            ErrorClass::Timeout,
            format!(
                "wait: due in {} s, longer than its bound of {} s",
                due.saturating_sub(now) / 1000,
                limit / 1000
            ),
        ));
    }
    Ok(due)
}

/// The journal path holding a wait's due time.
fn marker(path: &str) -> String {
    format!("{path}~due")
}

impl Executor {
    /// Run a `wait` step (not yet succeeded): record its due time once, defer the job
    /// until then, and succeed once it has passed.
    pub(super) async fn wait(
        &self,
        run: &mut Run,
        frame: &mut Frame,
        step: &Step,
        path: &str,
    ) -> Result<(), Flow> {
        let mark = marker(path);
        let recorded = run
            .resume
            .committed(&mark)
            .filter(|r| r.status == StepStatus::Succeeded)
            .and_then(|r| match &r.output {
                StepOutput::Json(v) => v.get("due_ms").and_then(Value::as_i64),
                _ => None,
            });
        let due = match recorded {
            Some(due) => due,
            None => {
                let decided = self.decide_wait(frame, step);
                if let Ok(None) = decided {
                    // `if:` was false: the step succeeds without an output.
                    let started = self.store.start_step(&run.lease, path).await?;
                    let skipped = StepOutcome::Succeeded(StepOutput::None);
                    self.store
                        .commit_step(&frame.actor, &run.lease, &started, &skipped, vec![])
                        .await?;
                    return Ok(());
                }
                let started = self.store.start_step(&run.lease, &mark).await?;
                match decided {
                    Ok(due) => {
                        let due = due.unwrap_or_else(now_ms);
                        let output =
                            StepOutcome::Succeeded(StepOutput::Json(json!({ "due_ms": due })));
                        self.store
                            .commit_step(&frame.actor, &run.lease, &started, &output, vec![])
                            .await?;
                        due
                    }
                    Err(error) => {
                        return Err(Flow::Failed(Failure {
                            step: path.to_owned(),
                            error,
                            attempts: started.attempt,
                            pending: Some(Box::new(super::error::Attempt::journaled(started))),
                        }));
                    }
                }
            }
        };
        if now_ms() < due {
            return Err(Flow::Abort(ExecError::Deferred(due)));
        }
        let output = json!({
            "waited_until_ms": due,
            "waited_until": DateTime::<Utc>::from_timestamp_millis(due)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
        });
        let started = self.store.start_step(&run.lease, path).await?;
        let done = StepOutcome::Succeeded(StepOutput::Json(output.clone()));
        self.store
            .commit_step(&frame.actor, &run.lease, &started, &done, vec![])
            .await?;
        frame.scope.set_step_output(&step.id.value, output, &[]);
        Ok(())
    }

    /// The due time from the step's `if` and `with` (`None`: `if` was false).
    fn decide_wait(&self, frame: &Frame, step: &Step) -> Result<Option<i64>, StepError> {
        if let Some(cond) = &step.condition
            && !expr::eval_condition(&self.env, &cond.value, &frame.scope).map_err(expr_error)?
        {
            return Ok(None);
        }
        let params = match &step.with {
            Some(w) => {
                expr::eval_node(&self.env, &w.value, &frame.scope)
                    .map_err(expr_error)?
                    .value
            }
            None => json!({}),
        };
        due_at(&params, now_ms()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_come_from_a_duration_or_a_time_within_the_bound() {
        assert_eq!(due_at(&json!({"duration": "PT1S"}), 1000).unwrap(), 2000);
        assert_eq!(
            due_at(&json!({"until": "1970-01-01T00:00:05Z"}), 0).unwrap(),
            5000
        );
        assert_eq!(due_at(&json!({"until": 7}), 0).unwrap(), 7);
        let late = due_at(&json!({"duration": "PT1H", "timeout": "PT1M"}), 0).unwrap_err();
        assert_eq!(late.class, ErrorClass::Timeout);
        let both = due_at(&json!({"duration": "PT1S", "until": 5}), 0).unwrap_err();
        assert_eq!(both.class, ErrorClass::Invalid);
        assert_eq!(
            due_at(&json!({}), 0).unwrap_err().class,
            ErrorClass::Invalid
        );
        let event = due_at(&json!({"event": "order.created"}), 0).unwrap_err();
        assert_eq!(event.class, ErrorClass::Unsupported);
        assert!(due_at(&json!({"duration": "P400D"}), 0).is_err());
    }
}
