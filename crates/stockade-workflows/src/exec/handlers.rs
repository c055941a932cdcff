//! Effect steps: the [`StepHandler`] trait and the built-in handlers.
//!
//! A handler gets the step's evaluated `with` and a [`StepCtx`], and returns the step's
//! output and the [`Change`]s that are its effects. It writes nothing itself: the
//! executor puts those changes in the step's fenced journal commit, so an effect, its
//! audit row and the step's "succeeded" record are one transaction. A handler that
//! reaches outside the database (HTTP, alerts) must send [`StepCtx::idempotency_key`],
//! which is the same on every attempt of the step.

use std::future::Future;
use std::pin::Pin;

use serde_json::{Value, json};
use stockade_core::Actor;
use stockade_store::{AuditDetails, AuditEntry, Change, Store};

use super::error::{ErrorClass, StepError};
use crate::expr::Evaluated;

/// What a step attempt runs with.
#[derive(Debug)]
pub struct StepCtx<'a> {
    pub store: &'a Store,
    /// The execution (job) id.
    pub execution: &'a str,
    pub workflow: &'a str,
    pub version: i64,
    /// The step's path in the journal (`notify`, `each#2/note`, `call/inner`).
    pub step: &'a str,
    /// `<execution>/<step path>`: the same on every attempt.
    pub idempotency_key: &'a str,
    pub attempt: i64,
    pub actor: &'a Actor,
    /// The step declares a reviewed `allow_pii`.
    pub allow_pii: bool,
    /// The running workflow's permissions (checked at run time by the effect steps).
    pub permissions: &'a crate::definition::Permissions,
}

/// A successful attempt: its output and its effects (committed with its journal entry).
#[derive(Debug, Default)]
pub struct StepDone {
    pub output: Value,
    pub changes: Vec<Change>,
}

/// A step's future.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<StepDone, StepError>> + Send + 'a>>;

/// What a step kind reaches besides the changes it returns, which decides how its
/// attempts are journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Reads nothing and does nothing outside its changes (`audit.note`, control steps):
    /// its record and effects may wait for the run's next commit.
    Nothing,
    /// Reads the database but does nothing outside its changes (`stock.get`,
    /// `stock.adjust`, `order.get`): it may wait too, but what the run has not committed
    /// yet is committed before it reads, so it sees its own execution's earlier effects.
    Database,
    /// Reaches outside the database (HTTP, a marketplace, an alert channel): its start is
    /// journaled before it runs, so a crash in the middle re-runs it with the same
    /// idempotency key, and everything before it is committed first.
    Outside,
}

/// A kind of effect step.
pub trait StepHandler: Send + Sync {
    /// Run one attempt with the evaluated `with` (`params`).
    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a>;

    /// What the step reaches ([`Reach::Outside`] unless the handler says otherwise, the
    /// safe default for a new kind).
    fn reach(&self) -> Reach {
        Reach::Outside
    }
}

/// The longest `audit.note` message kept, in characters.
pub const NOTE_MAX: usize = 500;

/// `audit.note`: one audit row, actor `workflow:NAME@VERSION/EXECUTION`, action
/// `workflow.note`, the message and subject in its details.
#[derive(Debug, Default)]
pub struct AuditNote;

impl StepHandler for AuditNote {
    fn reach(&self) -> Reach {
        Reach::Nothing
    }

    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            let value = params
                .for_sink(ctx.allow_pii)
                .map_err(|e| StepError::new(ErrorClass::Permission, e.0))?;
            let text = |key: &str| -> Option<String> {
                value.get(key).map(|v| match v {
                    Value::String(s) => s.chars().take(NOTE_MAX).collect(),
                    other => other.to_string().chars().take(NOTE_MAX).collect(),
                })
            };
            let message = text("message")
                .ok_or_else(|| StepError::new(ErrorClass::Invalid, "audit.note needs a message"))?;
            let mut details = AuditDetails::new()
                .str("step", ctx.step)
                .str("message", &message);
            if let Some(subject) = text("subject") {
                details = details.str("subject", &subject);
            }
            let note = Change::event(AuditEntry::new(
                "workflow.note",
                format!("workflow:{}", ctx.workflow),
                details,
            ));
            Ok(StepDone {
                output: json!({ "noted": true }),
                changes: vec![note],
            })
        })
    }
}

/// A step kind this build does not run: a typed `unsupported` error at run time.
pub(crate) fn unsupported(kind: &str) -> StepError {
    let why = "not yet supported by this build";
    StepError::new(ErrorClass::Unsupported, format!("step kind {kind}: {why}"))
}

/// `unsupported`: a node an n8n import could not convert. Lint always rejects it, so it
/// runs only if a version slipped past review; then it fails (class `invalid`) naming
/// the node and its type, and does nothing else.
#[derive(Debug, Default)]
pub struct UnsupportedStep;

impl StepHandler for UnsupportedStep {
    fn reach(&self) -> Reach {
        Reach::Nothing
    }

    fn run<'a>(&'a self, _ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            let value = params.for_log();
            let text = |k: &str| {
                value
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned()
            };
            Err(StepError::new(
                ErrorClass::Invalid,
                format!(
                    "the n8n node {:?} of type `{}` was not converted to Stockade steps",
                    text("node"),
                    text("type")
                ),
            ))
        })
    }
}
