//! Stockade workflow definitions: the YAML format ([`definition`]), the expression
//! language ([`expr`]), schedules ([`schedule`]) and the linter ([`lint`]).
//!
//! No I/O and no store: this crate turns text into checked definitions and evaluates
//! expressions over JSON. Running workflows (the queue, the journal, the engine) lives
//! elsewhere and builds on these types.

pub mod definition;
pub mod duration;
pub mod expr;
pub mod lint;
pub mod schedule;
pub mod schema;
pub mod secrets;
pub mod steps;
pub mod yaml;

pub use definition::Workflow;
pub use lint::{LintOptions, Problem, Rule, lint_document, lint_set};
