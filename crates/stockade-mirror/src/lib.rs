//! The audit mirror: every audit row copied, in `seq` order, to a NocoDB table
//! (`[audit.mirror.nocodb]`) and to a rotated JSON-lines file (`[audit.mirror.file]`),
//! for the staff who read NocoDB and for syslog or SIEM shippers.
//!
//! Invariants:
//! - **The outbox is the audit table itself.** Nothing is queued on the write path: a
//!   change commits exactly as without a mirror, and the mirror reads the chain in the
//!   background (woken by this process's writes, else polling every [`POLL`]).
//! - **No duplicate, no gap.** A sink resumes from what the destination already holds:
//!   NocoDB's highest `seq` (`sort=-seq&limit=1`), the file's last complete line. Rows
//!   go in `seq` order in batches of at most [`MAX_BATCH`], so a retry after a lost answer
//!   never sends a row twice and a restart never skips one.
//! - **No silent rewrite of history.** A row deleted or edited in NocoDB by hand stays as
//!   it is; `stockade audit mirror verify` names it.
//! - The API token is a stored credential read only to send it as `xc-token`; it never
//!   appears in an error, a log line, a metric label, an alert or the state table.
//!
//! Modules: [`config`] (settings), [`columns`] (the NocoDB table's columns and cells),
//! [`noco`] (the NocoDB client over egress), [`state`] (`audit_mirror_state`),
//! [`file_sink`] (the JSON-lines sink), [`run`] (the background loop), [`verify`],
//! [`status`], [`telemetry`].

pub mod columns;
pub mod config;
pub mod file_sink;
pub mod init;
pub mod noco;
pub mod run;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod verify;

use std::time::Duration;

pub use config::{FileSinkConfig, MirrorConfig, NocoSinkConfig};
pub use init::{InitOutcome, init};
pub use noco::{Noco, NocoError};
pub use run::{Mirror, MirrorDeps};
pub use status::{SinkStatus, status};
pub use telemetry::MirrorTelemetry;
pub use verify::{Difference, VerifyOutcome};

/// The most rows in one NocoDB insert (NocoDB's payload limit).
pub const MAX_BATCH: usize = 100;
/// The highest pace accepted. NocoDB documents 5 requests/s per user (NocoDB Cloud
/// enforces it); a self-hosted NocoDB answered 10–20 requests/s without a 429, and a
/// mirror that must keep up with more than ~400 audit rows/s needs more than 4.
pub const MAX_RATE: f64 = 20.0;
/// The default pace, below NocoDB's documented limit.
pub const DEFAULT_RATE: f64 = 4.0;
/// How often a sink looks for new rows when no write of this process woke it.
pub const POLL: Duration = Duration::from_millis(500);
/// The wait after a 429 without `Retry-After` (NocoDB's documented 30 s).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The sink names used in `audit_mirror_state`.
pub const SINK_NOCODB: &str = "nocodb";
pub const SINK_FILE: &str = "file";

/// Errors of the mirror's local side (store, credential).
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("database: {0}")]
    Store(#[from] stockade_store::StoreError),
    #[error("{0}")]
    Noco(#[from] NocoError),
    #[error("{0}")]
    File(String),
}
