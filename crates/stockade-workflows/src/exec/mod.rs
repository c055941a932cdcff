//! The executor: runs a claimed workflow job step by step on the store's job queue and
//! journal. The only I/O part of this crate (besides nothing: the definition, expression
//! and lint modules stay pure).
//!
//! # How a job runs
//! - A job of kind [`JOB_KIND`] carries an [`ExecutionPayload`] (workflow name, inputs,
//!   trigger data, error depth). [`Executor::run_claimed`] resolves the definition through
//!   [`Definitions`] and walks its steps ([`walk`]).
//! - Each step: skipped when the journal says it succeeded (its output feeds the scope
//!   again), else started ([`Store::start_step`], fenced), its `if` and `with` evaluated
//!   with the strict expressions, run (under its `timeout`), and committed: its output,
//!   its effects and their audit rows in ONE fenced commit with the actor
//!   `workflow:NAME@VERSION/EXECUTION`. A stale lease writes nothing ([`ExecError::Fenced`]).
//! - **Heartbeats.** Before a step once a third of the lease has passed, and every third
//!   of the lease while a step runs, so a step longer than the lease keeps its job.
//! - `retry` (the step's, else the workflow's) re-runs a failed step in place, each
//!   attempt journaled, with exponential backoff and jitter, for the classes its `on`
//!   names. Only once the retries are exhausted does `continue_on_error` apply (record the
//!   failure, go on). Attempts count across claims: a crash spends one.
//! - A step that fails for good fails the job: the failed attempt, the job's failure, a
//!   typed [`Event::WorkflowFailed`] and — when the workflow names an `on_error` workflow
//!   and this is not itself an error workflow — the error workflow's job (with the event
//!   as its trigger), all in one fenced commit.
//! - **No error loop by construction:** an error workflow's job carries
//!   `error_depth: 1`; when it fails, only the event is appended (the built-in alert path
//!   turns it into one alert) and nothing is enqueued, whatever its own `on_error` says.
//!
//! Invariants: every write is a fenced, audited commit; error text is built from typed
//! [`StepError`]s and scrubbed before it is stored; no value of the scope reaches a log.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stockade_core::Actor;
use stockade_core::event::{Event, WorkflowFailure};
use stockade_core::time::now_ms;
use stockade_store::{
    AuditDetails, AuditEntry, Change, Lease, NewJob, ResumePoint, StepOutcome, Store, StoreError,
};

use crate::definition::{BUILTIN_ERROR_WORKFLOW, Workflow};
use crate::expr::Scope;

mod alert;
mod control;
mod error;
mod gate;
mod handlers;
mod http;
mod nocodb;
mod orders;
mod pull;
mod reads;
mod reconcile;
mod script;
mod seal;
mod set_stock;
mod stock;
mod wait;
mod walk;

pub use alert::{AlertChannels, AlertSend, named_channels};
use error::Failure;
pub use error::{ErrorClass, StepError, scrubbed};
pub use gate::REQUEUE_MS;
pub use handlers::{AuditNote, Reach, StepCtx, StepDone, StepFuture, StepHandler};
pub use http::HttpRequest;
pub use nocodb::{NocoDb, NocoOp};
pub use orders::OrderSteps;
pub use pull::PullOrders;
pub use reads::{ExecutionsCount, OrdersSummary};
pub use reconcile::ReconcileReport;
pub use script::{ScriptLimits, ScriptSettings, ScriptStep};
pub use seal::{SEALED_KEY, seal_trigger};
pub use set_stock::SetStock;
pub use stock::{StockAdjust, StockGet};

/// The job kind of a workflow execution.
pub const JOB_KIND: &str = "workflow";
/// How deep `workflow.call` may nest at run time (lint refuses cycles before that).
pub const MAX_CALL_DEPTH: u32 = 8;

/// A workflow version the executor can run.
#[derive(Debug, Clone)]
pub struct Definition {
    pub workflow: Workflow,
    pub version: i64,
}

impl Definition {
    pub fn name(&self) -> &str {
        &self.workflow.name.value
    }
}

