//! The `stockade` binary end to end: help, exit codes, environments, master key checks,
//! key rotation, audit verify/export, on SQLite and (when STOCKADE_TEST_PG_URL is set)
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alert_history;
mod alerts;
mod app_stop;
mod audit_head;
// backup:
mod backup;
mod browser;
mod browser_viewer;
mod cli;
mod cli_edges;
mod console;
// The Connections and Security pages and their API.
mod console_compliance;
mod console_ops;
mod console_ops_browser;
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
// The orders part of the console (browser).
mod console_orders;
// The Workflows, Executions and Alerts pages; Chinese alert messages.
mod alerts_zh;
mod console_workflows;
// The inventory, stock API and server timing.
mod bench_console;
mod console_stock;
mod console_stock_browser;
// Retention: the commands and the server's scheduled run.
mod retention;
// Audit mirror: `audit mirror init|status|verify` and the server's mirror.
mod audit_mirror;
// deploy: the systemd unit, `stockade deploy firewall|unit` and docs/deploy.md run.
mod deploy;
mod deploy_docs;
// Compliance report: `compliance report|verify`, the plaintext scan, TLS as served.
mod compliance_report;
// Incident response from the command line against a running server.
mod incident;
// Incident response in the console and its API (run from the Connections/Security test).
mod console_incidents;
// Scale-out: three `serve` processes on one PostgreSQL, two SIGKILLed.
mod scale_out;
// What runs once across the scale-out test's processes: scheduled workflow steps, alerts.
mod scale_out_once;
// The scale-out tests' rig (simulators, receivers, connections, `serve` nodes).
mod scale_out_rig;
// A clock jump in one of two processes on PostgreSQL (libfaketime).
mod clock_jump;
// `bench sync --sandbox-process`, `stockade sandbox --ready-file`.
mod bench_sandbox_process;
// A database restart mid-run on PostgreSQL, through a loopback proxy; the shared setup
// of the runs under load.
mod db_restart;
mod market_run;
mod pg_proxy;
// The database's reachability on /metrics while PostgreSQL is away (through the proxy).
mod db_reachable;
