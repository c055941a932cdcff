//! Checks for workflows made by `stockade workflow import-n8n`: an `unsupported` step
//! (a node that could not be converted) is always an error naming the node and its
//! type, and a `NEEDS REVIEW (import-n8n)` line left by the importer (in the
//! description or a generated script) is reported until a human deletes it.
//!
//! Invariant: both are problems, never silent, so an imported workflow cannot be
//! applied in a form nobody has looked at.

use super::{Report, Rule};
use crate::definition::Workflow;
use crate::yaml::{Located, Node};

/// The marker the importer writes where a human must check something.
pub const REVIEW_MARKER: &str = "NEEDS REVIEW (import-n8n)";

pub(crate) fn check(w: &Workflow, tree: &Located<Node>, report: &mut Report) {
    for step in w.all_steps() {
        if step.uses.value != "unsupported" {
            continue;
        }
        let text = |k: &str| {
            step.param(k)
                .and_then(|v| v.value.as_str().map(str::to_owned))
        };
        let node = text("node").unwrap_or_else(|| "?".into());
        let kind = text("type").unwrap_or_else(|| "?".into());
        let reason = text("reason").map(|r| format!(": {r}")).unwrap_or_default();
        report.add(
            step.uses.pos,
            Rule::UnsupportedNode,
            format!("step `{}` stands for the n8n node {node:?} of type `{kind}`, which was not converted{reason}; replace it with Stockade steps or remove it", step.id.value),
        );
    }
    let mut strings = Vec::new();
    tree.value.strings(tree.pos, &mut strings);
    for (s, pos) in strings {
        let n = s.matches(REVIEW_MARKER).count();
        if n > 0 {
            report.add(
                pos,
                Rule::NeedsReview,
                format!("{n} point(s) marked `{REVIEW_MARKER}` by the importer: check each, then delete its line"),
            );
        }
    }
}
