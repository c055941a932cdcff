//! Triggers: what starts executions by itself in a server process.
//!
//! - [`schedule`]: the scheduler fires each due tick of every `trigger: schedule` workflow
//!   exactly once across processes and restarts (the store's `schedule_ticks` row and
//!   the execution's job are one commit), with the `missed: skip | run_once` catch-up
//!   rule after downtime.
//! - [`events`]: the event subscriber enqueues one execution per typed event and per
//!   enabled `trigger: event` workflow that declares the event's kind, the jobs and the
//!   cursor's move in one commit, each job deduplicated by workflow and event id.
//! - Webhooks are answered by the HTTPS server (`stockade-server`, `workflow_hooks`),
//!   which uses [`webhook_targets`] and [`enqueue_webhook`] here.
//!
//! What a trigger starts is always the *active version of an enabled workflow* at the
//! moment it fires, pinned in the job (like a manual run): a version approved while the
//! job waits does not change what runs. The triggers read the registry once per pass
//! (one query of `workflows`; a version's text and activation time are read and parsed
//! once, versions never change).
//!
//! [`Triggers::start`] runs the scheduler and the subscriber as two tasks;
//! [`Triggers::stop`] ends them within its bound. Neither holds anything a crash could
//! lose: the next pass (in this process or another) picks up from the database.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use stockade_core::Actor;
use stockade_store::{Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::definition::{Trigger, Webhook, Workflow};
use crate::exec::{Definition, ExecutionPayload};
use crate::registry::{self, RegistryError};

pub mod events;
pub mod schedule;

pub use events::EventTriggers;
pub use schedule::Scheduler;

/// Why a trigger pass stopped (nothing of it was committed; the next pass repeats it).
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The active version of an enabled workflow, with when it became active.
#[derive(Debug, Clone)]
pub struct ActiveWorkflow {
    pub def: Arc<Definition>,
    /// When this version became active (approved, or applied where no review is needed):
    /// ticks and events before it never trigger it.
    pub since_ms: i64,
}

impl ActiveWorkflow {
    pub fn name(&self) -> &str {
        self.def.name()
    }

    pub fn workflow(&self) -> &Workflow {
        &self.def.workflow
    }

    /// The job of one execution of this version, triggered with `trigger`.
    pub fn payload(&self, trigger: Value) -> ExecutionPayload {
        let mut p = ExecutionPayload::new(self.name(), json!({}), trigger);
        p.version = Some(self.def.version);
        p
    }
}

/// Loads the active, enabled workflows, caching every version it has parsed.
#[derive(Debug, Default)]
pub struct ActiveSet {
    parsed: Mutex<BTreeMap<(String, i64), Option<ActiveWorkflow>>>,
    /// The last [`ActiveSet::load`] and when it was read (for [`ActiveSet::recent`]).
    last: Mutex<Option<(std::time::Instant, Vec<ActiveWorkflow>)>>,
}

impl ActiveSet {
    pub fn new() -> Self {
        Self::default()
    }

    fn cached(&self, name: &str, v: i64) -> Option<Option<ActiveWorkflow>> {
        let cache = self.parsed.lock().ok()?;
        cache.get(&(name.to_owned(), v)).cloned()
    }

    /// The active version of every enabled workflow (one read of `workflows`, plus a read
    /// of each version not seen before). A version whose text no longer parses is left
    /// out (it passed lint when applied; only another server's format does that).
    pub async fn load(&self, store: &Store) -> Result<Vec<ActiveWorkflow>, RegistryError> {
        let mut out = Vec::new();
        for wf in registry::workflows(store).await? {
            let (true, Some(v)) = (wf.enabled, wf.active_version) else {
                continue;
            };
            let entry = match self.cached(&wf.name, v) {
                Some(e) => e,
                None => {
                    let e = read_version(store, &wf.name, v).await?;
                    if let Ok(mut cache) = self.parsed.lock() {
                        cache.insert((wf.name.clone(), v), e.clone());
                    }
                    e
                }
            };
            out.extend(entry);
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some((std::time::Instant::now(), out.clone()));
        }
        Ok(out)
    }

    /// [`ActiveSet::load`], or its last result if that is younger than `max_age`. For a
    /// caller whose write re-checks the version it picked ([`NewJob::requiring_active`]
    /// on the job), so a stale answer can only make it retry, never run what is no longer
    /// active; what became active within `max_age` may be missed for that long.
    ///
    /// [`NewJob::requiring_active`]: stockade_store::NewJob::requiring_active
    pub async fn recent(
        &self,
        store: &Store,
        max_age: Duration,
    ) -> Result<Vec<ActiveWorkflow>, RegistryError> {
        if let Ok(last) = self.last.lock()
            && let Some((at, set)) = last.as_ref()
            && at.elapsed() < max_age
        {
            return Ok(set.clone());
        }
        self.load(store).await
    }

    /// Forget the last result: the next [`ActiveSet::recent`] reads the registry.
    pub fn forget(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }
}

async fn read_version(
    store: &Store,
    name: &str,
    v: i64,
) -> Result<Option<ActiveWorkflow>, RegistryError> {
    let Some(row) = registry::version(store, name, v).await? else {
        return Ok(None);
    };
    let (_, text) = registry::content(store, name, Some(v)).await?;
    let Ok(workflow) = Workflow::parse(&text) else {
        return Ok(None);
    };
    if workflow.name.value != name {
        return Ok(None);
    }
    Ok(Some(ActiveWorkflow {
        def: Arc::new(Definition {
            workflow,
            version: v,
        }),
        since_ms: row.approved_at_ms.unwrap_or(row.applied_at_ms),
    }))
}

/// How old the registry read behind a webhook's target may be ([`ActiveSet::recent`]):
/// a workflow applied or enabled answers its webhook within this time; one disabled or
/// replaced stops at once (the enqueue checks the version it picked).
pub const WEBHOOK_TARGETS_MAX_AGE: Duration = Duration::from_secs(1);

/// The enabled workflows whose `trigger: webhook` has this `path`, with their webhook,
/// from a registry read at most [`WEBHOOK_TARGETS_MAX_AGE`] old.
/// More than one is a conflict the caller refuses (lint catches it among files linted
/// together; two applied separately can still meet): nothing runs then.
pub async fn webhook_targets(
    store: &Store,
    set: &ActiveSet,
    path: &str,
) -> Result<Vec<(ActiveWorkflow, Webhook)>, RegistryError> {
    Ok(set
        .recent(store, WEBHOOK_TARGETS_MAX_AGE)
        .await?
        .into_iter()
        .filter_map(|a| match &a.workflow().trigger.value {
            Trigger::Webhook(w) if w.path.value == path => {
                let w = w.clone();
                Some((a, w))
            }
            _ => None,
        })
        .collect())
}

/// A time in milliseconds as RFC 3339 UTC (what `trigger.at` and friends hold).
pub fn rfc3339(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    })
}

