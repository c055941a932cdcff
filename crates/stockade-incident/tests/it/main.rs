//! Incident response against real SQLite and PostgreSQL databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod flows;
mod kit;
