//! The mirror against a REAL NocoDB 0.301.3 (see the module in `main.rs`).