/// A webhook delivery as the execution sees it (`trigger.body`, `.headers`, `.query`).
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// The JSON body.
    pub body: Value,
    /// The headers the workflow may read (the caller keeps auth headers out).
    pub headers: serde_json::Map<String, Value>,
    /// The query string's parameters.
    pub query: serde_json::Map<String, Value>,
    pub received_at_ms: i64,
}

/// The execution of `target` for a webhook `delivery` to `path` (pinned to the version).
pub fn webhook_payload(
    target: &ActiveWorkflow,
    path: &str,
    delivery: Delivery,
) -> ExecutionPayload {
    let trigger = json!({
        "kind": "webhook",
        "at": rfc3339(delivery.received_at_ms),
        "path": path,
        "body": delivery.body,
        "headers": delivery.headers,
        "query": delivery.query,
    });
    target.payload(trigger)
}

/// Enqueue one execution of `target` for a webhook `delivery` to `path`, as `actor`
/// (audited), only while that version is still active ([`StoreError::Conflict`]
/// otherwise). The execution's id.
pub async fn enqueue_webhook(
    store: &Store,
    actor: &Actor,
    target: &ActiveWorkflow,
    path: &str,
    delivery: Delivery,
) -> Result<String, StoreError> {
    let job = webhook_payload(target, path, delivery)
        .job()
        .requiring_active(target.name(), target.def.version);
    Ok(store.enqueue(actor, &job).await?.id)
}

/// How the triggers run.
#[derive(Debug, Clone)]
pub struct TriggerConfig {
    /// How often the scheduler looks for due ticks, and the longest the subscriber sleeps
    /// before reading the event stream again (it wakes at once on a write in this process).
    pub poll: Duration,
    /// A tick up to this late is on time (it fires whatever `missed` says); an older one
    /// was missed while no scheduler ran.
    pub grace_ms: i64,
    /// Events read per batch.
    pub batch: i64,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            poll: Duration::from_secs(1),
            grace_ms: 60_000,
            batch: 200,
        }
    }
}

/// The running trigger tasks (scheduler, event subscriber).
pub struct Triggers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Triggers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Triggers")
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

impl Triggers {
    /// Start the scheduler and the event subscriber on `store`.
    pub async fn start(store: Store, config: TriggerConfig) -> Result<Triggers, StoreError> {
        let (stop, stopped) = watch::channel(false);
        let scheduler = Scheduler::new(store.clone(), config.grace_ms);
        let events = EventTriggers::subscribe(store).await?;
        let tasks = vec![
            tokio::spawn(scheduler.run(config.poll, stopped.clone())),
            tokio::spawn(events.run(config.poll, config.batch, stopped)),
        ];
        Ok(Triggers { stop, tasks })
    }

    /// Stop both tasks, waiting at most `bound` (a pass in flight is abandoned: it
    /// committed all or nothing, and the next process repeats what was not committed).
    pub async fn stop(self, bound: Duration) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + bound;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
    }
}
