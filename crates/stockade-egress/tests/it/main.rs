//! Egress gateway integration tests: real TLS on loopback (an in-process axum server
//! with a generated CA, and `openssl s_server` for TLS 1.1), the request log and events
//! on SQLite and PostgreSQL (when STOCKADE_TEST_PG_URL is set), and the lint that keeps
//! every other crate from building its own HTTP client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway;
mod harness;
mod lint;
mod log;
