//! The `stockade compliance …` command tree (clap types only; the work is in
//! `commands/compliance.rs`).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub enum ComplianceCommand {
    /// Every clause of the company's security policy and the Amazon Data Protection
    /// Policy items that apply, each with live evidence and a verdict (pass, fail, not
    /// applicable, cannot check here). Read-only (except the audit row of --sign).
    /// Exit 1 when a clause fails, 0 otherwise, 2 on a usage or configuration error.
    #[command(
        after_long_help = "Evidence comes from the database, the configuration, the running server (TLS as served,\nwhen it listens at [server] listen) and the host (SSH, firewall, Fail2Ban, automatic\nupdates, file permissions, the service user): run it as root on the server for the host\nchecks; what it may not see is reported as \"cannot check here\" with the reason.\nWhat each clause checks: docs/security.md (Compliance report).\n\nExamples:\n  stockade compliance report\n  stockade compliance report --format html --out compliance.html\n  stockade compliance report --format json --only tls --only pii_scan\n  stockade compliance report --sign --out report-2026-q4.md\n  stockade compliance verify report-2026-q4.md"
    )]
    Report(ReportArgs),
    /// Check a signed report: recompute the SHA-256 of its body (without the signature
    /// trailer), find the `compliance.report_signed` audit row the trailer names, and
    /// confirm both match and the audit chain verifies. Exit 0 when it does, 1 naming what
    /// does not match, 2 when the file is not a signed report.
    Verify {
        /// The signed report (md, json or html).
        file: PathBuf,
    },
}

impl ComplianceCommand {
    /// Whether the command writes to the audit chain (`report --sign`).
    pub fn writes(&self) -> bool {
        matches!(self, ComplianceCommand::Report(a) if a.sign)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Markdown: a table per section.
    Md,
    /// JSON: clause id, policy references, verdict, evidence text and raw arguments.
    Json,
    /// A standalone HTML page (no external assets).
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportLang {
    En,
    Zh,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The document's format.
    #[arg(long, value_enum, default_value = "md")]
    pub format: ReportFormat,
    /// The language of titles, verdicts and evidence.
    #[arg(long, value_enum, default_value = "en")]
    pub lang: ReportLang,
    /// Hash the report (SHA-256), record the hash, format and verdict counts as a
    /// `compliance.report_signed` audit row, and append a trailer naming that row.
    #[arg(long)]
    pub sign: bool,
    /// Write the report to FILE (replaced whole, never half-written) instead of standard
    /// output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Only this clause (repeat for several); an unknown id lists the valid ones.
    #[arg(long = "only", value_name = "CLAUSE")]
    pub only: Vec<String>,
}
