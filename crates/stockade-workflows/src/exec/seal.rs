//! Step outputs holding buyer data: sealed under the vault in the journal, or not stored.
//!
//! An output holds buyer data when its step kind lists PII outputs (`order.get`,
//! `marketplace.fetch_orders`, see [`crate::steps`]) and the workflow declares
//! `permissions.buyer_fields` (otherwise those steps mask the fields). Such an output is
//! stored as [`StepOutput::Sealed`]: AES-GCM under the vault's system data key, bound to
//! `job_steps.output_sealed` and the row `<execution>/<step path>`, so it cannot be
//! moved to another row. Without a vault, or if sealing fails, it is not stored at all
//! (a resumed execution then cannot read it: a later reference fails as a missing value).
//! On resume a sealed output is opened and put back in the scope with its PII marks.
//!
//! A trigger carrying buyer data (an order event's buyer, say) is sealed the same way by
//! whoever enqueues the execution ([`seal_trigger`]): the job row then holds
//! `{"$sealed": "<hex ciphertext>"}` instead of the data. The executor opens it when the
//! run starts and marks all of `trigger` as buyer data in the scope.
//!
//! A step whose output derives from its `with` (`script`) and whose evaluated `with`
//! carried buyer data yields buyer data in all of its output ([`output_pii`]): it is
//! sealed and marked like the order steps' buyer fields.

use serde_json::{Value, json};
use stockade_core::Actor;
use stockade_store::StepOutput;
use stockade_vault::{FieldContext, KeyOwner, Vault, VaultError};

use super::{Executor, Frame};
use crate::steps;

const TABLE: &str = "job_steps";
const COLUMN: &str = "output_sealed";

/// The key a sealed trigger is stored under.
pub const SEALED_KEY: &str = "$sealed";

fn trigger_context() -> FieldContext<'static> {
    FieldContext::new("jobs", "payload", "trigger")
}

/// `trigger` sealed under the vault, as a job's payload holds it (`{"$sealed": hex}`).
pub async fn seal_trigger(
    vault: &Vault,
    trigger: &Value,
    actor: &Actor,
) -> Result<Value, VaultError> {
    let mut bytes = serde_json::to_vec(trigger).unwrap_or_default();
    let sealed = vault
        .encrypt(&KeyOwner::system(), &trigger_context(), &bytes, actor)
        .await;
    bytes.iter_mut().for_each(|b| *b = 0);
    Ok(json!({ SEALED_KEY: hex::encode(sealed?) }))
}

/// The PII paths of a `kind` step's output in `frame`'s workflow (empty: plain data).
pub(super) fn pii_paths(frame: &Frame, kind: &str) -> &'static [&'static str] {
    if !frame.def.workflow.permissions.buyer_fields {
        return &[];
    }
    steps::find(kind).map_or(&[], |k| k.pii_outputs)
}

/// Kinds whose output derives from their `with` (pure computation on it), with the
/// paths of their whole output: when the evaluated `with` carried buyer data, so does
/// all of the output (a dynamic taint, on top of [`pii_paths`]).
const DERIVED: &[(&str, &[&str])] = &[("script", &["items", "logs"])];

/// The output paths a `kind` step marks when its `with` carried buyer data.
pub(super) fn derived_pii(kind: &str) -> Option<&'static [&'static str]> {
    DERIVED.iter().find(|(k, _)| *k == kind).map(|(_, p)| *p)
}

/// The PII paths of a step's output: its kind's, or all of a derived output when its
/// `with` carried buyer data (`tainted`).
pub(super) fn output_pii(frame: &Frame, kind: &str, tainted: bool) -> &'static [&'static str] {
    match derived_pii(kind) {
        Some(paths) if tainted => paths,
        _ => pii_paths(frame, kind),
    }
}

impl Executor {
    /// How `output` is stored: plain JSON, or sealed when it holds buyer data.
    pub(super) async fn stored_output(
        &self,
        frame: &Frame,
        row: &str,
        pii: bool,
        output: &Value,
    ) -> StepOutput {
        if !pii {
            return StepOutput::Json(output.clone());
        }
        let Some(vault) = &self.vault else {
            return StepOutput::None;
        };
        let Ok(mut bytes) = serde_json::to_vec(output) else {
            return StepOutput::None;
        };
        let sealed = vault
            .encrypt(
                &KeyOwner::system(),
                &FieldContext::new(TABLE, COLUMN, row),
                &bytes,
                &frame.actor,
            )
            .await;
        bytes.iter_mut().for_each(|b| *b = 0);
        sealed.map_or(StepOutput::None, StepOutput::Sealed)
    }

    /// A sealed output opened again (`None`: no vault, or it cannot be opened).
    pub(super) async fn opened_output(&self, row: &str, sealed: &[u8]) -> Option<Value> {
        let vault = self.vault.as_ref()?;
        let plain = vault
            .decrypt(&FieldContext::new(TABLE, COLUMN, row), sealed)
            .await
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }
}

impl Executor {
    /// A job's trigger as the run sees it, and whether it was sealed (buyer data). An
    /// error when it is sealed and cannot be opened.
    pub(super) async fn opened_trigger(&self, trigger: &Value) -> Result<(Value, bool), String> {
        let Some(hex_text) = trigger
            .as_object()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.get(SEALED_KEY))
            .and_then(Value::as_str)
        else {
            return Ok((trigger.clone(), false));
        };
        let vault = self
            .vault
            .as_ref()
            .ok_or("the trigger is sealed (buyer data) and this executor has no vault")?;
        let bytes = hex::decode(hex_text).map_err(|_| "the sealed trigger is not hex")?;
        let plain = vault
            .decrypt(&trigger_context(), &bytes)
            .await
            .map_err(|_| "the sealed trigger could not be opened (key shredded?)")?;
        let value = serde_json::from_slice(&plain).map_err(|_| "the sealed trigger is not JSON")?;
        Ok((value, true))
    }
}
