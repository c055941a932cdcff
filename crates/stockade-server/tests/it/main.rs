//! stockade-server's integration tests: the real server over real TLS on `127.0.0.1:0`,
//! a fresh database per test (SQLite, and PostgreSQL when STOCKADE_TEST_PG_URL is set).
//! One binary; each module guards one area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod hooks;
mod metrics_gate;
mod openapi;
// The orders part of the console and API.
mod orders;
mod workflow_hooks;
mod workflows;
// The Workflows, Executions and Alerts pages.
mod console_workflows;
// Bans across processes on PostgreSQL (wake-ups).
mod ban_wake;
