//! The workflow engine of a server process: [`StoredDefinitions`] (the registry's
//! reviewed versions as the executor's [`Definitions`]) and [`Engine`] (worker tasks that
//! claim workflow jobs with a lease and run them, plus the reaper on a timer).
//!
//! # Definitions from the registry
//! The executor asks for definitions synchronously, so the engine loads them before each
//! run ([`StoredDefinitions::prepare`]): the active version of every enabled workflow
//! (one read of `workflows`; a version's text is read and parsed once, versions never
//! change), and the version a job is pinned to. What runs:
//! - an unpinned job (and a `workflow.call`, and an `on_error` workflow): the active
//!   version of an enabled workflow, nothing else;
//! - a job pinned to a version: that version, if the workflow is enabled and the version
//!   passed review (active now or superseded since); never a pending or rejected one.
//!
//! A job naming nothing runnable fails (audited, with the executor's error). A job whose
//! definitions cannot be read (the database is away) is put back in the queue without
//! spending its attempt, never failed for it.
//!
//! # Workers and stopping
//! `workers` tasks each claim one job of kind [`JOB_KIND`] at a time and run it with the
//! [`Executor`]. One idle worker at a time looks for work (the others wait their turn),
//! so a write wakes one claim however many workers are idle; it sleeps until the store's
//! write counter moves (a job enqueued in this process; at most one look per
//! `CLAIM_GAP` while commits keep coming) or [`EngineConfig::poll`] passes (a job
//! enqueued by another process, e.g. `stockade workflow run`, or one whose time came).
//! A worker claims only with one of the engine's `workers` slots in hand.
//!
//! # Started at once
//! [`Starter`] runs what this process triggers itself (a webhook) without the queue: the
//! job is written already claimed and run on its own task while a slot is free (see its
//! docs and [`Commit`]). A reaper task re-queues
//! expired leases every [`EngineConfig::reap_every`].
//!
//! A pruner task runs [`prune_pass`] every [`EngineConfig::prune_every`]: finished
//! executions past the retention age or beyond the count kept per workflow go, in
//! bounded batches, and SQLite hands the freed pages back (store `jobs::prune`).
//!
//! [`Engine::stop`] stops claiming at once and gives the runs in flight a bound to end;
//! a run still going then is abandoned like a crash: its lease expires, the reaper
//! re-queues it, and the next holder resumes from the journal without repeating a
//! committed step (the executor's invariant).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use stockade_core::Actor;
// Due times and leases are on the clock the processes share (stockade_core::clock).
use stockade_core::clock::now_ms;
use stockade_store::StoreError;
use stockade_store::{Lease, Store};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinHandle;

use crate::definition::Workflow;
use crate::exec::{
    Definition, Definitions, ExecError, ExecutionPayload, Executor, JOB_KIND, RunOutcome,
};
use crate::registry::{self, RegistryError, VersionState};

#[derive(Default)]
struct Cache {
    /// The active version of each enabled workflow.
    active: BTreeMap<String, Arc<Definition>>,
    /// Every version parsed so far, by name and number (versions never change).
    parsed: BTreeMap<(String, i64), Arc<Definition>>,
    /// Pinned versions that may run (reviewed, workflow enabled), as of the last check.
    pinned: BTreeMap<(String, i64), Arc<Definition>>,
}

/// The registry's runnable versions as the executor's [`Definitions`].
pub struct StoredDefinitions {
    store: Store,
    cache: RwLock<Cache>,
}

impl std::fmt::Debug for StoredDefinitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredDefinitions").finish_non_exhaustive()
    }
}

impl StoredDefinitions {
    pub fn new(store: Store) -> Self {
        StoredDefinitions {
            store,
            cache: RwLock::new(Cache::default()),
        }
    }

    fn cached(&self, name: &str, v: i64) -> Option<Arc<Definition>> {
        let cache = self.cache.read().ok()?;
        cache.parsed.get(&(name.to_owned(), v)).cloned()
    }

