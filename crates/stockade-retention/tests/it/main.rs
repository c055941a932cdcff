//! Retention tests against real SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod retention;
mod seed;
