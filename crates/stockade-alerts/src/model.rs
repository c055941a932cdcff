//! What an alert may say: severities, and the allow-listed alert built from an event row.
//!
//! Structural scrubbing: an [`Alert`] is assembled field by field from an allow-list per
//! event kind. Identifiers (connection names, hosts, SKUs, order numbers, user ids,
//! counts) pass [`ident`], which keeps a safe alphabet and a bounded length; free text
//! from third parties (marketplace error messages) passes [`crate::scrub::scrub`]. Any
//! other key in an event's detail is dropped, and `Pii<T>` serialises as `[redacted]`,
//! so buyer data has no path into a message.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::scrub::scrub;

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

    pub fn from_rank(rank: i64) -> Severity {
        match rank {
            i64::MIN..=0 => Severity::Info,
            1 => Severity::Warning,
            2 => Severity::Error,
            _ => Severity::Critical,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sources a channel may subscribe to.
pub const SOURCES: [&str; 6] = ["sync", "egress", "access", "alerts", "workflow", "test"];

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
}

/// A row of the `events` table.
#[derive(Debug, Clone, Default)]
pub struct EventRow {
    pub id: i64,
    pub at_ms: i64,
    pub source: String,
    pub kind: String,
    pub caller: String,
    pub host: String,
    pub path_template: String,
    pub operation: String,
    pub status: Option<i64>,
    pub detail: String,
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

fn detail_json(detail: &str) -> serde_json::Value {
    serde_json::from_str(detail).unwrap_or(serde_json::Value::Null)
}

fn dstr(d: &serde_json::Value, key: &str) -> Option<String> {
    match d.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn dint(d: &serde_json::Value, key: &str) -> Option<i64> {
    d.get(key).and_then(serde_json::Value::as_i64)
}

/// `connection:NAME` → `NAME`; other callers as they are.
fn caller_name(caller: &str) -> &str {
    caller.split_once(':').map_or(caller, |(_, n)| n)
}

struct Builder {
    facts: Vec<(String, String)>,
}

impl Builder {
    fn new() -> Self {
        Builder { facts: Vec::new() }
    }
    fn fact(mut self, label: &str, value: Option<String>) -> Self {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.facts.push((label.to_owned(), ident(&v)));
        }
        self
    }
    fn num(self, label: &str, value: Option<i64>) -> Self {
        self.fact(label, value.map(|v| v.to_string()))
    }
}

/// Turn an event row into an alert, or `None` when the event is not alerted (the alert
/// channels' own outbound failures: the sender reports those as channel state, and
/// alerting them would loop).
pub fn classify(ev: &EventRow) -> Option<Alert> {
    let d = detail_json(&ev.detail);
    let status = ev.status;
    let (severity, kind_title, facts, message, hint, key): (
        Severity,
        String,
        Builder,
        Option<String>,
        Option<&str>,
        String,
    ) = match ev.source.as_str() {
        "egress" => {
            if ev.caller.starts_with("alerts:") {
                return None;
            }
            let who = caller_name(&ev.caller).to_owned();
            let host = ident(&ev.host);
            let facts = Builder::new()
                .fact("Caller", Some(ev.caller.clone()))
                .fact("Host", Some(ev.host.clone()))
                .fact("Operation", Some(ev.operation.clone()))
                .fact("Path", Some(ev.path_template.clone()))
                .num("HTTP status", status);
            let msg = Some(scrub(&ev.detail, MESSAGE_MAX));
            let key = format!(
                "egress:{}:{}:{}",
                ev.kind,
                ev.caller,
                status.map_or_else(String::new, |s| s.to_string())
            );
            match ev.kind.as_str() {
                "blocked" => (
                    Severity::Critical,
                    format!("Blocked an unauthorized outbound request by {who} to {host}"),
                    facts,
                    msg,
                    Some(
                        "Nothing was sent. If the host is legitimate, add it to the egress allowlist; otherwise investigate the caller.",
                    ),
                    key,
                ),
                "client_error" if status == Some(429) => (
                    Severity::Warning,
                    format!("{host} is rate-limiting {who}"),
                    facts,
                    msg,
                    Some("Requests are retried; persistent 429s mean the limits need lowering."),
                    key,
                ),
                "client_error" => (
                    Severity::Error,
                    format!(
                        "{host} refused a request from {who} (HTTP {})",
                        status.unwrap_or(0)
                    ),
                    facts,
                    msg,
                    Some("Check the connection's credentials and authorization."),
                    key,
                ),
                "server_error" => (
                    Severity::Error,
                    format!(
                        "{host} failed a request from {who} (HTTP {})",
                        status.unwrap_or(0)
                    ),
                    facts,
                    msg,
                    None,
                    key,
                ),
                "transport" => (
                    Severity::Error,
                    format!("Cannot reach {host} for {who}"),
                    facts,
                    msg,
                    Some("Check the network and the marketplace's status page."),
                    key,
                ),
                _ => (
                    Severity::Error,
                    format!("Unexpected answer from {host} to {who}"),
                    facts,
                    msg,
                    None,
                    key,
                ),
            }
        }
        "sync" => {
            let conn = dstr(&d, "connection").unwrap_or_else(|| caller_name(&ev.caller).into());
            let c = ident(&conn);
            let class = dstr(&d, "class");
            let facts = Builder::new()
                .fact("Connection", Some(conn.clone()))
                .fact("Operation", Some(ev.operation.clone()))
                .fact("Error class", class.clone())
                .num("HTTP status", status)
                .num("Attempts", dint(&d, "attempts"));
            let msg = dstr(&d, "message").map(|m| scrub(&m, MESSAGE_MAX));
            let class_key = class.clone().unwrap_or_default();
            match ev.kind.as_str() {
                "push_failed" => (
                    Severity::Error,
                    format!("Stock push to {c} is failing"),
                    facts.num("Listings waiting", dint(&d, "listings")),
                    msg,
                    Some(
                        "Pushes keep retrying; the channel shows stale quantities until one succeeds.",
                    ),
                    format!("sync:push_failed:{conn}:{class_key}"),
                ),
                "fetch_failed" => (
                    Severity::Error,
                    format!("Fetching orders from {c} is failing"),
                    facts.num("Orders waiting", dint(&d, "orders")),
                    msg,
                    Some("The marketplace retries its notifications and the poller catches up."),
                    format!("sync:fetch_failed:{conn}:{class_key}"),
                ),
                "oversell" => {
                    let sku = dstr(&d, "sku").unwrap_or_default();
                    (
                        Severity::Critical,
                        format!(
                            "Oversold {}: an order arrived with no stock left",
                            ident(&sku)
                        ),
                        Builder::new()
                            .fact("Connection", Some(conn.clone()))
                            .fact("Order", dstr(&d, "order"))
                            .fact("SKU", Some(sku.clone()))
                            .num("Units short", dint(&d, "units")),
                        None,
                        Some(
                            "Restock or cancel the order; every channel now shows zero for this SKU.",
                        ),
                        format!("sync:oversell:{sku}"),
                    )
                }
                "unmatched_sku" => {
                    let sku = dstr(&d, "sku").unwrap_or_default();
                    (
                        Severity::Warning,
                        format!("Order for {}, which is not in the catalog", ident(&sku)),
                        Builder::new()
                            .fact("Connection", Some(conn.clone()))
                            .fact("Order", dstr(&d, "order"))
                            .fact("SKU", Some(sku.clone()))
                            .num("Units", dint(&d, "units")),
                        None,
                        Some(
                            "Add the SKU with `stockade sku import`: its open orders are reserved at once.",
                        ),
                        format!("sync:unmatched_sku:{sku}"),
                    )
                }
                "foreign_event" => (
                    Severity::Error,
                    format!("{c} received an event for another app's connection"),
                    facts.fact("Event", dstr(&d, "event")),
                    None,
                    Some(
                        "Ignored: a delivery signed with this connection's app named a seller connected through a different app. Check the webhook URLs registered with the marketplace.",
                    ),
                    format!("sync:foreign_event:{conn}"),
                ),
                "authorization_expiring" => (
                    Severity::Warning,
                    format!("Authorization of {c} expires soon"),
                    facts,
                    None,
                    Some("Re-authorize the connection before it expires, or sync stops."),
                    format!("sync:authorization_expiring:{conn}"),
                ),
                other => (
                    Severity::Error,
                    format!("Sync task {} failed on {c}", ident(other)),
                    facts,
                    msg,
                    None,
                    format!("sync:{other}:{conn}:{class_key}"),
                ),
            }
        }
        "access" => match ev.kind.as_str() {
            "ban" => {
                let net = dstr(&d, "ip").map(|ip| network_of(&ip));
                (
                    Severity::Warning,
                    "An address was banned after repeated authentication failures".to_owned(),
                    Builder::new()
                        .fact("Network", net)
                        .num("Ban count", dint(&d, "count"))
                        .fact("Reason", dstr(&d, "reason"))
                        .fact(
                            "Until",
                            dint(&d, "until_s")
                                .map(|s| utc(s * 1000))
                                .or_else(|| d.get("permanent").map(|_| "permanent".to_owned())),
                        ),
                    None,
                    Some(
                        "See `stockade ban list` for the address; lift a mistaken ban with `stockade ban remove`.",
                    ),
                    "access:ban".to_owned(),
                )
            }
            "apikey_wrong_environment" => (
                Severity::Critical,
                format!(
                    "An API key of environment {} was used against this {} server",
                    ident(&dstr(&d, "key_env").unwrap_or_default()),
                    ident(&dstr(&d, "server_env").unwrap_or_default())
                ),
                Builder::new().fact("Network", dstr(&d, "ip").map(|ip| network_of(&ip))),
                None,
                Some(
                    "Environments are isolated: find who holds the key and why it reached this server.",
                ),
                "access:apikey_wrong_environment".to_owned(),
            ),
            "mfa_reset" => {
                let user = dstr(&d, "user").unwrap_or_default();
                (
                    Severity::Warning,
                    format!("MFA was reset for user {}", ident(&user)),
                    Builder::new()
                        .fact("User", Some(user.clone()))
                        .fact("By", dstr(&d, "by")),
                    None,
                    Some(
                        "The user must enroll a new authenticator at the next sign-in; confirm the reset was expected.",
                    ),
                    format!("access:mfa_reset:{user}"),
                )
            }
            other => (
                Severity::Warning,
                format!("Security event {}", ident(other)),
                Builder::new(),
                None,
                None,
                format!("access:{other}"),
            ),
        },
        "alerts" => {
            let channel = dstr(&d, "channel").unwrap_or_default();
            let reason = dstr(&d, "reason").map(|r| scrub(&r, MESSAGE_MAX));
            let (title, hint) = match ev.kind.as_str() {
                "channel_config" => (
                    format!(
                        "Alert channel {} is misconfigured: its alerts are held",
                        ident(&channel)
                    ),
                    "Fix the channel (stockade alert test --channel NAME says what is wrong); held alerts are sent once it works.",
                ),
                _ => (
                    format!("Alert channel {} cannot deliver", ident(&channel)),
                    "Alerts for it are kept and retried; check the bot and the network.",
                ),
            };
            let mut a = (
                Severity::Error,
                title,
                Builder::new().fact("Channel", Some(channel.clone())),
                reason,
                Some(hint),
                format!("alerts:{}:{channel}", ev.kind),
            );
            a.2 = a.2.num("Alerts held", dint(&d, "held"));
            let mut alert = finish(ev, a.0, a.1, a.2, a.3, a.4, a.5);
            alert.about_channel = Some(channel);
            return Some(alert);
        }
        "workflow" => {
            let wf = dstr(&d, "workflow").unwrap_or_else(|| caller_name(&ev.caller).into());
            let class = dstr(&d, "class");
            (
                Severity::Error,
                format!("Workflow {} failed", ident(&wf)),
                Builder::new()
                    .fact("Workflow", Some(wf.clone()))
                    .fact("Execution", dstr(&d, "execution"))
                    .fact("Failed step", dstr(&d, "step"))
                    .fact("Error class", class.clone())
                    .num("HTTP status", status)
                    .num("Attempts", dint(&d, "attempts")),
                dstr(&d, "message").map(|m| scrub(&m, MESSAGE_MAX)),
                None,
                format!("workflow:{wf}:{}", class.unwrap_or_default()),
            )
        }
        "test" => (
            Severity::Info,
            "Test alert from Stockade: this channel works".to_owned(),
            Builder::new().fact("Channel", dstr(&d, "channel")),
            None,
            None,
            format!("test:{}", ev.id),
        ),
        other => (
            Severity::Warning,
            format!("Event {} from {}", ident(&ev.kind), ident(other)),
            Builder::new(),
            None,
            None,
            format!("{other}:{}", ev.kind),
        ),
    };
    Some(finish(ev, severity, kind_title, facts, message, hint, key))
}

fn finish(
    ev: &EventRow,
    severity: Severity,
    title: String,
    facts: Builder,
    message: Option<String>,
    hint: Option<&str>,
    key: String,
) -> Alert {
    Alert {
        severity,
        source: ident(&ev.source),
        kind: ident(&ev.kind),
        title,
        facts: facts.facts,
        message: message.filter(|m| !m.is_empty()),
        hint: hint.map(str::to_owned),
        key: key.chars().take(200).collect(),
        event_id: ev.id,
        at_ms: ev.at_ms,
        count: 1,
        since_ms: None,
        about_channel: None,
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

    fn ev(source: &str, kind: &str, detail: serde_json::Value) -> EventRow {
        EventRow {
            id: 7,
            at_ms: 1_700_000_000_000,
            source: source.into(),
            kind: kind.into(),
            caller: "connection:tiktok-main".into(),
            operation: "set_quantities".into(),
            status: Some(500),
            detail: detail.to_string(),
            ..EventRow::default()
        }
    }

    #[test]
    fn detail_keys_outside_the_allow_list_are_dropped() {
        let e = ev(
            "sync",
            "push_failed",
            serde_json::json!({"connection": "tiktok-main", "class": "server", "attempts": 5,
                "listings": 3, "message": "upstream said buyer jane.doe@example.com is invalid",
                "buyer_email": "jane.doe@example.com", "buyer_name": "Jane Doe"}),
        );
        let a = classify(&e).unwrap();
        let text = serde_json::to_string(&a).unwrap();
        assert!(!text.contains("jane.doe"), "{text}");
        assert!(!text.contains("Jane Doe"), "{text}");
        assert!(!text.contains("buyer_"), "{text}");
        assert_eq!(a.severity, Severity::Error);
        assert_eq!(a.key, "sync:push_failed:tiktok-main:server");
        assert!(a.facts.contains(&("Attempts".into(), "5".into())));
        assert!(a.facts.contains(&("Listings waiting".into(), "3".into())));
    }

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
        let e = EventRow {
            source: "access".into(),
            kind: "ban".into(),
            detail: serde_json::json!({"ip": "203.0.113.77", "count": 1, "until_s": 1_700_000_600, "reason": "auto"}).to_string(),
            ..EventRow::default()
        };
        let text = serde_json::to_string(&classify(&e).unwrap()).unwrap();
        assert!(text.contains("203.0.113.0/24") && !text.contains("203.0.113.77"));
    }

    #[test]
    fn the_alert_channels_own_failures_are_not_alerted() {
        let mut e = ev("egress", "server_error", serde_json::json!({}));
        e.caller = "alerts:ops".into();
        assert!(classify(&e).is_none());
        e.caller = "connection:amazon-eu".into();
        e.host = "sellingpartnerapi-eu.amazon.com".into();
        let a = classify(&e).unwrap();
        assert_eq!(a.key, "egress:server_error:connection:amazon-eu:500");
    }

    #[test]
    fn every_kind_has_a_title_and_key() {
        for (source, kind) in [
            ("egress", "blocked"),
            ("egress", "client_error"),
            ("egress", "transport"),
            ("egress", "malformed"),
            ("sync", "oversell"),
            ("sync", "fetch_failed"),
            ("sync", "authorization_expiring"),
            ("sync", "unmatched_sku"),
            ("sync", "foreign_event"),
            ("access", "apikey_wrong_environment"),
            ("access", "mfa_reset"),
            ("alerts", "channel_config"),
            ("workflow", "failed"),
            ("test", "test"),
            ("other", "thing"),
        ] {
            let a = classify(&ev(source, kind, serde_json::json!({"sku": "SKU-1"}))).unwrap();
            assert!(!a.title.is_empty() && !a.key.is_empty(), "{source}/{kind}");
        }
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(span(45_000), "45 s");
        assert_eq!(span(300_000), "5 min");
    }
}
