//! Converts n8n workflow exports into Stockade workflow YAML plus a report of what was
//! converted, what needs a human and what could not be converted.
//!
//! Pure: [`import`] takes the export's bytes and [`Options`], and returns text; it reads
//! and writes nothing (the CLI, `stockade workflow import-n8n`, does the I/O and lints
//! the result). Invariants:
//! - nothing is dropped silently: every node is in the report, and a node that cannot be
//!   converted becomes an `unsupported` step, which the linter always rejects, naming the
//!   node and its type;
//! - a value is translated only when exact; otherwise the original JavaScript is kept in
//!   a generated `script` step and the workflow's description carries a
//!   `NEEDS REVIEW (import-n8n)` line the linter reports (`needs-review`) until a human
//!   deletes it;
//! - secrets are never copied or invented: credentials become names to fill in with
//!   `stockade credential set`, secret-looking header values become credential
//!   references, and a secret-looking credential name is replaced by a safe one;
//! - input is bounded ([`MAX_INPUT`]); no input panics.

pub mod convert;
pub mod expr;
pub mod graph;
pub mod model;
pub mod nodes;
pub mod report;
pub mod yaml;

use std::collections::BTreeSet;

pub use model::{ImportError, MAX_INPUT};
pub use report::{Converted, CredentialNote, NodeReport, Status};

/// What the caller knows that an export does not hold.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The NocoDB base URL (`https://nocodb.example.com`): an export holds only the
    /// credential's name, not its URL.
    pub nocodb_url: Option<String>,
}

/// Every workflow of an export, converted.
#[derive(Debug, Clone)]
pub struct Import {
    pub workflows: Vec<Converted>,
}

impl Import {
    /// The report of every workflow, as the CLI prints it.
    pub fn report(&self) -> String {
        self.workflows
            .iter()
            .map(Converted::report)
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn workflow(&self, name: &str) -> Option<&Converted> {
        self.workflows.iter().find(|w| w.name == name)
    }
}

/// Convert an export (one workflow object or an array of them).
pub fn import(bytes: &[u8], options: &Options) -> Result<Import, ImportError> {
    let workflows = model::parse(bytes)?;
    let mut env = convert::Env {
        nocodb_url: options.nocodb_url.clone(),
        ..Default::default()
    };
    let mut names: Vec<String> = Vec::new();
    let mut used = BTreeSet::new();
    for (i, w) in workflows.iter().enumerate() {
        let mut base = slug(&w.name, '-');
        base.truncate(56);
        let base = base.trim_end_matches(['-', '.']).to_owned();
        let base = if base.is_empty() {
            format!("n8n-workflow-{}", i + 1)
        } else {
            base
        };
        let mut name = base.clone();
        let mut k = 2;
        while !used.insert(name.clone()) {
            name = format!("{base}-{k}");
            k += 1;
        }
        if let Some(id) = &w.id {
            env.by_id.insert(id.clone(), name.clone());
            let has = |kind: &str| {
                w.nodes
                    .iter()
                    .any(|n| n.short_kind() == kind && !n.disabled)
            };
            if has("executeWorkflowTrigger") {
                env.subworkflows.insert(id.clone());
            }
            if has("errorTrigger") {
                env.error_workflows.insert(id.clone());
            }
        }
        names.push(name);
    }
    let workflows = workflows
        .iter()
        .zip(&names)
        .map(|(w, name)| convert::workflow(w, name, &env))
        .collect();
    Ok(Import { workflows })
}

/// Lower-case ASCII letters and digits, other runs of characters as one `sep`, trimmed;
/// starting with a letter or digit.
pub fn slug(text: &str, sep: char) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with(sep) {
            out.push(sep);
        }
    }
    out.trim_end_matches(sep)
        .chars()
        .take(64)
        .collect::<String>()
        .trim_end_matches(sep)
        .to_owned()
}
