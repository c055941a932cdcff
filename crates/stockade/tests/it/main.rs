//! The `stockade` binary end to end: help, exit codes, environments, master key checks,
//! key rotation, audit verify/export, on SQLite and (when STOCKADE_TEST_PG_URL is set)
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alert_history;
mod alerts;
mod app_stop;
mod audit_head;
mod browser;
mod browser_viewer;
mod cli;
mod cli_edges;
mod console;
mod console_compliance;
mod credentials;
mod demo;
mod dev_tools;
mod discover;
mod harness;
mod json_logs;
mod marketplaces;
mod metrics;
mod onboarding;
mod reload;
mod serve_refusals;
mod server;
mod signin_forms;
mod sync;
mod unmatched;
mod webdriver;
mod workflow_crash;
mod workflow_import;
mod workflow_lint;
mod workflow_new;
mod workflow_runs;
mod workflow_triggers;
mod workflow_versions;
