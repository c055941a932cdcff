//! Stockade workflow definitions: the YAML format ([`definition`]), the expression
//! language ([`expr`]), schedules ([`schedule`]), the linter ([`lint`]), line diffs of
//! versions ([`diff`]), the registry of reviewed versions ([`registry`]) and the executor
//! ([`exec`]).
//!
//! The definition, expression, schedule and lint modules are pure (no I/O, no store): they
//! turn text into checked definitions and evaluate expressions over JSON. Two modules do
//! I/O: [`registry`] owns the `workflows` and `workflow_versions` tables and writes them
//! only through audited store commits; [`exec`], the executor, runs definitions on the
//! store's job queue and journal; [`engine`] runs the executor in a server process
//! (workers, reaper) on the registry's reviewed versions; [`runs`] starts manual runs and
//! reads executions for operators; [`operate`] cancels and reruns them; [`triggers`]
//! starts executions by itself (schedules, events) and queues webhook deliveries for the
//! server.

pub mod definition;
pub mod diff;
pub mod duration;
pub mod engine;
pub mod exec;
pub mod expr;
pub mod lint;
pub mod operate;
pub mod registry;
pub mod runs;
pub mod schedule;
pub mod schema;
pub mod secrets;
pub mod steps;
pub mod triggers;
pub mod yaml;

pub use definition::Workflow;
pub use lint::{LintOptions, Problem, Rule, lint_document, lint_set};
