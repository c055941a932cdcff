//! Stockade workflow definitions: the YAML format ([`definition`]), the expression
//! language ([`expr`]), schedules ([`schedule`]), the linter ([`lint`]), line diffs of
//! versions ([`diff`]) and the registry of reviewed versions ([`registry`]).
//!
//! Every module but [`registry`] is pure (no I/O, no store): they turn text into checked
//! definitions and evaluate expressions over JSON. [`registry`] owns the `workflows` and
//! `workflow_versions` tables and writes them only through audited store commits.

pub mod definition;
pub mod diff;
pub mod duration;
pub mod expr;
pub mod lint;
pub mod registry;
pub mod schedule;
pub mod schema;
pub mod secrets;
pub mod steps;
pub mod yaml;

pub use definition::Workflow;
pub use lint::{LintOptions, Problem, Rule, lint_document, lint_set};
