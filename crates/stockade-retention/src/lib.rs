//! Retention: how long each kind of data is kept, and the job that removes the rest.
//!
//! - [`rules`]: the rules per kind (buyer PII per marketplace, workflow executions, jobs,
//!   the egress log, events, alert deliveries, sessions, bans; audit rows are kept), their
//!   defaults and where each comes from, and a run's plan (each rule's cutoff).
//! - [`run`]: one run (or a dry run that only counts), and the schedule the server
//!   spawns. The statements themselves are in `stockade_store::retention`.
//!
//! Arrows go down: this crate knows the store and nothing above it; the composition root
//! (`stockade-app`) reads `[retention]` into [`Rules`] and spawns [`run::schedule`].

pub mod rules;
pub mod run;

pub use rules::{AuditRefusal, AuditRule, PiiRules, Rules, check_audit, show_period};
pub use run::{KindReport, Report, RunError, dry_run, run, schedule};
pub use stockade_store::retention::RunRecord;