/// Where the executor finds workflows by name: the job's own, a `workflow.call`'s
/// sub-workflow and an `on_error` workflow (the active version of each).
pub trait Definitions: Send + Sync {
    /// The active version of `name`.
    fn get(&self, name: &str) -> Option<Arc<Definition>>;

    /// Version `version` of `name` (a job pinned to a version runs that one or none).
    fn version(&self, name: &str, version: i64) -> Option<Arc<Definition>> {
        self.get(name).filter(|d| d.version == version)
    }
}

/// Definitions held in memory (tests; a fixed set of workflows).
#[derive(Debug, Default, Clone)]
pub struct Catalog(BTreeMap<String, Arc<Definition>>);

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, workflow: Workflow, version: i64) -> Self {
        self.0.insert(
            workflow.name.value.clone(),
            Arc::new(Definition { workflow, version }),
        );
        self
    }
}

impl Definitions for Catalog {
    fn get(&self, name: &str) -> Option<Arc<Definition>> {
        self.0.get(name).cloned()
    }
}

/// A workflow job's payload. Identifiers and plain data only (no buyer data in clear: a
/// trigger carrying buyer data is sealed with [`seal_trigger`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionPayload {
    pub workflow: String,
    /// The version to run (`None`: the active one).
    pub version: Option<i64>,
    pub inputs: Value,
    pub trigger: Value,
    /// 0 for an ordinary execution, 1 for an error workflow's: an error workflow that
    /// fails enqueues nothing.
    pub error_depth: u32,
}

impl ExecutionPayload {
    pub fn new(workflow: &str, inputs: Value, trigger: Value) -> Self {
        ExecutionPayload {
            workflow: workflow.to_owned(),
            version: None,
            inputs,
            trigger,
            error_depth: 0,
        }
    }

    /// The job that runs this execution.
    pub fn job(&self) -> NewJob {
        NewJob::new(JOB_KIND, serde_json::to_value(self).unwrap_or(Value::Null))
    }
}

/// How a run ended (a job that was fenced off returns [`ExecError::Fenced`] instead).
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Succeeded,
    /// The job failed; the event that was appended.
    Failed(WorkflowFailure),
    /// A `wait` step is not due yet: the job is back in the queue until this time
    /// (milliseconds since the epoch) and resumes at the wait.
    Waiting(i64),
    /// The concurrency limit was full: the job went back to the queue (`queue`), ended
    /// cancelled (`skip`) or failed without an error event (`fail`).
    Limited(crate::definition::OnLimit),
}

/// Why a run stopped without deciding the job's outcome. Nothing of the failed commit
/// was written; the job stays with whoever holds its lease (or the reaper).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("refused: this worker no longer holds the job's lease; nothing was written")]
    Fenced,
    #[error(transparent)]
    Store(StoreError),
    /// Internal: a `wait` step is not due until this time. [`Executor::run_claimed`]
    /// defers the job and answers [`RunOutcome::Waiting`]; it never returns this.
    #[error("the execution waits until {0} (ms since the epoch)")]
    Deferred(i64),
}

impl From<StoreError> for ExecError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Fenced(_) => ExecError::Fenced,
            other => ExecError::Store(other),
        }
    }
}

/// The actor of a run: `workflow:NAME@VERSION/EXECUTION`.
pub fn actor(name: &str, version: i64, execution: &str) -> Actor {
    Actor::Workflow(format!("{name}@{version}/{execution}"))
}

/// The executor: step handlers, definitions and the lease length it heartbeats with.
pub struct Executor {
    store: Store,
    definitions: Arc<dyn Definitions>,
    handlers: BTreeMap<String, Arc<dyn StepHandler>>,
    env: minijinja::Environment<'static>,
    lease_ms: i64,
    /// Seals step outputs holding buyer data (none: such outputs are not stored).
    vault: Option<Arc<stockade_vault::Vault>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("lease_ms", &self.lease_ms)
            .finish_non_exhaustive()
    }
}

