//! Store integration tests: every test runs on SQLite and, when STOCKADE_TEST_PG_URL is
//! set, on PostgreSQL (each test in its own schema). Without the variable the PostgreSQL
//! variants print that they were skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit_chain;
// The console's connections page.
mod connection_signals;
mod events;
mod harness;
mod jobs;
mod journal;
mod lifecycle;
mod prune;
mod reader_pool;
mod typed_rows;
// Incident controls across processes (NOTIFY on PostgreSQL, the periodic read).
mod controls;
// Named leases with fencing tokens and the live processes (scale-out).
mod leases;
// Revisions per listing per UTC day, fenced by the connection's lease.
mod revisions;
// Webhook fetches handed to a connection's owner.
mod fetch_requests;
// A commit whose connection a database restart cuts (PostgreSQL).
mod lost_connection;
mod wake;
