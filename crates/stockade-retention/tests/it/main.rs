//! Retention tests against real SQLite and PostgreSQL.

mod retention;
mod seed;
