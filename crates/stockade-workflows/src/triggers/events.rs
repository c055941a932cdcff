//! The event subscriber: one execution per stored event and per enabled workflow whose
//! `trigger: event` names the event's kind and whose `permissions.events` declares it.
//!
//! It reads the event stream after its persisted cursor (`event_cursors`, subscriber
//! [`SUBSCRIBER`]) and, for a batch, commits the executions' jobs and the cursor's move
//! past the batch in ONE commit (actor `system:workflow-events`). The cursor step only
//! succeeds where the batch began, so two processes reading the same batch enqueue it
//! once; and every job's dedup key is `event:WORKFLOW:EVENT_ID`, so a batch delivered
//! again (a crash after some jobs were written by another path, a cursor reset) never
//! enqueues an execution twice.
//!
//! Event kinds are the workflow names of the stored `(source, kind)` pairs
//! ([`trigger_kind`]): `sync push_failed` is `push.failed`, `egress blocked` is
//! `egress.blocked`, `workflow failed` is `workflow.failed`, and a kind this build has no
//! type for is `SOURCE.KIND` (so `order created` is `order.created` once it is produced).
//! An event older than the workflow's active version (its activation time) does not
//! trigger it: applying a workflow does not replay history.
//!
//! The execution's trigger data is `{kind: event, at, event, event_id, event_kind,
//! status}` where `event` is the event's detail JSON as stored (`trigger.event.connection`,
//! `trigger.event.order`, …): event details hold identifiers, counts and scrubbed
//! third-party text only, never buyer data (`stockade_core::event`).
//!
//! # `workflow.failed` and error workflows
//! A failed execution's own `on_error` workflow is enqueued by the executor in the
//! failing commit (`exec::error_job`); this subscriber does not enqueue it again (a
//! `workflow.failed` listener that is the failed workflow's `on_error` is skipped). No
//! loop is possible: executions started by a `workflow.failed` event run at error depth
//! 1 (their failure enqueues no `on_error`), and a `workflow.failed` event about a
//! workflow that itself listens for `workflow.failed` triggers nothing.

use std::time::Duration;

use serde_json::{Value, json};
use stockade_core::Actor;
use stockade_core::event::{Event, EventRecord};
use stockade_store::events::{Batch, EventStream};
use stockade_store::jobs::enqueue_change;
use stockade_store::{AuditDetails, AuditEntry, Change, NewJob, Store, StoreError};
use tokio::sync::watch;

use super::{ActiveSet, ActiveWorkflow, TriggerError};
use crate::definition::Trigger;

/// The subscriber name of the event cursor.
pub const SUBSCRIBER: &str = "workflow-triggers";
/// The shortest pause between two reads of a drained stream woken by writes.
const QUIET: Duration = Duration::from_millis(50);
/// The event kind of failed executions.
const WORKFLOW_FAILED: &str = "workflow.failed";

/// The workflow name of a stored event's kind.
pub fn trigger_kind(event: &Event) -> String {
    let c = event.columns();
    match (c.source.as_str(), c.kind.as_str()) {
        ("sync", "push_failed") => "push.failed".into(),
        ("sync", "fetch_failed") => "fetch.failed".into(),
        ("sync", "authorization_expiring") => "authorization.expiring".into(),
        ("sync", k @ ("oversell" | "unmatched_sku")) => k.into(),
        (source, kind) => format!("{source}.{kind}"),
    }
}

fn listens(a: &ActiveWorkflow, kind: &str) -> bool {
    let w = a.workflow();
    matches!(&w.trigger.value, Trigger::Event(e) if e.kind.value == kind)
        && w.permissions.events.iter().any(|e| e.value == kind)
}

