//! The JSON Schema of the workflow format, generated from the types in
//! [`crate::definition`] and completed from the step table ([`crate::steps::KINDS`]):
//! per `uses`, the parameters `with` takes (so an editor completes and checks them).
//! Shipped as `docs/workflow.schema.json`; a test keeps the file current.

use serde_json::{Map, Value, json};

use crate::steps::KINDS;

/// The schema as pretty-printed JSON with a trailing newline.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(crate::definition::Workflow);
    let mut value = schema.to_value();
    if let Some(step) = value
        .pointer_mut("/$defs/Step")
        .and_then(Value::as_object_mut)
    {
        step.insert("allOf".into(), Value::Array(per_kind()));
    }
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// One `if uses = KIND then with = {its parameters}` clause per step kind.
fn per_kind() -> Vec<Value> {
    KINDS
        .iter()
        .map(|k| {
            let properties: Map<String, Value> = k
                .params
                .iter()
                .map(|p| (p.name.to_owned(), json!({})))
                .collect();
            let required: Vec<&str> = k
                .params
                .iter()
                .filter(|p| p.required)
                .map(|p| p.name)
                .collect();
            let mut with = json!({
                "type": "object",
                "description": k.summary,
                "properties": properties,
                "additionalProperties": false,
            });
            if !required.is_empty()
                && let Some(o) = with.as_object_mut()
            {
                o.insert("required".into(), json!(required));
            }
            let mut then = json!({ "properties": { "with": with } });
            if !required.is_empty()
                && let Some(o) = then.as_object_mut()
            {
                o.insert("required".into(), json!(["with"]));
            }
            json!({
                "if": { "properties": { "uses": { "const": k.name } }, "required": ["uses"] },
                "then": then,
            })
        })
        .collect()
}
