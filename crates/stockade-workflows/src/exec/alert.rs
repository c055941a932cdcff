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

use serde_json::{Value, json};
use stockade_core::event::{Event, WorkflowAlert};
use stockade_core::time::now_ms;
use stockade_store::{AuditDetails, AuditEntry, Change};

use super::error::{ErrorClass, StepError, scrubbed};
use super::handlers::{Reach, StepCtx, StepDone, StepFuture, StepHandler};
use crate::expr::Evaluated;

/// The longest alert message kept, in characters (the channels cut further).
pub const ALERT_MESSAGE_MAX: usize = 2000;

/// The `alert.send` handler.
#[derive(Debug, Default)]
pub struct AlertSend;

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
            };
            let change = Change::new(
                stockade_store::events::append(now_ms(), &Event::WorkflowAlert(alert)),
                AuditEntry::new(
                    "workflow.alert",
                    format!("workflow:{}", ctx.workflow),
                    AuditDetails::new()
                        .str("step", ctx.step)
                        .str("severity", &severity)
                        .str("key", ctx.idempotency_key),
                ),
            );
            Ok(StepDone {
                output: json!({ "sent": true, "key": ctx.idempotency_key }),
                changes: vec![change],
            })
        })
    }
}