/// One run's state shared by every frame: the lease, the journal's resume point, and
/// what waits for the run's next commit.
pub(crate) struct Run {
    pub lease: Lease,
    pub resume: ResumePoint,
    /// Records and effects of finished attempts of steps that reach nothing outside the
    /// database ([`Reach`] `Nothing`/`Database`), with their actor, not committed yet: they
    /// go with the run's next commit (the next outside step's start is preceded by it,
    /// the job's end includes it). Lost with the process, they are simply re-run: nothing
    /// of them left the database.
    pub buffered: Vec<(Actor, Change)>,
    /// Some of `buffered` are steps' effects (not only journal records): a step that
    /// reads the database commits them first.
    pub effects_buffered: bool,
    /// The output of the last step that succeeded in this run, as journaled (`null` when
    /// it stored none, or sealed it): what a webhook with `respond: result` answers.
    pub last_output: Value,
}

impl Run {
    fn new(lease: Lease, resume: ResumePoint) -> Run {
        Run {
            lease,
            resume,
            buffered: Vec::new(),
            effects_buffered: false,
            last_output: Value::Null,
        }
    }

    /// What waited for the next commit, taken for it.
    pub(crate) fn take_buffered(&mut self) -> Vec<(Actor, Change)> {
        self.effects_buffered = false;
        std::mem::take(&mut self.buffered)
    }
}

/// Commit `changes` as `actor` after `buffered` (earlier steps' records and effects that
/// waited, each with its own author: a `workflow.call`'s steps are its own actor's, a
/// webhook's enqueue its API key's), all in one transaction.
pub(crate) async fn commit_after(
    store: &Store,
    buffered: Vec<(Actor, Change)>,
    actor: &Actor,
    changes: Vec<Change>,
) -> Result<(), StoreError> {
    let mut all = Vec::with_capacity(buffered.len() + changes.len());
    for (who, change) in buffered {
        all.push(if who == *actor {
            change
        } else {
            change.by(&who)
        });
    }
    all.extend(changes);
    if all.is_empty() {
        return Ok(());
    }
    store.commit(actor, all).await.map(|_| ())
}

/// One workflow's scope within a run (the job's own, or a `workflow.call`'s).
pub(crate) struct Frame {
    pub def: Arc<Definition>,
    pub actor: Actor,
    pub scope: Scope,
    pub depth: u32,
}

impl Frame {
    fn new(
        def: Arc<Definition>,
        execution: &str,
        inputs: &Value,
        trigger: Value,
        depth: u32,
    ) -> Frame {
        let mut given = inputs.as_object().cloned().unwrap_or_default();
        for (name, spec) in &def.workflow.inputs {
            if let (false, Some(d)) = (given.contains_key(name), &spec.default) {
                given.insert(name.clone(), d.value.clone());
            }
        }
        let mut scope = Scope::default();
        scope.set("inputs", Value::Object(given));
        scope.set("trigger", trigger);
        scope.set("steps", json!({}));
        scope.set(
            "execution",
            json!({ "id": execution, "workflow": def.name(), "version": def.version }),
        );
        Frame {
            actor: actor(def.name(), def.version, execution),
            def,
            scope,
            depth,
        }
    }
}

impl Executor {
    /// An executor with the built-in handlers (`audit.note`, `alert.send`, `stock.get`,
    /// `stock.adjust`, `wait`, the order reads and the report reads `orders.summary`,
    /// `executions.count`, `stock.reconcile_report`) and a 30 s lease;
    /// [`Executor::with_services`] adds the ones that need the egress gateway and the
    /// vault, [`Executor::with_sync`] `marketplace.pull_orders`.
    pub fn new(store: Store, definitions: Arc<dyn Definitions>) -> Self {
        let mut handlers: BTreeMap<String, Arc<dyn StepHandler>> = BTreeMap::new();
        handlers.insert("audit.note".into(), Arc::new(AuditNote));
        handlers.insert("alert.send".into(), Arc::new(AlertSend::default()));
        handlers.insert("stock.get".into(), Arc::new(StockGet));
        handlers.insert("stock.adjust".into(), Arc::new(StockAdjust));
        let orders = |many| Arc::new(OrderSteps { vault: None, many });
        handlers.insert("order.get".into(), orders(false));
        handlers.insert("marketplace.fetch_orders".into(), orders(true));
        handlers.insert("marketplace.set_stock".into(), Arc::new(SetStock));
        handlers.insert("script".into(), Arc::new(ScriptStep::default()));
        handlers.insert("unsupported".into(), Arc::new(handlers::UnsupportedStep));
        handlers.insert("orders.summary".into(), Arc::new(OrdersSummary));
        handlers.insert("executions.count".into(), Arc::new(ExecutionsCount));
        handlers.insert("stock.reconcile_report".into(), Arc::new(ReconcileReport));
        Executor {
            store,
            definitions,
            handlers,
            env: crate::expr::environment(),
            lease_ms: 30_000,
            vault: None,
        }
    }

