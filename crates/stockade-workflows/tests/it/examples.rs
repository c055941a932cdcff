//! The example workflows lint clean, and docs/workflow.schema.json is current.

use std::path::PathBuf;

use stockade_core::Environment;
use stockade_workflows::{LintOptions, lint_set};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_example_workflows_lint_clean_for_prod() {
    let dir = root().join("examples/workflows");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    let options = LintOptions {
        env: Some(Environment::Prod),
        ..LintOptions::default()
    };
    for (file, problems) in lint_set(&files, &options) {
        assert!(problems.is_empty(), "{file}: {problems:?}");
    }
}

/// Regenerate with `STOCKADE_UPDATE_SCHEMA=1 cargo test -p stockade-workflows`.
#[test]
fn the_committed_json_schema_is_current() {
    let path = root().join("docs/workflow.schema.json");
    let generated = stockade_workflows::schema::json_schema();
    if std::env::var_os("STOCKADE_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/workflow.schema.json is stale: run STOCKADE_UPDATE_SCHEMA=1 cargo test -p stockade-workflows"
    );
    let v: serde_json::Value = serde_json::from_str(&generated).unwrap();
    let text = v.to_string();
    for must in [
        "marketplace.fetch_orders",
        "run_once",
        "on_limit",
        "allow_pii",
        "buyer_fields",
        "\"const\":\"http.request\"",
        "credential_header",
    ] {
        assert!(text.contains(must), "{must}");
    }
}

#[test]
fn the_worked_example_in_the_docs_lints_clean() {
    let docs = std::fs::read_to_string(root().join("docs/workflows.md")).unwrap();
    let start = docs.find("```yaml\n# yaml-language-server").unwrap() + "```yaml\n".len();
    let len = docs[start..].find("```").unwrap();
    let example = &docs[start..start + len];
    let linted = stockade_workflows::lint_document(example, &LintOptions::default());
    assert!(linted.workflow.is_some());
    assert_eq!(linted.problems, vec![]);
}
