//! Stockade workflow definitions: the YAML format ([`definition`]), the expression
//! language ([`expr`]), schedules ([`schedule`]) and the linter ([`lint`]).
//!
//! These modules are pure: they turn text into checked definitions and evaluate
//! expressions over JSON, with no I/O. The one I/O module is [`exec`], the executor,
//! which runs definitions on the store's job queue and journal.

pub mod definition;
pub mod duration;
pub mod exec;
pub mod expr;
pub mod lint;
pub mod schedule;
pub mod schema;
pub mod secrets;
pub mod steps;
pub mod yaml;

pub use definition::Workflow;
pub use lint::{LintOptions, Problem, Rule, lint_document, lint_set};