    /// Register the steps that reach outside the database through the process's egress
    /// gateway and vault (`http.request`, `nocodb.*`), let the order steps decrypt buyer fields, and
    /// seal step outputs holding buyer data under the vault.
    pub fn with_services(
        mut self,
        egress: stockade_egress::Gateway,
        vault: Arc<stockade_vault::Vault>,
    ) -> Self {
        self.vault = Some(vault.clone());
        let orders = |many| {
            Arc::new(OrderSteps {
                vault: Some(vault.clone()),
                many,
            })
        };
        self.handlers.insert("order.get".into(), orders(false));
        self.handlers
            .insert("marketplace.fetch_orders".into(), orders(true));
        for op in [NocoOp::List, NocoOp::Insert, NocoOp::Update, NocoOp::Delete] {
            let handler = Arc::new(NocoDb::new(egress.clone(), vault.clone(), op));
            self.handlers.insert(op.kind().into(), handler);
        }
        self.with_handler("http.request", Arc::new(HttpRequest { egress, vault }))
    }

    /// Run `script` steps with these default limits and maxima.
    pub fn with_script(self, settings: ScriptSettings) -> Self {
        self.with_handler("script", Arc::new(ScriptStep::new(settings)))
    }

    /// Run `marketplace.pull_orders` on the process's sync engine (its ingest path).
    pub fn with_sync(self, sync: stockade_sync::SyncEngine) -> Self {
        self.with_handler("marketplace.pull_orders", Arc::new(PullOrders { sync }))
    }

    /// Check `alert.send`'s `channel` against these configured channel names at run time.
    pub fn with_alert_channels(self, channels: AlertChannels) -> Self {
        let send = AlertSend {
            channels: Some(channels),
        };
        self.with_handler("alert.send", Arc::new(send))
    }

    /// Run `kind` steps with `handler` (a step kind the table knows).
    pub fn with_handler(mut self, kind: &str, handler: Arc<dyn StepHandler>) -> Self {
        self.handlers.insert(kind.to_owned(), handler);
        self
    }

    /// The lease length claims use: the run heartbeats before a step once a third of it
    /// has passed.
    pub fn lease_ms(mut self, ms: i64) -> Self {
        self.lease_ms = ms.max(1);
        self
    }

    /// Run a claimed workflow job to its end (or until its lease is lost).
    pub async fn run_claimed(&self, lease: Lease) -> Result<RunOutcome, ExecError> {
        let job = lease.job_id.clone();
        let outcome = self.run_claimed_inner(lease).await;
        let ended = match &outcome {
            Ok(RunOutcome::Succeeded | RunOutcome::Failed(_)) => true,
            Ok(RunOutcome::Limited(on_limit)) => *on_limit != crate::definition::OnLimit::Queue,
            _ => false,
        };
        if ended {
            // Whoever waits for this execution (a webhook answering with its result)
            // wakes now rather than on the next write.
            self.store.announce_finished(&job);
        }
        outcome
    }

