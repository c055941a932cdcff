//! The JSON Schema of the workflow format, generated from the types in
//! [`crate::definition`]; shipped as `docs/workflow.schema.json` (a test keeps the file
//! current) so editors validate and complete workflow files.

/// The schema as pretty-printed JSON with a trailing newline.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(crate::definition::Workflow);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
