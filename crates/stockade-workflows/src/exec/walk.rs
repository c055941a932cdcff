//! Walking a workflow's steps: resume, attempts with retry, control steps and
//! `workflow.call` (see the parent module for the rules).
//!
//! Journal paths: a top-level step is its id; a control step's children are under
//! `PARENT/`, a `for_each` item's under `PARENT#INDEX/`, a sub-workflow's steps under
//! `CALL/`. Paths are what makes an idempotency key (`<execution>/<path>`), so they do
//! not depend on timing: the same step of the same item has the same key after a crash.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{Value, json};
// Due times and leases are on the clock the processes share (stockade_core::clock).
use stockade_core::clock::now_ms;
use stockade_store::{Backoff, StepOutcome, StepOutput, StepStarted, StepStatus, idempotency_key};

use super::error::{Attempt, ErrorClass, Failure, StepError};
use super::handlers::{Reach, StepCtx, StepDone, unsupported};
use super::{ExecError, Executor, Frame, Run};
use crate::definition::{Retry, RetryOn, Step};
use crate::expr::{self, Evaluated, ExprError};

/// Most items a `for_each` takes when it sets no `max_items`, and the ceiling of that.
pub const DEFAULT_MAX_ITEMS: usize = 100;
pub const MAX_ITEMS_CEILING: usize = 10_000;

/// Why a walk stopped early.
pub(crate) enum Flow {
    Failed(Failure),
    Abort(ExecError),
}

impl<E: Into<ExecError>> From<E> for Flow {
    fn from(e: E) -> Self {
        Flow::Abort(e.into())
    }
}

type Walk<'a> = Pin<Box<dyn Future<Output = Result<(), Flow>> + Send + 'a>>;

/// What a successful attempt did.
pub(super) enum Done {
    /// An effect step (or a call): its output and effects.
    Effect(StepDone),
    /// An effect step whose output derives from its `with` (`script`) and whose `with`
    /// carried buyer data: the whole output is buyer data.
    Derived(StepDone),
    /// `if:` was false.
    Skipped,
    /// A control step chose its branch.
    Decision(Decision),
}

/// A control step's choice, journaled as its output so the timeline shows it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Decision {
    If(bool),
    /// The case taken, `None` for `default`.
    Switch(Option<String>),
    ForEach(usize),
}

impl Decision {
    fn to_json(&self) -> Value {
        match self {
            Decision::If(b) => json!({ "branch": if *b { "then" } else { "else" } }),
            Decision::Switch(c) => json!({ "case": c }),
            Decision::ForEach(n) => json!({ "count": n }),
        }
    }

    fn from_json(kind: &str, v: &Value) -> Option<Decision> {
        match kind {
            "if" => Some(Decision::If(v.get("branch")?.as_str()? == "then")),
            "switch" => Some(Decision::Switch(v.get("case")?.as_str().map(str::to_owned))),
            "for_each" => Some(Decision::ForEach(
                usize::try_from(v.get("count")?.as_u64()?).ok()?,
            )),
            _ => None,
        }
    }
}

/// A step's retry policy.
struct Policy {
    attempts: i64,
    on: RetryOn,
    backoff: Backoff,
}

impl Policy {
    fn of(retry: Option<&Retry>) -> Policy {
        let Some(r) = retry else {
            return Policy {
                attempts: 1,
                on: RetryOn::Transient,
                backoff: Backoff::default(),
            };
        };
        let ms = |d: &Option<crate::yaml::Located<crate::duration::IsoDuration>>, dflt: i64| {
            d.as_ref().map_or(dflt, |d| {
                i64::try_from(d.value.duration.as_millis()).unwrap_or(i64::MAX)
            })
        };
        Policy {
            attempts: i64::from(r.attempts.value.clamp(1, 20)),
            on: r.on,
            backoff: Backoff {
                base_ms: ms(&r.initial, 1000),
                factor: 2,
                max_ms: ms(&r.max, 60_000),
                jitter_percent: if r.jitter { 100 } else { 0 },
            },
        }
    }
}

pub(super) fn expr_error(e: ExprError) -> StepError {
    StepError::new(ErrorClass::Expression, e.0)
}