/// Who runs for `record` (of workflow kind `kind`) among `active`, as jobs.
pub fn jobs_for(active: &[ActiveWorkflow], record: &EventRecord, kind: &str) -> Vec<NewJob> {
    let failed = match &record.event {
        Event::WorkflowFailed(f) => Some(f),
        _ => None,
    };
    if let Some(f) = failed {
        // A listener's own failure triggers no listener (no loop by construction).
        let about = active.iter().find(|a| a.name() == f.workflow);
        if about.is_some_and(|a| listens(a, WORKFLOW_FAILED)) {
            return Vec::new();
        }
    }
    let on_error = failed.and_then(|f| {
        let about = active.iter().find(|a| a.name() == f.workflow)?;
        about.workflow().on_error.as_ref().map(|o| o.value.clone())
    });
    let c = record.event.columns();
    let detail: Value = serde_json::from_str(&c.detail).unwrap_or(Value::Null);
    let trigger = json!({
        "kind": "event",
        "at": super::rfc3339(record.at_ms),
        "event": detail,
        "event_id": record.id,
        "event_kind": kind,
        "status": c.status,
    });
    active
        .iter()
        .filter(|a| listens(a, kind) && record.at_ms >= a.since_ms)
        .filter(|a| on_error.as_deref() != Some(a.name()))
        .map(|a| {
            let mut p = a.payload(trigger.clone());
            if failed.is_some() {
                p.error_depth = 1;
            }
            p.job()
                .dedup_key(format!("event:{}:{}", a.name(), record.id))
        })
        .collect()
}

/// Turns stored events into executions.
#[derive(Debug)]
pub struct EventTriggers {
    store: Store,
    stream: EventStream,
    set: ActiveSet,
}

impl EventTriggers {
    /// Subscribe (the cursor is created at the oldest stored event the first time).
    pub async fn subscribe(store: Store) -> Result<Self, StoreError> {
        let stream = EventStream::subscribe(&store, SUBSCRIBER).await?;
        Ok(EventTriggers {
            store,
            stream,
            set: ActiveSet::new(),
        })
    }

    /// Read one batch of up to `limit` events and commit its executions with the cursor's
    /// move. How many events the batch held (0: nothing new). A batch another process
    /// handled first commits nothing here.
    pub async fn handle_batch(&self, limit: i64) -> Result<usize, TriggerError> {
        let batch = self.stream.next_batch(limit).await?;
        if batch.events.is_empty() {
            return Ok(0);
        }
        let jobs = self.plan(&batch).await?;
        if jobs.is_empty() {
            if let Err(e) = self.stream.ack(&batch).await {
                tracing::debug!("workflow events: {e}");
            }
            return Ok(batch.events.len());
        }
        let mut changes = Vec::with_capacity(jobs.len() + 1);
        for job in &jobs {
            changes.push(enqueue_change(job)?.1);
        }
        changes.push(Change::new(
            batch.ack(),
            AuditEntry::new(
                "workflow.events",
                format!("events:{}", batch.after),
                AuditDetails::new()
                    .int("after", batch.after)
                    .int("last", batch.last_id().unwrap_or(batch.after))
                    .int("executions", jobs.len() as i64),
            ),
        ));
        match self
            .store
            .commit(&Actor::System("workflow-events"), changes)
            .await
        {
            Ok(_) => Ok(batch.events.len()),
            // Another process moved the cursor first: it enqueued this batch.
            Err(StoreError::NotFound(_) | StoreError::Conflict(_)) => Ok(batch.events.len()),
            Err(e) => Err(e.into()),
        }
    }

    /// The jobs a batch starts (nothing written).
    pub async fn plan(&self, batch: &Batch) -> Result<Vec<NewJob>, TriggerError> {
        let active = self.set.load(&self.store).await?;
        let mut jobs = Vec::new();
        for record in &batch.events {
            let kind = trigger_kind(&record.event);
            jobs.extend(jobs_for(&active, record, &kind));
        }
        Ok(jobs)
    }

    /// Handle batches until `stopped` turns true; sleep until a write in this process or
    /// `poll` when the stream is drained.
    pub async fn run(self, poll: Duration, batch: i64, mut stopped: watch::Receiver<bool>) {
        let mut writes = self.store.writes();
        while !*stopped.borrow() {
            match self.handle_batch(batch).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!("workflow events: {e}"),
            }
            tokio::select! {
                woke = writes.changed() => {
                    if woke.is_err() {
                        tokio::time::sleep(poll).await;
                    } else {
                        // Writes come in bursts (a busy engine commits often): read the
                        // stream at most every QUIET, not once per commit.
                        tokio::time::sleep(QUIET.min(poll)).await;
                    }
                }
                () = tokio::time::sleep(poll) => {}
                _ = stopped.changed() => {}
            }
        }
    }
}