    /// Version `v` of `name`, parsed (from the cache, else read once). `None` when its
    /// stored text does not parse (it passed lint when applied, so only a newer
    /// server's format would do that).
    async fn parse(&self, name: &str, v: i64) -> Result<Option<Arc<Definition>>, RegistryError> {
        if let Some(d) = self.cached(name, v) {
            return Ok(Some(d));
        }
        let (_, text) = registry::content(&self.store, name, Some(v)).await?;
        let Ok(workflow) = Workflow::parse(&text) else {
            return Ok(None);
        };
        if workflow.name.value != name {
            return Ok(None);
        }
        let def = Arc::new(Definition {
            workflow,
            version: v,
        });
        if let Ok(mut cache) = self.cache.write() {
            cache.parsed.insert((name.to_owned(), v), def.clone());
        }
        Ok(Some(def))
    }

    /// Reload the active version of every enabled workflow.
    pub async fn refresh(&self) -> Result<(), RegistryError> {
        let mut active = BTreeMap::new();
        for wf in registry::workflows(&self.store).await? {
            if let (true, Some(v)) = (wf.enabled, wf.active_version)
                && let Some(def) = self.parse(&wf.name, v).await?
            {
                active.insert(wf.name, def);
            }
        }
        if let Ok(mut cache) = self.cache.write() {
            cache.active = active;
        }
        Ok(())
    }

    /// Check version `v` of `name` for a pinned job: cached if it may run, dropped if not.
    pub async fn load_version(&self, name: &str, v: i64) -> Result<(), RegistryError> {
        let enabled = registry::workflow(&self.store, name)
            .await?
            .is_some_and(|w| w.enabled);
        let reviewed = registry::version(&self.store, name, v)
            .await?
            .is_some_and(|r| matches!(r.state, VersionState::Active | VersionState::Superseded));
        let def = if enabled && reviewed {
            self.parse(name, v).await?
        } else {
            None
        };
        if let Ok(mut cache) = self.cache.write() {
            let key = (name.to_owned(), v);
            match def {
                Some(d) => cache.pinned.insert(key, d),
                None => cache.pinned.remove(&key),
            };
        }
        Ok(())
    }

    /// Load what a job with this payload may run: the active versions, and its pinned
    /// version if it names one.
    pub async fn prepare(&self, payload: &Value) -> Result<(), RegistryError> {
        self.refresh().await?;
        if let Ok(p) = serde_json::from_value::<ExecutionPayload>(payload.clone())
            && let Some(v) = p.version
        {
            self.load_version(&p.workflow, v).await?;
        }
        Ok(())
    }
}

impl Definitions for StoredDefinitions {
    fn get(&self, name: &str) -> Option<Arc<Definition>> {
        self.cache.read().ok()?.active.get(name).cloned()
    }

    fn version(&self, name: &str, version: i64) -> Option<Arc<Definition>> {
        let cache = self.cache.read().ok()?;
        cache
            .pinned
            .get(&(name.to_owned(), version))
            .cloned()
            .or_else(|| {
                cache
                    .active
                    .get(name)
                    .filter(|d| d.version == version)
                    .cloned()
            })
    }
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker tasks (jobs run at once). At least 1.
    pub workers: usize,
    /// The lease each claim takes (the executor heartbeats every third of it).
    pub lease_ms: i64,
    /// The longest an idle worker sleeps before looking for due jobs again.
    pub poll: Duration,
    /// How often the reaper re-queues expired leases.
    pub reap_every: Duration,
    /// Finished executions older than this are deleted (with their journal).
    pub retention: Duration,
    /// At most this many finished executions are kept per workflow.
    pub keep_per_workflow: i64,
    /// How often the prune runs (see [`prune_pass`]).
    pub prune_every: Duration,
    /// `script` steps' default limits and maxima (`[workflows.script]`).
    pub script: crate::exec::ScriptSettings,
    /// The configured alert channel names `alert.send` checks its `channel` against
    /// (`None`: not checked).
    pub alert_channels: Option<crate::exec::AlertChannels>,
    /// The process's sync engine, for `marketplace.pull_orders` (`None`: that step kind
    /// is unsupported here).
    pub sync: Option<stockade_sync::SyncEngine>,
    /// Execution outcome counters (the composition root registers them for `/metrics`).
    pub telemetry: WorkflowTelemetry,
}

