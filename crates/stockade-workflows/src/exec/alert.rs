//! `alert.send`: an alert to the configured channels through the alert pipeline.
//!
//! The step writes nothing itself: its effect is one typed event
//! ([`Event::WorkflowAlert`]) appended in the step's fenced journal commit. The alert
//! router (stockade-alerts) turns the event into one outbox row per channel that takes
//! its severity, aggregated under the key `workflow-alert:<idempotency key>`.
//!
//! Invariants: the event is written together with the step's "succeeded" record or not
//! at all, so a step re-run after a crash (or a retry) cannot alert twice, and should the
//! same step's event ever be appended again it folds into the first alert (same key). The
//! title and message are scrubbed of secrets and contact data before they are stored;
//! buyer data needs the step's reviewed `allow_pii`, checked here at run time.
//!
//! `channel: NAME` addresses one configured `[[alerts.channel]]`: the event carries the
//! name and the router gives the alert to that channel only. When the executor knows the
//! configured channel names ([`AlertChannels`], given by the server from its alert
//! config, read at each run so a reload counts), a name not among them fails the step
//! (`invalid`, naming the channel and the known ones) before anything is written.

use serde_json::{Value, json};
use stockade_core::event::{Event, WorkflowAlert};
use stockade_core::time::now_ms;
use stockade_store::{AuditDetails, AuditEntry, Change};

use super::error::{ErrorClass, StepError, scrubbed};
use super::handlers::{Reach, StepCtx, StepDone, StepFuture, StepHandler};
use crate::expr::Evaluated;

/// The longest alert message kept, in characters (the channels cut further).
pub const ALERT_MESSAGE_MAX: usize = 2000;

/// The configured alert channel names, read when a step runs (the server's alert config
/// can be reloaded).
#[derive(Clone)]
pub struct AlertChannels(pub std::sync::Arc<dyn Fn() -> Vec<String> + Send + Sync>);

impl std::fmt::Debug for AlertChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AlertChannels").field(&(self.0)()).finish()
    }
}

impl AlertChannels {
    /// A fixed list of names.
    pub fn fixed(names: Vec<String>) -> AlertChannels {
        AlertChannels(std::sync::Arc::new(move || names.clone()))
    }
}

/// The `alert.send` handler (`channels`: the configured names; `None` checks no name at
/// run time — the router then simply finds no such channel).
#[derive(Debug, Default)]
pub struct AlertSend {
    pub channels: Option<AlertChannels>,
}

impl AlertSend {
    /// The `channel` parameter, checked against the configured names.
    fn channel(&self, value: &Value) -> Result<Option<String>, StepError> {
        let name = match value.get("channel") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            Some(_) => {
                return Err(StepError::new(
                    ErrorClass::Invalid,
                    "alert.send: `channel` is the name of a configured alert channel",
                ));
            }
        };
        if let Some(known) = &self.channels {
            let known = (known.0)();
            if !known.contains(&name) {
                let list = if known.is_empty() {
                    "none is configured".to_owned()
                } else {
                    format!("configured: {}", known.join(", "))
                };
                return Err(StepError::new(
                    ErrorClass::Invalid,
                    format!(
                        "alert.send: no alert channel named {} ({list}; see [[alerts.channel]])",
                        scrubbed(&name)
                    ),
                ));
            }
        }
        Ok(Some(name))
    }
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

impl StepHandler for AlertSend {
    /// The alert is an event in the step's commit; the router sends it afterwards.
    fn reach(&self) -> Reach {
        Reach::Nothing
    }

    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            let value = params
                .for_sink(ctx.allow_pii)
                .map_err(|e| StepError::new(ErrorClass::Permission, e.0))?;
            let message = text(value, "message")
                .ok_or_else(|| StepError::new(ErrorClass::Invalid, "alert.send needs a message"))?;
            let severity = text(value, "severity").unwrap_or_else(|| "warning".into());
            if !["info", "warning", "critical"].contains(&severity.as_str()) {
                return Err(StepError::new(
                    ErrorClass::Invalid,
                    "alert.send: `severity` is info, warning or critical",
                ));
            }
            let channel = self.channel(value)?;
            let alert = WorkflowAlert {
                execution: ctx.execution.to_owned(),
                key: ctx.idempotency_key.to_owned(),
                message: stockade_alerts::scrub::scrub(&message, ALERT_MESSAGE_MAX),
                severity: severity.clone(),
                step: ctx.step.to_owned(),
                title: text(value, "title")
                    .map(|t| scrubbed(&t))
                    .unwrap_or_default(),
                version: ctx.version,
                workflow: ctx.workflow.to_owned(),
                channel: channel.clone(),
            };
            let mut details = AuditDetails::new()
                .str("step", ctx.step)
                .str("severity", &severity)
                .str("key", ctx.idempotency_key);
            if let Some(c) = &channel {
                details = details.str("channel", c);
            }
            let change = Change::new(
                stockade_store::events::append(now_ms(), &Event::WorkflowAlert(alert)),
                AuditEntry::new(
                    "workflow.alert",
                    format!("workflow:{}", ctx.workflow),
                    details,
                ),
            );
            Ok(StepDone {
                output: json!({ "sent": true, "key": ctx.idempotency_key, "channel": channel }),
                changes: vec![change],
            })
        })
    }
}

/// The `channel` each `alert.send` step of `workflow` names literally (step id, channel),
/// nested steps included: what `workflow apply` checks against the configured channels.
pub fn named_channels(workflow: &crate::definition::Workflow) -> Vec<(String, String)> {
    fn walk(steps: &[crate::definition::Step], out: &mut Vec<(String, String)>) {
        for s in steps {
            if s.uses.value == "alert.send"
                && let Some(c) = s
                    .with
                    .as_ref()
                    .and_then(|w| w.value.get("channel"))
                    .and_then(|c| c.value.as_str())
            {
                out.push((s.id.value.clone(), c.to_owned()));
            }
            for child in [&s.then, &s.otherwise, &s.default, &s.steps]
                .into_iter()
                .flatten()
            {
                walk(child, out);
            }
            for child in s.cases.iter().flat_map(|c| c.values()) {
                walk(child, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&workflow.steps, &mut out);
    out
}
