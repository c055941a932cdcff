//! Incident response: an incident (or a drill) with a timeline, and the actions the
//! company's policy commits to — revoke affected keys at once, isolate the affected
//! workflow or connection, lock the instance down, notify the security channel, find
//! the root cause and report, notify marketplaces and clients in time.
//!
//! - [`IncidentKit`] ([`actions`]): open, revoke, isolate, release, lockdown, note,
//!   notify, close, and the record of a report's export, each taking the acting
//!   [`stockade_core::Actor`]; every step is one audited commit with its timeline entry
//!   and an alert event.
//! - [`model`]: the stored incidents and the reads ([`list`], [`show`]).
//! - [`deadline`]: the notification deadlines (24 h from detection).
//! - [`report`]: the Markdown and JSON report.
//! - [`drill`]: the evidence that the plan was exercised ([`last_drill`]).
//!
//! The controls (isolation, lockdown) are rows that every process reads into
//! [`stockade_store::Controls`] at least every second; see there.

pub mod actions;
pub mod deadline;
pub mod drill;
pub mod model;
pub mod report;
pub mod text;

pub use actions::{ActionOutcome, IncidentKit, Isolate, NewIncident, Release, RevokeTarget, Scope};
pub use deadline::{Deadline, DeadlineState};
pub use drill::{DrillEvidence, last_drill, last_exercise};
pub use model::{
    Control, Incident, IncidentSummary, IncidentView, Party, Severity, controls, list, show,
    show_at,
};

/// Why an incident action was refused or failed. Messages say what to do and never
/// repeat free text, tokens or personal data.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// Refused: nothing was changed (one `incident.refused` audit row was written).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] stockade_store::StoreError),
    #[error(transparent)]
    Access(#[from] stockade_access::AccessError),
    #[error(transparent)]
    Vault(#[from] stockade_vault::VaultError),
    #[error(transparent)]
    Sync(#[from] stockade_sync::SyncError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = IncidentError> = std::result::Result<T, E>;
