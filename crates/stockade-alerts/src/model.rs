//! What an alert may say: severities, the allow-listed alert, and the cleaning of its
//! fields.
//!
//! Structural scrubbing: an [`Alert`] is assembled field by field from a typed event (see
//! [`crate::classify`]). Identifiers (connection names, hosts, SKUs, order numbers, user
//! ids, counts) pass [`ident`], which keeps a safe alphabet and a bounded length; free
//! text from third parties (marketplace error messages) passes [`crate::scrub::scrub`].
//! An event's detail keys outside its type are dropped when it is decoded, and `Pii<T>`
//! serialises as `[redacted]`, so buyer data has no path into a message.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// How bad it is. Channels subscribe from a minimum severity up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn rank(self) -> i64 {
        self as i64
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sources a channel may subscribe to.
pub const SOURCES: [&str; 7] = [
    "sync", "egress", "access", "alerts", "workflow", "test", "incident",
];

/// One alert, ready to render: only allow-listed, cleaned fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub severity: Severity,
    /// `sync`, `egress`, `access`, `alerts`, `workflow` or `test`.
    pub source: String,
    /// The event kind, e.g. `push_failed`, `server_error`, `ban`.
    pub kind: String,
    /// One line: what failed, where.
    pub title: String,
    /// Labelled identifiers and counts, in display order.
    pub facts: Vec<(String, String)>,
    /// Scrubbed, truncated third-party text, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The aggregation key: source, error class and where.
    pub key: String,
    /// The event this alert reports (the first one, for a follow-up).
    pub event_id: i64,
    pub at_ms: i64,
    /// How many events this alert stands for (a follow-up folds repeats).
    pub count: i64,
    /// For a follow-up: when the folded repeats began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// For a channel's own configuration problem: the channel it is about (never sent
    /// to that channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about_channel: Option<String>,
    /// Addressed to this one channel (an `alert.send` step's `channel:`): only that
    /// channel takes it, whatever its minimum severity and sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_channel: Option<String>,
}

/// The `alert` column of an outbox or window row: `None` when the stored JSON does not
/// decode (a row another version wrote is skipped, not fatal).
pub(crate) struct StoredAlert(pub(crate) Option<Alert>);

impl stockade_store::FromColumn for StoredAlert {
    fn from_column(row: &stockade_store::SqlRow, i: usize) -> stockade_store::Result<Self> {
        Ok(StoredAlert(
            serde_json::from_str(&String::from_column(row, i)?).ok(),
        ))
    }
}

/// Longest identifier kept in a fact.
const IDENT_MAX: usize = 64;
/// Longest third-party text kept in an alert.
pub const MESSAGE_MAX: usize = 300;

/// An identifier for a fact: letters, digits and `-_.:/@#+` only, at most 64 characters;
/// anything else becomes `?`. Never free text.
pub fn ident(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(IDENT_MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:/#+".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > IDENT_MAX {
        out.push('…');
    }
    out
}

/// An address as alerts show it: the /24 (IPv4) or /48 (IPv6) network, never the host.
/// The full address is in the audit log and `stockade ban list`.
pub fn network_of(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        Err(_) => "unknown".to_owned(),
    }
}

/// `2026-11-22 10:04:05 UTC`.
pub fn utc(ms: i64) -> String {
    let text = stockade_core::time::format_rfc3339_s(ms);
    let text = text.strip_suffix('Z').unwrap_or(&text);
    format!("{} UTC", text.replacen('T', " ", 1))
}

/// "12 min", "45 s", "2 h".
pub fn span(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else {
        format!("{} h", s / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pii_serialises_redacted() {
        let p = stockade_core::Pii::new("Jane Doe".to_owned());
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"[redacted]\"");
    }

    #[test]
    fn identifiers_keep_a_safe_alphabet() {
        assert_eq!(ident("SKU-0001"), "SKU-0001");
        assert_eq!(ident("a b<script>"), "a?b?script?");
        assert_eq!(ident(&"x".repeat(100)).chars().count(), 65);
    }

    #[test]
    fn addresses_are_shown_as_networks() {
        assert_eq!(network_of("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(network_of("2001:db8:1:2::5"), "2001:db8:1::/48");
        assert_eq!(network_of("nonsense"), "unknown");
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(span(45_000), "45 s");
        assert_eq!(span(300_000), "5 min");
    }
}
