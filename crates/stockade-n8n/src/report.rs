//! What an import says to the person migrating: per node converted / needs review /
//! unsupported / left out, the credentials to create (with the exact command), the hosts
//! allowed and the alert channels to configure.
//!
//! Invariant: report text names nodes, types, step ids, credential *names* and hosts,
//! never a parameter value (an export can hold tokens in header values or URLs).

use std::fmt::Write as _;

/// What became of one n8n node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Converted exactly.
    Converted,
    /// Converted, but a human must check something (also a `needs-review` lint problem).
    Review,
    /// An `unsupported` step (a lint error naming the node and its type).
    Unsupported,
    /// Not a step: disabled, a sticky note, not connected, or folded into another step.
    LeftOut,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Converted => "converted",
            Status::Review => "needs review",
            Status::Unsupported => "unsupported",
            Status::LeftOut => "left out",
        }
    }
}

/// One node's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    pub node: String,
    pub kind: String,
    /// The step it became (`None` when it became none).
    pub step: Option<String>,
    pub status: Status,
    pub notes: Vec<String>,
}

/// A credential the workflow names, to be created in the credential store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialNote {
    pub name: String,
    pub node: String,
    pub host: Option<String>,
    /// Why it exists (the n8n credential type, a header that held a secret…).
    pub why: String,
}

/// One converted workflow.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The Stockade workflow name.
    pub name: String,
    /// The n8n workflow's name.
    pub n8n_name: String,
    /// `NAME.yaml`.
    pub file: String,
    pub yaml: String,
    pub nodes: Vec<NodeReport>,
    pub credentials: Vec<CredentialNote>,
    pub hosts: Vec<String>,
    pub channels: Vec<String>,
    /// Workflow-level notes (trigger, error workflow, time zone…).
    pub notes: Vec<String>,
}

impl Converted {
    pub fn node(&self, name: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| n.node == name)
    }

    /// The `stockade credential set` command for a credential.
    pub fn credential_command(&self, c: &CredentialNote) -> String {
        let host = c
            .host
            .as_ref()
            .map(|h| format!(" --host {h}"))
            .unwrap_or_default();
        format!(
            "printf %s \"$SECRET\" | stockade credential set {} --workflow {}{host} --secret-stdin",
            c.name, self.name
        )
    }

    /// The report of this workflow, as the CLI prints it.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "workflow `{}` (n8n: \"{}\") → {}",
            self.name, self.n8n_name, self.file
        );
        for n in &self.nodes {
            let step = n
                .step
                .as_deref()
                .map(|s| format!(" → step `{s}`"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  [{}] {} ({}){step}",
                n.status.as_str(),
                n.node,
                n.kind
            );
            for note in &n.notes {
                let _ = writeln!(out, "      - {note}");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        if !self.credentials.is_empty() {
            let _ = writeln!(
                out,
                "  credentials to create (secrets are never in an export):"
            );
            for c in &self.credentials {
                let _ = writeln!(out, "    {} — {} (node \"{}\")", c.name, c.why, c.node);
                let _ = writeln!(out, "      {}", self.credential_command(c));
            }
        }
        if !self.hosts.is_empty() {
            let _ = writeln!(
                out,
                "  hosts allowed (permissions.hosts; also in [egress] allowed_hosts): {}",
                self.hosts.join(", ")
            );
        }
        if !self.channels.is_empty() {
            let _ = writeln!(
                out,
                "  alert channels to configure ([[alerts.channel]] name): {}",
                self.channels.join(", ")
            );
        }
        let count = |s: Status| self.nodes.iter().filter(|n| n.status == s).count();
        let _ = writeln!(
            out,
            "  {} converted, {} need review, {} unsupported, {} left out",
            count(Status::Converted),
            count(Status::Review),
            count(Status::Unsupported),
            count(Status::LeftOut)
        );
        out
    }
}