/// The label of an execution outcome: a fixed word, never a workflow's data.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// How the runs of this process ended, counted per outcome.
#[derive(Debug, Clone, Default)]
pub struct WorkflowTelemetry {
    pub outcomes: prometheus_client::metrics::family::Family<
        OutcomeLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl WorkflowTelemetry {
    /// Register as `stockade_workflow_runs_total{outcome}`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "stockade_workflow_runs",
            "Workflow runs ended in this process, per outcome (succeeded, failed, waiting, limited, stopped)",
            self.outcomes.clone(),
        );
    }

    /// Count one run's end: `stopped` when it ended without deciding its job.
    pub fn record(&self, outcome: Result<&RunOutcome, &ExecError>) {
        let outcome = match outcome {
            Ok(RunOutcome::Succeeded) => "succeeded",
            Ok(RunOutcome::Failed(_)) => "failed",
            Ok(RunOutcome::Waiting(_)) => "waiting",
            Ok(RunOutcome::Limited(_)) => "limited",
            Err(_) => "stopped",
        };
        self.outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 16,
            lease_ms: 30_000,
            poll: Duration::from_millis(500),
            reap_every: Duration::from_secs(5),
            retention: Duration::from_secs(30 * 86_400),
            keep_per_workflow: 1_000,
            prune_every: Duration::from_secs(600),
            script: crate::exec::ScriptSettings::default(),
            alert_channels: None,
            sync: None,
            telemetry: WorkflowTelemetry::default(),
        }
    }
}

/// Rows deleted per statement of a prune pass.
pub const PRUNE_BATCH: i64 = 500;
/// Batches of one prune pass at most (the rest waits for the next pass).
const PRUNE_BATCHES: usize = 20;

