//! Integration tests of the audit mirror: against the sandbox's NocoDB simulator on
//! SQLite and PostgreSQL (pacing, 429s, a refused token, 100-row batches, verify, a
//! missing column), the JSON-lines sink (rotation, resume, a torn last line), and a
//! REAL NocoDB 0.301.3 when installed (see `real.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod file;
mod real;
mod sim;
mod support;
