//! The `stockade incident …` command tree (clap types only; the work is in
//! `commands/incident.rs`).

use clap::{ArgGroup, Subcommand};

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Open an incident (or a drill): starts its timeline, alerts the security channel
    /// and starts the notification deadlines (24 h from detection). Prints its id.
    #[command(
        after_long_help = "Examples:\n  stockade incident open --title \"API key leaked in a support ticket\" --severity high\n  stockade incident open --title \"Key leak\" --severity critical --detected-at 2026-03-01T08:30:00Z\n  stockade incident open --title \"Half-year drill\" --severity low --drill"
    )]
    Open {
        /// A short description: no personal data, no secrets (refused if it looks like an
        /// email, a phone number or a token).
        #[arg(long)]
        title: String,
        /// low, medium, high or critical.
        #[arg(long)]
        severity: String,
        /// A drill: every step is exercised and recorded, nothing real is revoked, no
        /// control is enforced, no user is locked out.
        #[arg(long)]
        drill: bool,
        /// When the incident was detected (RFC 3339, e.g. 2026-03-01T08:30:00Z), if
        /// earlier than now: the deadlines count from it.
        #[arg(long, value_name = "TIME")]
        detected_at: Option<String>,
    },
    /// Revoke at once, in every process: a credential, a connection's marketplace tokens
    /// (the connection is paused and needs re-authorization; its orders are kept), API
    /// keys, or sessions. An unknown name is refused and nothing is revoked.
    #[command(
        group(ArgGroup::new("what").required(true).args(["credential", "connection", "api_keys", "sessions"])),
        after_long_help = "Examples:\n  stockade incident revoke --api-keys all\n  stockade incident revoke --api-keys key_0123456789abcdef\n  stockade incident revoke --sessions all\n  stockade incident revoke --sessions ann@example.com\n  stockade incident revoke --credential supplier-token\n  stockade incident revoke --connection tiktok-main"
    )]
    Revoke {
        /// A credential of the credential store, by name.
        #[arg(long, value_name = "NAME")]
        credential: Option<String>,
        /// A connection: its stored marketplace tokens are deleted and it is paused.
        #[arg(long, value_name = "NAME")]
        connection: Option<String>,
        /// `all` active API keys, or one by id or name.
        #[arg(long = "api-keys", value_name = "all|ID")]
        api_keys: Option<String>,
        /// `all` sessions, or one user's (by email or id).
        #[arg(long, value_name = "all|USER")]
        sessions: Option<String>,
        /// The incident this belongs to (default: the only open one).
        #[arg(long, value_name = "ID")]
        incident: Option<i64>,
    },
    /// Quarantine a workflow or a connection until `release`: no executions, no egress,
    /// its webhooks answered 503 with Retry-After. A running server obeys within 1 s.
    #[command(
        group(ArgGroup::new("what").required(true).args(["workflow", "connection"])),
        after_long_help = "Examples:\n  stockade incident isolate --workflow supplier-reorder\n  stockade incident isolate --connection amazon-eu"
    )]
    Isolate {
        /// A workflow: no executions, no egress, its webhook answered 503.
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
        /// A connection: no pushes or polls, no egress, its webhooks answered 503.
        #[arg(long, value_name = "NAME")]
        connection: Option<String>,
        /// The incident this belongs to (default: the only open one).
        #[arg(long, value_name = "ID")]
        incident: Option<i64>,
    },
    /// Lift an isolation or the lockdown. Releasing what is not isolated is refused.
    #[command(
        group(ArgGroup::new("what").required(true).args(["workflow", "connection", "lockdown"])),
        after_long_help = "Examples:\n  stockade incident release --workflow supplier-reorder\n  stockade incident release --connection amazon-eu\n  stockade incident release --lockdown"
    )]
    Release {
        /// An isolated workflow.
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
        /// An isolated connection.
        #[arg(long, value_name = "NAME")]
        connection: Option<String>,
        /// Lift the instance's lockdown.
        #[arg(long)]
        lockdown: bool,
        /// Only the control of this incident.
        #[arg(long, value_name = "ID")]
        incident: Option<i64>,
    },
    /// Lock the instance down: read-only, only administrators (with MFA) may sign in,
    /// outbound requests refused except alert channels, pushes, polls and workflows
    /// paused; marketplace webhooks are still received and stored. See docs/incident.md.
    #[command(
        after_long_help = "Example:\n  stockade incident lockdown\n  stockade incident release --lockdown"
    )]
    Lockdown {
        /// The incident this belongs to (default: the only open one).
        #[arg(long, value_name = "ID")]
        incident: Option<i64>,
    },
    /// Add a note to the timeline (no personal data, no secrets).
    #[command(
        after_long_help = "Example:\n  stockade incident note 3 \"Key was pasted in ticket CS-4412; ticket deleted\""
    )]
    Note { id: i64, text: String },
    /// Record that a party was notified (the deadline then shows “notified at …”).
    #[command(
        after_long_help = "Example:\n  stockade incident notify 3 --party amazon --note \"Sent to the security contact, case 1234\""
    )]
    Notify {
        /// The incident's number.
        id: i64,
        /// amazon, tiktok, ebay or clients.
        #[arg(long)]
        party: String,
        /// What was sent and how (no personal data).
        #[arg(long)]
        note: String,
    },
    /// Close an incident with its root cause (refused while its controls are in force).
    #[command(
        after_long_help = "Example:\n  stockade incident close 3 --root-cause \"Support macro pasted the key; macro fixed\""
    )]
    Close {
        /// The incident's number.
        id: i64,
        /// What caused it and what was fixed (no personal data, no secrets).
        #[arg(long, value_name = "TEXT")]
        root_cause: String,
    },
    /// Every incident and drill with its status and notification deadlines.
    List,
    /// One incident: its timeline, deadlines (time left, overdue, notified), controls.
    Show {
        /// The incident's number.
        id: i64,
    },
    /// The report for marketplaces and clients: timeline (UTC and the console's zone),
    /// actions, deadlines and whether each was met, root cause.
    #[command(
        after_long_help = "Examples:\n  stockade incident report 3 > incident-3.md\n  stockade incident report 3 --format json > incident-3.json"
    )]
    Report {
        /// The incident's number.
        id: i64,
        /// md or json.
        #[arg(long, default_value = "md", value_parser = ["md", "json"])]
        format: String,
    },
}