    /// Run a job this process enqueued already claimed with `def`, the version its
    /// payload names: its journal is empty by construction, so it is not read. The
    /// enqueue is committed already ([`Store::enqueue_claimed`], `enqueue` is `None`), or
    /// it is `enqueue` — its author and the change from
    /// [`stockade_store::jobs::claimed_change`] (`required`) — and goes with the run's
    /// first commit, so an execution of steps that reach nothing outside the database is
    /// one transaction from its enqueue to its end. Returns how it ended and the output of
    /// its last successful step (see [`Run::last_output`]).
    pub async fn run_fresh(
        &self,
        lease: Lease,
        def: Arc<Definition>,
        payload: &ExecutionPayload,
        enqueue: Option<(Actor, Change)>,
    ) -> Result<(RunOutcome, Value), ExecError> {
        let job = lease.job_id.clone();
        let resume = ResumePoint {
            job_id: job.clone(),
            committed: vec![],
            in_flight: vec![],
        };
        let outcome = self
            .run_job_with(lease, def, payload, Some(resume), enqueue)
            .await;
        if let Ok((o, _)) = &outcome
            && !matches!(o, RunOutcome::Waiting(_))
            && *o != RunOutcome::Limited(crate::definition::OnLimit::Queue)
        {
            self.store.announce_finished(&job);
        }
        outcome
    }

    async fn run_claimed_inner(&self, lease: Lease) -> Result<RunOutcome, ExecError> {
        let payload: Result<ExecutionPayload, _> = serde_json::from_value(lease.payload.clone());
        let (payload, def) = match payload {
            Ok(p) => {
                let def = match p.version {
                    Some(v) => self.definitions.version(&p.workflow, v),
                    None => self.definitions.get(&p.workflow),
                };
                (p, def)
            }
            Err(_) => (ExecutionPayload::default(), None),
        };
        match def {
            Some(def) => self.run_job(lease, def, &payload).await,
            None => {
                let error = StepError::new(
                    ErrorClass::Invalid,
                    "the job names no workflow (or version) this server knows",
                );
                let failure = Failure {
                    step: String::new(),
                    error,
                    attempts: 0,
                    pending: None,
                };
                let name = if payload.workflow.is_empty() {
                    "unknown"
                } else {
                    &payload.workflow
                };
                let who = actor(name, 0, &lease.job_id);
                self.fail_job(&lease, vec![], &who, name, 0, &payload, None, failure)
                    .await
            }
        }
    }

    /// Run `def` for the claimed `lease` with `payload`'s inputs and trigger: resume from
    /// the journal, walk the steps, then complete or fail the job (fenced).
    pub async fn run_job(
        &self,
        lease: Lease,
        def: Arc<Definition>,
        payload: &ExecutionPayload,
    ) -> Result<RunOutcome, ExecError> {
        self.run_job_with(lease, def, payload, None, None)
            .await
            .map(|(o, _)| o)
    }