/// One retention pass: finished executions past `config.retention` or beyond
/// `config.keep_per_workflow` per workflow, deleted [`PRUNE_BATCH`] at a time (at most
/// [`PRUNE_BATCHES`] batches, yielding between them so runs are not held up), then
/// SQLite's freed pages reclaimed. Returns the executions deleted.
pub async fn prune_pass(
    store: &Store,
    config: &EngineConfig,
) -> Result<u64, stockade_store::StoreError> {
    let age = i64::try_from(config.retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms().saturating_sub(age);
    let mut deleted = 0;
    for _ in 0..PRUNE_BATCHES {
        let r = store
            .prune_executions(JOB_KIND, cutoff, config.keep_per_workflow, PRUNE_BATCH)
            .await?;
        deleted += r.jobs;
        if r.jobs < PRUNE_BATCH as u64 && r.ticks < PRUNE_BATCH as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    if deleted > 0 {
        store.reclaim_space().await?;
    }
    Ok(deleted)
}

/// The running engine: its workers and reaper, stopped by [`Engine::stop`].
pub struct Engine {
    stop: watch::Sender<bool>,
    /// Set when [`Engine::stop`]'s grace ran out: the starter's runs still going drop.
    abandon: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    starter: Starter,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

impl Engine {
    /// Start the workers and the reaper on `store` with the registry's definitions and
    /// the built-in step handlers.
    pub fn start(store: Store, config: EngineConfig) -> Engine {
        let defs = Arc::new(StoredDefinitions::new(store.clone()));
        let mut executor = Executor::new(store.clone(), defs.clone())
            .lease_ms(config.lease_ms)
            .with_script(config.script);
        if let Some(channels) = &config.alert_channels {
            executor = executor.with_alert_channels(channels.clone());
        }
        if let Some(sync) = &config.sync {
            executor = executor.with_sync(sync.clone());
        }
        Engine::start_with(store, defs, Arc::new(executor), config)
    }

    /// [`Engine::start`] with the steps that need the process's egress gateway and vault
    /// (`http.request`, unmasked buyer fields, sealed outputs): what a server runs.
    pub fn start_services(
        store: Store,
        config: EngineConfig,
        egress: stockade_egress::Gateway,
        vault: Arc<stockade_vault::Vault>,
    ) -> Engine {
        let defs = Arc::new(StoredDefinitions::new(store.clone()));
        let mut executor = Executor::new(store.clone(), defs.clone())
            .lease_ms(config.lease_ms)
            .with_script(config.script)
            .with_services(egress, vault);
        if let Some(channels) = &config.alert_channels {
            executor = executor.with_alert_channels(channels.clone());
        }
        if let Some(sync) = &config.sync {
            executor = executor.with_sync(sync.clone());
        }
        Engine::start_with(store, defs, Arc::new(executor), config)
    }

    /// Start with this executor (extra step handlers); `defs` must be its definitions.
    pub fn start_with(
        store: Store,
        defs: Arc<StoredDefinitions>,
        executor: Arc<Executor>,
        config: EngineConfig,
    ) -> Engine {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::with_capacity(config.workers.max(1) + 1);
        let pid = std::process::id();
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let slots = Arc::new(Semaphore::new(config.workers.max(1)));
        let (abandon, abandoned) = watch::channel(false);
        let starter = Starter {
            abandoned,
            worker: format!("engine-{pid}-{}-inline", now_ms()),
            store: store.clone(),
            executor: executor.clone(),
            slots: slots.clone(),
            total: config.workers.max(1),
            lease_ms: config.lease_ms,
            stopped: stopped.clone(),
            telemetry: config.telemetry.clone(),
        };
        for n in 0..config.workers.max(1) {
            let worker = Worker {
                id: format!("engine-{pid}-{}-{n}", now_ms()),
                slots: slots.clone(),
                turn: turn.clone(),
                store: store.clone(),
                defs: defs.clone(),
                executor: executor.clone(),
                config: config.clone(),
                stopped: stopped.clone(),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        tasks.push(tokio::spawn(pruner(
            store.clone(),
            config.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(reaper(store, config.reap_every, stopped)));
        Engine {
            stop,
            abandon,
            tasks,
            starter,
        }
    }

    /// What starts executions of this process's own triggers at once (see [`Starter`]).
    pub fn starter(&self) -> Starter {
        self.starter.clone()
    }

    /// Stop claiming, give the runs in flight up to `grace` to end, then abandon the rest
    /// (their leases expire and another process resumes them).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        // Every slot back means every run started here ended, by a worker or a starter
        // (a run still going at the deadline is abandoned: its lease expires).
        let all = u32::try_from(self.starter.slots_total()).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout_at(deadline, self.starter.slots.acquire_many(all)).await;
        if drained.is_err() {
            let _ = self.abandon.send(true);
        }
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

/// Starts executions this process triggers itself (a webhook) without the queue's
/// round trip: the job is enqueued already claimed by this process
/// ([`Store::enqueue_claimed`], one commit) and run at once on a task of its own, when one
/// of the engine's `workers` slots is free (a run holds a slot as a worker does, so the
/// process never runs more than `workers` executions at once). With no slot free, or the
/// engine stopping, the job is enqueued for the workers like any other. A run started
/// here that dies with the process is an ordinary claimed job: its lease expires and the
/// reaper re-queues it.
#[derive(Clone)]
pub struct Starter {
    worker: String,
    store: Store,
    executor: Arc<Executor>,
    slots: Arc<Semaphore>,
    /// The slots in all (the engine's `workers`).
    total: usize,
    /// True once the engine stopped and its grace ran out.
    abandoned: watch::Receiver<bool>,
    lease_ms: i64,
    stopped: watch::Receiver<bool>,
    telemetry: WorkflowTelemetry,
}

impl std::fmt::Debug for Starter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Starter")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// How long [`Starter::start`] with [`Commit::WithRun`] waits for a free slot before
/// the execution goes to the queue instead.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);

/// When a [`Starter`] commits an execution's enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Before the run: the caller may acknowledge the execution at once (`respond:
    /// accepted`).
    First,
    /// With the run's first commit when every step of the workflow reaches nothing
    /// outside the database ([`Executor::stays_in_database`]), so the whole execution is
    /// one transaction; otherwise as `First`. For a caller that answers only once the run
    /// ended (`respond: result`): until then nothing may be acknowledged, and a run that
    /// fails to commit leaves nothing at all.
    WithRun,
}

/// How a run started by a [`Starter`] ended: its outcome and its last step's output (see
/// [`Executor::run_fresh`]), or why it stopped without deciding.
pub type Ended = Result<(RunOutcome, Value), ExecError>;

/// An execution a [`Starter`] started.
#[derive(Debug)]
pub struct Started {
    /// The execution (job) id.
    pub id: String,
    /// Whether the enqueue is committed already (with [`Commit::WithRun`] it may come
    /// with the run's end instead: until `ended` answers, nothing may be acknowledged).
    pub committed: bool,
    /// How the run ends, when it runs here; `None` when it went to the queue.
    pub ended: Option<oneshot::Receiver<Ended>>,
}

impl Starter {
    fn slots_total(&self) -> usize {
        self.total
    }

    /// Start an execution of `def` (the active version of an enabled workflow) with
    /// `payload` as `actor` (audited). The job is enqueued only while that version is
    /// still the active one of the enabled workflow (checked in the enqueue's statement:
    /// a workflow disabled or replaced since the caller read it is refused with
    /// [`StoreError::Conflict`] and nothing is written; with [`Commit::WithRun`] the run
    /// ends with [`ExecError::Store`] instead).
    pub async fn start(
        &self,
        actor: &Actor,
        def: Arc<Definition>,
        mut payload: ExecutionPayload,
        commit: Commit,
    ) -> Result<Started, StoreError> {
        payload.version = Some(def.version);
        let job = payload.job().requiring_active(def.name(), def.version);
        let slot = if *self.stopped.borrow() {
            None
        } else if commit == Commit::WithRun {
            // The caller waits for the end anyway: wait a moment for a slot rather than
            // send the run through the queue (a claim, reads of the registry and the
            // journal, a commit per outside step: several times the work).
            tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            self.slots.clone().try_acquire_owned().ok()
        };
        let Some(slot) = slot else {
            let id = self.store.enqueue(actor, &job).await?.id;
            return Ok(Started {
                id,
                committed: true,
                ended: None,
            });
        };
        let together = commit == Commit::WithRun && self.executor.stays_in_database(&def.workflow);
        let (lease, enqueue) = if together {
            let (lease, change) =
                stockade_store::jobs::claimed_change(&job, &self.worker, self.lease_ms, true)?;
            (lease, Some((actor.clone(), change)))
        } else {
            let lease = self
                .store
                .enqueue_claimed(actor, &job, &self.worker, self.lease_ms)
                .await?
                .ok_or_else(|| {
                    StoreError::Conflict(format!(
                        "workflow {:?} is no longer enabled at version {}; nothing was started",
                        def.name(),
                        def.version
                    ))
                })?;
            (lease, None)
        };
        let id = lease.job_id.clone();
        let (tx, rx) = oneshot::channel();
        let executor = self.executor.clone();
        let mut abandoned = self.abandoned.clone();
        let telemetry = self.telemetry.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let job = lease.job_id.clone();
            let run = executor.run_fresh(lease, def, &payload, enqueue);
            // Dropped like a crash when the engine gave up waiting for it: its lease
            // expires (or, its enqueue not committed yet, nothing of it exists).
            let ended = tokio::select! {
                ended = run => ended,
                _ = abandoned.wait_for(|gone| *gone) => return,
            };
            telemetry.record(ended.as_ref().map(|(o, _)| o));
            if let Err(e) = &ended {
                report_stop(&job, e);
            }
            let _ = tx.send(ended);
        });
        Ok(Started {
            id,
            committed: !together,
            ended: Some(rx),
        })
    }
}

/// Log why a run stopped without deciding its job (nothing of it is lost: the lease
/// expires and the job resumes).
fn report_stop(job: &str, e: &ExecError) {
    match e {
        ExecError::Fenced => {
            tracing::info!("workflow job {job}: another worker holds it now");
        }
        ExecError::Deferred(_) => {}
        ExecError::Store(e) => {
            tracing::warn!(
                "workflow job {job}: stopped on a store error ({e}); it resumes once its lease expires"
            );
        }
    }
}

/// The shortest time between two looks for work of an idle worker (see
/// `look_for_work`): what a job enqueued for the workers may wait in the queue at most
/// beyond that, while commits keep waking the worker.
const CLAIM_GAP: Duration = Duration::from_millis(10);

struct Worker {
    id: String,
    /// A worker holds one of the engine's slots while it looks for and runs a job.
    slots: Arc<Semaphore>,
    /// Held by the one idle worker looking for work.
    turn: Arc<tokio::sync::Mutex<()>>,
    store: Store,
    defs: Arc<StoredDefinitions>,
    executor: Arc<Executor>,
    config: EngineConfig,
    stopped: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self) {
        let mut writes = self.store.writes();
        let turn = self.turn.clone();
        while !*self.stopped.borrow() {
            // One idle worker at a time looks for work: a write wakes one claim, not one
            // per idle worker (each claim is a write of its own, and would break up the
            // store's group commits of the busy workers' steps).
            let held = tokio::select! {
                held = turn.lock() => held,
                changed = self.stopped.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let claimed = self.look_for_work(&mut writes).await;
            drop(held);
            match claimed {
                Some((lease, _slot)) => self.run_one(lease).await,
                None => return,
            }
        }
    }

    /// Claim a job, waiting for writes (or the poll) until one is due; `None` once the
    /// engine stops. A claim is made only with a free slot in hand (runs started by the
    /// [`Starter`] hold slots too); an idle worker waiting for work holds none.
    async fn look_for_work(
        &mut self,
        writes: &mut watch::Receiver<u64>,
    ) -> Option<(Lease, OwnedSemaphorePermit)> {
        while !*self.stopped.borrow() {
            let slot = tokio::select! {
                slot = self.slots.clone().acquire_owned() => slot.ok()?,
                changed = self.stopped.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    continue;
                }
            };
            // An instance in lockdown runs nothing: the queue waits (no failures).
            let claimed = if self.store.controls().locked_down() {
                Ok(None)
            } else {
                self.store
                    .claim(&self.id, &[JOB_KIND], self.config.lease_ms)
                    .await
            };
            match claimed {
                Ok(Some(lease)) => return Some((lease, slot)),
                Ok(None) | Err(_) => {
                    drop(slot);
                    match &claimed {
                        // The store says once that the database is away.
                        Err(e) if e.is_unavailable() => {
                            tracing::debug!("workflow worker: cannot claim a job: {e}");
                        }
                        Err(e) => tracing::warn!("workflow worker: cannot claim a job: {e}"),
                        Ok(_) => {}
                    }
                    let looked = tokio::time::Instant::now();
                    tokio::select! {
                        woke = writes.changed() => {
                            if woke.is_err() {
                                // The store is gone: no more wake-ups, only the poll.
                                tokio::time::sleep(self.config.poll).await;
                            }
                        }
                        () = tokio::time::sleep(self.config.poll) => {}
                        changed = self.stopped.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                        }
                    }
                    // Under load every commit is a wake-up (most of them not an
                    // enqueue): look again at most every CLAIM_GAP, each look being a
                    // write of its own.
                    tokio::select! {
                        () = tokio::time::sleep_until(looked + CLAIM_GAP) => {}
                        changed = self.stopped.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                        }
                    }
                }
            }
        }
        None
    }

    async fn run_one(&self, lease: Lease) {
        let job = lease.job_id.clone();
        // An isolated workflow's runs wait in the queue (their attempt given back) until
        // `stockade incident release`, looked at again every second.
        if let Ok(p) = serde_json::from_value::<ExecutionPayload>(lease.payload.clone())
            && self.store.controls().workflow_isolated(&p.workflow)
        {
            let later = now_ms().saturating_add(1000);
            if let Err(e) = self.store.defer_until(&lease, later).await {
                tracing::warn!("workflow job {job}: cannot put the isolated run back: {e}");
            }
            return;
        }
        if let Err(e) = self.defs.prepare(&lease.payload).await {
            tracing::warn!(
                "workflow job {job}: cannot read its definitions ({e}); back in the queue"
            );
            let later = now_ms().saturating_add(self.config.poll.as_millis() as i64);
            let _ = self.store.defer_until(&lease, later).await;
            return;
        }
        let ended = self.executor.run_claimed(lease).await;
        self.config.telemetry.record(ended.as_ref());
        if let Err(e) = ended {
            report_stop(&job, &e);
        }
    }
}

async fn reaper(store: Store, every: Duration, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stopped.borrow() {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = store.reap_expired(1000).await {
                    tracing::warn!("workflow reaper: {e}");
                }
            }
            _ = stopped.changed() => {}
        }
    }
}

async fn pruner(store: Store, config: EngineConfig, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(config.prune_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stopped.borrow() {
        tokio::select! {
            _ = tick.tick() => {
                match prune_pass(&store, &config).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("workflow retention: {n} finished execution(s) deleted"),
                    Err(e) => tracing::warn!("workflow retention: {e}"),
                }
            }
            _ = stopped.changed() => {}
        }
    }
}