impl Executor {
    /// Run `steps` in order under `prefix`; a failure stops at the first step without
    /// `continue_on_error`.
    pub(crate) fn run_steps<'a>(
        &'a self,
        run: &'a mut Run,
        frame: &'a mut Frame,
        steps: &'a [Step],
        prefix: String,
    ) -> Walk<'a> {
        Box::pin(async move {
            for step in steps {
                let path = format!("{prefix}{}", step.id.value);
                match self.run_step(run, frame, step, &path).await {
                    Ok(()) => {}
                    Err(Flow::Failed(f)) if step.continue_on_error => {
                        self.continue_after(run, frame, step, f).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    }

    /// `continue_on_error` after the retries: commit the failed attempt (if not yet) and
    /// give the step an output saying it failed.
    async fn continue_after(
        &self,
        run: &mut Run,
        frame: &mut Frame,
        step: &Step,
        f: Failure,
    ) -> Result<(), Flow> {
        if let Some(p) = &f.pending {
            let outcome = StepOutcome::Failed(f.error.stored());
            let record = p.record(&run.lease, &outcome)?;
            self.commit_run(run, &frame.actor, vec![record]).await?;
        }
        let output = json!({ "failed": true, "error": { "class": f.error.class.as_str() } });
        frame.scope.set_step_output(&step.id.value, output, &[]);
        Ok(())
    }

    /// One step: resume it, or run its attempts; then a control step's children.
    async fn run_step(
        &self,
        run: &mut Run,
        frame: &mut Frame,
        step: &Step,
        path: &str,
    ) -> Result<(), Flow> {
        let policy = Policy::of(step.retry.as_ref().or(frame.def.workflow.retry.as_ref()));
        let kind = step.uses.value.as_str();
        if let Some(r) = run.resume.committed(path).cloned() {
            match r.status {
                StepStatus::Succeeded => {
                    let pii = super::seal::pii_paths(frame, kind);
                    let decision = match &r.output {
                        StepOutput::Json(v) => match Decision::from_json(kind, v) {
                            Some(d) => Some(d),
                            None => {
                                frame.scope.set_step_output(&step.id.value, v.clone(), pii);
                                None
                            }
                        },
                        StepOutput::Sealed(bytes) => {
                            let row = format!("{}/{path}", run.lease.job_id);
                            // Sealed means buyer data: a derived output is all of it.
                            let pii = super::seal::output_pii(frame, kind, true);
                            if let Some(v) = self.opened_output(&row, bytes).await {
                                frame.scope.set_step_output(&step.id.value, v, pii);
                            }
                            None
                        }
                        StepOutput::None => None,
                    };
                    return match decision {
                        Some(d) => self.run_children(run, frame, step, path, d).await,
                        None => Ok(()),
                    };
                }
                StepStatus::Failed if r.attempt >= policy.attempts => {
                    let text = r.error.unwrap_or_default();
                    let class = ErrorClass::of_stored(&text);
                    let message = text.split_once(": ").map_or(text.as_str(), |(_, m)| m);
                    return Err(Flow::Failed(Failure {
                        step: path.to_owned(),
                        error: StepError::new(class, message),
                        attempts: r.attempt,
                        pending: None,
                    }));
                }
                _ => {}
            }
        }
        if kind == "wait" {
            self.heartbeat_if_due(run).await?;
            self.flush(run).await?;
            return self.wait(run, frame, step, path).await;
        }
        let reach = self.reach_of(kind);
        // A step reaching nothing outside the database journals its attempt whole, with
        // its effects, in the run's next commit; its number follows the journal's.
        let mut next = run
            .resume
            .committed(path)
            .map(|r| r.attempt)
            .into_iter()
            .chain(
                run.resume
                    .in_flight
                    .iter()
                    .filter(|s| s.step_id == path)
                    .map(|s| s.attempt),
            )
            .max()
            .unwrap_or(0)
            + 1;
        loop {
            self.heartbeat_if_due(run).await?;
            let attempt = match reach {
                Reach::Outside => {
                    self.flush(run).await?;
                    Attempt::journaled(self.store.start_step(&run.lease, path).await?)
                }
                Reach::Database | Reach::Nothing => {
                    if reach == Reach::Database && run.effects_buffered {
                        self.flush(run).await?;
                    }
                    Attempt {
                        started: StepStarted {
                            step_id: path.to_owned(),
                            attempt: next,
                            idempotency_key: idempotency_key(&run.lease.job_id, path),
                        },
                        unjournaled_since: Some(now_ms()),
                    }
                }
            };
            next = attempt.started.attempt + 1;
            match self
                .attempt(run, frame, step, path, &attempt.started)
                .await?
            {
                Ok(done) => {
                    return self
                        .commit_done(run, frame, step, path, &attempt, done)
                        .await;
                }
                Err(e)
                    if attempt.started.attempt < policy.attempts && e.class.retried(policy.on) =>
                {
                    let outcome = StepOutcome::Failed(e.stored());
                    let record = attempt.record(&run.lease, &outcome)?;
                    self.commit_run(run, &frame.actor, vec![record]).await?;
                    let delay = policy.backoff.delay_ms(attempt.started.attempt).max(0);
                    tokio::time::sleep(Duration::from_millis(u64::try_from(delay).unwrap_or(0)))
                        .await;
                }
                Err(e) => {
                    return Err(Flow::Failed(Failure {
                        step: path.to_owned(),
                        error: e,
                        attempts: attempt.started.attempt,
                        pending: Some(Box::new(attempt)),
                    }));
                }
            }
        }
    }

    /// What a step kind reaches (see [`Reach`]): control steps and `fail` nothing, a
    /// `workflow.call` is journaled like an outside step (its own steps decide for
    /// themselves), an unknown kind nothing (it fails as unsupported).
    pub(crate) fn reach_of(&self, kind: &str) -> Reach {
        match kind {
            "if" | "switch" | "for_each" | "fail" => Reach::Nothing,
            "workflow.call" | "wait" => Reach::Outside,
            _ => self
                .handlers
                .get(kind)
                .map_or(Reach::Nothing, |h| h.reach()),
        }
    }

    /// Commit a successful attempt with its effects (or buffer them for the run's next
    /// commit, for a step whose start was not journaled), then run a control step's
    /// children.
    async fn commit_done(
        &self,
        run: &mut Run,
        frame: &mut Frame,
        step: &Step,
        path: &str,
        attempt: &Attempt,
        done: Done,
    ) -> Result<(), Flow> {
        let derived = matches!(done, Done::Derived(_));
        let pii = super::seal::output_pii(frame, &step.uses.value, derived);
        let (output, plain, changes, decision) = match done {
            Done::Effect(d) | Done::Derived(d) => {
                let row = format!("{}/{path}", run.lease.job_id);
                let stored = self
                    .stored_output(frame, &row, !pii.is_empty(), &d.output)
                    .await;
                (stored, Some(d.output), d.changes, None)
            }
            Done::Skipped => (StepOutput::None, None, vec![], None),
            Done::Decision(d) => (StepOutput::Json(d.to_json()), None, vec![], Some(d)),
        };
        run.last_output = match &output {
            StepOutput::Json(v) => v.clone(),
            StepOutput::None | StepOutput::Sealed(_) => Value::Null,
        };
        let record = attempt.record(&run.lease, &StepOutcome::Succeeded(output))?;
        if attempt.unjournaled_since.is_some() {
            run.effects_buffered |= !changes.is_empty();
            run.buffered.push((frame.actor.clone(), record));
            run.buffered
                .extend(changes.into_iter().map(|c| (frame.actor.clone(), c)));
        } else {
            let mut all = Vec::with_capacity(changes.len() + 1);
            all.push(record);
            all.extend(changes);
            self.commit_run(run, &frame.actor, all).await?;
        }
        match (decision, plain) {
            (Some(d), _) => self.run_children(run, frame, step, path, d).await,
            (None, Some(v)) => {
                frame.scope.set_step_output(&step.id.value, v, pii);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn heartbeat_if_due(&self, run: &mut Run) -> Result<(), ExecError> {
        if run.lease.expires_at_ms.saturating_sub(now_ms()) < self.lease_ms * 2 / 3 {
            self.store.heartbeat(&mut run.lease, self.lease_ms).await?;
        }
        Ok(())
    }

    /// One attempt: `if`, `with`, then the step's work under its timeout. The outer
    /// error stops the run (a lost lease, a store failure); the inner one is the step's.
    async fn attempt(
        &self,
        run: &mut Run,
        frame: &mut Frame,
        step: &Step,
        path: &str,
        started: &StepStarted,
    ) -> Result<Result<Done, StepError>, ExecError> {
        if let Some(cond) = &step.condition {
            match expr::eval_condition(&self.env, &cond.value, &frame.scope) {
                Ok(true) => {}
                Ok(false) => return Ok(Ok(Done::Skipped)),
                Err(e) => return Ok(Err(expr_error(e))),
            }
        }
        let lease = run.lease.clone();
        let work = self.work(run, frame, step, path, started);
        let bounded = async {
            match step.timeout.as_ref() {
                Some(t) => match tokio::time::timeout(t.value.duration, work).await {
                    Ok(r) => r,
                    Err(_) => Ok(Err(StepError::new(
                        ErrorClass::Timeout,
                        format!("the step ran longer than its timeout {}", t.value),
                    ))),
                },
                None => work.await,
            }
        };
        tokio::select! {
            r = bounded => r,
            never = self.keep_alive(lease) => match never {},
        }
    }

    /// Heartbeat `lease` every third of the lease while a step runs (a step may take
    /// longer than the lease). Stops heartbeating once fenced: the step's commit will be
    /// refused anyway. Never returns; dropped with the step.
    async fn keep_alive(&self, mut lease: stockade_store::Lease) -> std::convert::Infallible {
        let every = Duration::from_millis(u64::try_from(self.lease_ms / 3).unwrap_or(1).max(1));
        loop {
            tokio::time::sleep(every).await;
            if let Err(stockade_store::StoreError::Fenced(_)) =
                self.store.heartbeat(&mut lease, self.lease_ms).await
            {
                return std::future::pending().await;
            }
        }
    }

    /// The step's own work by kind.
    async fn work(
        &self,
        run: &mut Run,
        frame: &mut Frame,
        step: &Step,
        path: &str,
        started: &StepStarted,
    ) -> Result<Result<Done, StepError>, ExecError> {
        let kind = step.uses.value.as_str();
        match kind {
            "if" | "switch" | "for_each" => {
                return Ok(self.decide(frame, step).map(Done::Decision));
            }
            "workflow.call" => return self.call(run, frame, step, path).await,
            _ => {}
        }
        let params = match &step.with {
            Some(w) => match eval_with(&self.env, &w.value, &frame.scope, kind) {
                Ok(p) => p,
                Err(e) => return Ok(Err(expr_error(e))),
            },
            None => Evaluated {
                value: json!({}),
                pii: false,
            },
        };
        if kind == "fail" {
            let message = params
                .for_sink(step.allow_pii.is_some())
                .map(|v| {
                    v.get("message").map_or_else(String::new, |m| match m {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                })
                .unwrap_or_else(|e| e.0);
            return Ok(Err(StepError::new(ErrorClass::Fail, message)));
        }
        let Some(handler) = self.handlers.get(kind) else {
            return Ok(Err(unsupported(kind)));
        };
        let def = &frame.def;
        let ctx = StepCtx {
            store: &self.store,
            execution: &run.lease.job_id,
            workflow: def.name(),
            version: def.version,
            step: path,
            idempotency_key: &started.idempotency_key,
            attempt: started.attempt,
            actor: &frame.actor,
            allow_pii: step.allow_pii.is_some(),
            permissions: &def.workflow.permissions,
        };
        let derived = params.pii && super::seal::derived_pii(kind).is_some();
        let done = handler.run(&ctx, &params).await;
        Ok(done.map(if derived { Done::Derived } else { Done::Effect }))
    }
}

/// A step's `with` evaluated, except its kind's [`Role::Code`] parameters, which stay
/// the literal text (a `{{` in a script is the script's own).
fn eval_with(
    env: &minijinja::Environment<'_>,
    node: &crate::yaml::Node,
    scope: &expr::Scope,
    kind: &str,
) -> Result<Evaluated, ExprError> {
    use crate::yaml::Node;
    let is_code = |name: &str| {
        crate::steps::find(kind).is_some_and(|k| {
            k.params
                .iter()
                .any(|p| p.name == name && p.role == crate::steps::Role::Code)
        })
    };
    let Node::Map(entries) = node else {
        return expr::eval_node(env, node, scope);
    };
    if !entries.iter().any(|(k, _)| is_code(&k.value)) {
        return expr::eval_node(env, node, scope);
    }
    let mut out = serde_json::Map::new();
    let mut pii = false;
    for (k, v) in entries {
        if let (true, Node::Str(text)) = (is_code(&k.value), &v.value) {
            out.insert(k.value.clone(), Value::String(text.clone()));
            continue;
        }
        let e = expr::eval_node(env, &v.value, scope)
            .map_err(|err| ExprError(format!("{}: {}", k.value, err.0)))?;
        pii |= e.pii;
        out.insert(k.value.clone(), e.value);
    }
    Ok(Evaluated {
        value: Value::Object(out),
        pii,
    })
}