    /// [`Executor::run_job`] from `resume` when the caller knows it (else read).
    async fn run_job_with(
        &self,
        lease: Lease,
        def: Arc<Definition>,
        payload: &ExecutionPayload,
        resume: Option<ResumePoint>,
        enqueue: Option<(Actor, Change)>,
    ) -> Result<(RunOutcome, Value), ExecError> {
        let first: Vec<(Actor, Change)> = enqueue.into_iter().collect();
        let (trigger, sealed) = match self.opened_trigger(&payload.trigger).await {
            Ok(t) => t,
            Err(why) => {
                let failure = Failure {
                    step: String::new(),
                    error: StepError::new(ErrorClass::Permission, why),
                    attempts: 0,
                    pending: None,
                };
                let who = actor(def.name(), def.version, &lease.job_id);
                let (name, version) = (def.name(), def.version);
                let wf = Some(&def.workflow);
                return self
                    .fail_job(&lease, first, &who, name, version, payload, wf, failure)
                    .await
                    .map(|o| (o, Value::Null));
            }
        };
        let resume = match resume {
            Some(r) => r,
            None => self.store.resume_point(&lease.job_id).await?,
        };
        let mut frame = Frame::new(def.clone(), &lease.job_id, &payload.inputs, trigger, 0);
        if sealed {
            frame.scope.mark_pii("trigger");
        }
        let mut run = Run::new(lease, resume);
        run.buffered = first;
        if def.workflow.concurrency.is_some() {
            // Admission writes on the job's row: it must exist first.
            self.flush(&mut run).await?;
        }
        let steps = &def.workflow.steps;
        let walked = match self.gate(&run, &frame).await? {
            gate::Gate::Done(outcome) => return Ok((outcome, Value::Null)),
            gate::Gate::Fail(f) => Err(walk::Flow::Failed(f)),
            gate::Gate::Run(Some(left)) => tokio::time::timeout(
                left,
                self.run_steps(&mut run, &mut frame, steps, String::new()),
            )
            .await
            .unwrap_or_else(|_| {
                let t = def.workflow.timeout.as_ref().map(|t| t.value.to_string());
                Err(walk::Flow::Failed(Failure {
                    step: String::new(),
                    error: StepError::new(
                        ErrorClass::Timeout,
                        format!(
                            "the execution ran longer than its timeout {} (counted from its first start)",
                            t.unwrap_or_default()
                        ),
                    ),
                    attempts: 1,
                    pending: None,
                }))
            }),
            gate::Gate::Run(None) => {
                self.run_steps(&mut run, &mut frame, steps, String::new())
                    .await
            }
        };
        let buffered = run.take_buffered();
        match walked {
            Ok(()) => {
                let done = vec![run.lease.complete_change()];
                commit_after(&self.store, buffered, &frame.actor, done).await?;
                Ok((RunOutcome::Succeeded, run.last_output))
            }
            Err(walk::Flow::Abort(ExecError::Deferred(at))) => {
                commit_after(&self.store, buffered, &frame.actor, vec![]).await?;
                self.store.defer_until(&run.lease, at).await?;
                Ok((RunOutcome::Waiting(at), Value::Null))
            }
            Err(walk::Flow::Abort(e)) => Err(e),
            Err(walk::Flow::Failed(f)) => self
                .fail_job(
                    &run.lease,
                    buffered,
                    &frame.actor,
                    def.name(),
                    def.version,
                    payload,
                    Some(&def.workflow),
                    f,
                )
                .await
                .map(|o| (o, Value::Null)),
        }
    }

    /// Whether every step of `workflow` (control steps' children included) reaches
    /// nothing outside the database ([`Reach`]): a run of it can then be one transaction
    /// from its enqueue to its end (see [`Executor::run_fresh`]). A workflow with a
    /// concurrency limit is not (its admission is a write of its own), nor one that
    /// retries (a retry waits between attempts, and nothing may keep a caller waiting
    /// that long without a stored execution).
    pub fn stays_in_database(&self, workflow: &Workflow) -> bool {
        fn all(ex: &Executor, steps: &[crate::definition::Step]) -> bool {
            steps.iter().all(|s| {
                ex.reach_of(&s.uses.value) != Reach::Outside
                    && s.retry.is_none()
                    && [&s.then, &s.otherwise, &s.default, &s.steps]
                        .into_iter()
                        .flatten()
                        .all(|c| all(ex, c))
                    && s.cases.iter().flat_map(|c| c.values()).all(|c| all(ex, c))
            })
        }
        workflow.concurrency.is_none() && workflow.retry.is_none() && all(self, &workflow.steps)
    }

    /// Commit what the run buffered, if anything.
    pub(crate) async fn flush(&self, run: &mut Run) -> Result<(), ExecError> {
        if run.buffered.is_empty() {
            return Ok(());
        }
        let buffered = run.take_buffered();
        let Some((who, _)) = buffered.last() else {
            return Ok(());
        };
        let who = who.clone();
        commit_after(&self.store, buffered, &who, vec![]).await?;
        Ok(())
    }

    /// Commit `changes` as `actor` with (after) what the run buffered.
    pub(crate) async fn commit_run(
        &self,
        run: &mut Run,
        actor: &Actor,
        changes: Vec<Change>,
    ) -> Result<(), ExecError> {
        let buffered = run.take_buffered();
        commit_after(&self.store, buffered, actor, changes).await?;
        Ok(())
    }

    /// Fail the job for good in one fenced commit: the pending failed attempt, the job's
    /// failure, the error event and (at depth 0, with an `on_error`) the error job.
    #[allow(clippy::too_many_arguments)]
    async fn fail_job(
        &self,
        lease: &Lease,
        buffered: Vec<(Actor, Change)>,
        who: &Actor,
        name: &str,
        version: i64,
        payload: &ExecutionPayload,
        workflow: Option<&Workflow>,
        f: Failure,
    ) -> Result<RunOutcome, ExecError> {
        let message = f.error.stored();
        let event = WorkflowFailure {
            attempts: f.attempts,
            class: f.error.class.as_str().to_owned(),
            execution: lease.job_id.clone(),
            message: WorkflowFailure::bounded_message(&message),
            step: f.step.clone(),
            version,
            workflow: name.to_owned(),
            status: f.error.status,
        };
        let mut changes = Vec::with_capacity(4);
        if let Some(p) = &f.pending {
            changes.push(p.record(lease, &StepOutcome::Failed(message.clone()))?);
        }
        changes.push(lease.fail_change(&message));
        changes.push(Change::new(
            stockade_store::events::append(now_ms(), &Event::WorkflowFailed(event.clone())),
            AuditEntry::new(
                "workflow.failed",
                format!("job:{}", lease.job_id),
                AuditDetails::new()
                    .str("workflow", name)
                    .int("version", version)
                    .str("step", &f.step)
                    .str("class", f.error.class.as_str())
                    .int("error_depth", i64::from(payload.error_depth)),
            ),
        ));
        if let Some(job) = error_job(workflow, payload, &event) {
            let (_, enqueue) = stockade_store::jobs::enqueue_change(&job)?;
            changes.push(enqueue);
        }
        commit_after(&self.store, buffered, who, changes).await?;
        Ok(RunOutcome::Failed(event))
    }
}

/// The error workflow's job for a failed execution, if one runs: only for an ordinary
/// execution (depth 0) whose workflow names an `on_error` other than the built-in one
/// (the built-in path is the event itself, which the alert router sends). The job is
/// deduplicated per failed execution.
fn error_job(
    workflow: Option<&Workflow>,
    payload: &ExecutionPayload,
    event: &WorkflowFailure,
) -> Option<NewJob> {
    let on_error = workflow?.on_error.as_ref()?;
    if payload.error_depth > 0 || on_error.value == BUILTIN_ERROR_WORKFLOW {
        return None;
    }
    let detail = serde_json::to_value(event).unwrap_or(Value::Null);
    let p = ExecutionPayload {
        workflow: on_error.value.clone(),
        version: None,
        inputs: json!({}),
        trigger: json!({ "error": detail }),
        error_depth: payload.error_depth + 1,
    };
    Some(p.job().dedup_key(format!("on_error:{}", event.execution)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(on_error: &str) -> Workflow {
        let text = format!(
            "name: w\ntrigger: manual\n{on_error}steps:\n  - id: a\n    uses: fail\n    with: {{ message: x }}\n"
        );
        Workflow::parse(&text).unwrap()
    }

    #[test]
    fn only_an_ordinary_execution_with_an_on_error_enqueues_an_error_job() {
        let event = WorkflowFailure {
            execution: "job_7".into(),
            ..WorkflowFailure::default()
        };
        let ordinary = ExecutionPayload::new("w", json!({}), json!({}));
        let job = error_job(Some(&wf("on_error: handler\n")), &ordinary, &event).unwrap();
        assert_eq!(job.dedup_key.as_deref(), Some("on_error:job_7"));
        assert_eq!(job.payload["error_depth"], json!(1));
        assert_eq!(job.payload["workflow"], json!("handler"));
        assert_eq!(job.payload["trigger"]["error"]["execution"], json!("job_7"));
        let nested = ExecutionPayload {
            error_depth: 1,
            ..ordinary.clone()
        };
        assert!(error_job(Some(&wf("on_error: handler\n")), &nested, &event).is_none());
        assert!(error_job(Some(&wf("on_error: builtin.alert\n")), &ordinary, &event).is_none());
        assert!(error_job(Some(&wf("")), &ordinary, &event).is_none());
        assert!(error_job(None, &ordinary, &event).is_none());
    }
}
