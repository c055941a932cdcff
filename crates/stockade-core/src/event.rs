//! Events: what the system reports about itself (failures, oversells, security events),
//! for the alert pipeline and, next, workflow triggers.
//!
//! One [`Event`] variant per kind of event, with typed details. The stored form is the
//! `events` row (`source`, `kind`, `caller`, `host`, `path_template`, `operation`,
//! `status`, `detail`); [`Event::columns`] writes it and [`Event::decode`] reads it back.
//!
//! Invariants:
//! - The stored strings never change: `source`/`kind` names and the detail JSON (keys in
//!   alphabetical order, as `serde_json::json!` wrote them before the types existed) are
//!   what old rows, the SQL triggers, the docs and `stockade alert list` rely on.
//! - Decoding never fails: a row this build does not know (a new kind, a detail that
//!   does not parse) decodes as [`Event::Other`] with its columns as stored. Unknown
//!   detail keys are dropped on decode, so they never reach an alert.
//! - Details hold identifiers, counts and third-party error text only, never a buyer's
//!   data or a secret.
//!
//! A new kind of event: a variant here with a detail struct (`#[serde(default)]`, fields
//! in alphabetical order), its arm in [`Event::columns`] and [`Event::decode`], a test
//! that it round-trips, and its alert in `stockade-alerts` `classify` (the match is
//! exhaustive, so the compiler asks). Producers append it with
//! `stockade_store::events::append` inside the commit of the change it reports.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The columns of an `events` row besides its id, time and routing state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventColumns {
    pub source: String,
    pub kind: String,
    pub caller: String,
    pub host: String,
    pub path_template: String,
    pub operation: String,
    pub status: Option<i64>,
    pub detail: String,
}

/// An event as stored: its id (the stream position) and time.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub id: i64,
    pub at_ms: i64,
    pub event: Event,
}

/// Everything the system raises as an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// sync `push_failed`: stock pushes to a channel keep failing.
    PushFailed(MarketFailure),
    /// sync `fetch_failed`: fetching notified orders keeps failing.
    FetchFailed(MarketFailure),
    /// sync `oversell`: a reservation took available stock below zero (SQL trigger).
    Oversell(OrderLineEvent),
    /// sync `unmatched_sku`: an order line for a SKU not in the catalog (SQL trigger).
    UnmatchedSku(OrderLineEvent),
    /// sync `foreign_event`: an authentic delivery named another app's connection.
    ForeignEvent(ForeignEvent),
    /// sync `authorization_expiring`: the marketplace says a seller's grant ends soon.
    AuthorizationExpiring(ConnectionRef),
    /// egress `blocked`, `client_error`, `server_error`, `transport`, `malformed`.
    Egress(EgressAnomaly),
    /// access `ban`: an address was banned.
    Ban(BanRaised),
    /// access `apikey_wrong_environment`: a key of another environment was presented.
    ApiKeyWrongEnvironment(WrongEnvironmentKey),
    /// access `mfa_reset`: an administrator reset a user's MFA.
    MfaReset(MfaReset),
    /// alerts `channel_down`: an alert channel keeps failing.
    ChannelDown(ChannelTrouble),
    /// alerts `channel_config`: an alert channel is misconfigured; its alerts are held.
    ChannelConfig(ChannelTrouble),
    /// workflow `failed`: an execution failed after its retries.
    WorkflowFailed(WorkflowFailure),
    /// workflow `alert`: an `alert.send` step's alert.
    WorkflowAlert(WorkflowAlert),
    /// order `created` (`order.created`): ingest stored an order it did not have.
    OrderCreated(OrderChange),
    /// order `cancelled` (`order.cancelled`): a stored order moved to cancelled.
    OrderCancelled(OrderChange),
    /// connection `revoked` (`connection.revoked`): a connection was revoked and purged.
    ConnectionRevoked(ConnectionRevoked),
    /// stock `low` (`stock.low`): a SKU's available stock crossed down to the low-stock
    /// threshold (SQL trigger, migration 0013).
    StockLow(StockLow),
    /// A row this build has no variant for, as stored.
    Other(EventColumns),
}

/// A marketplace call that kept failing after retries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MarketFailure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub connection: String,
    /// Listings waiting for the push (`push_failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listings: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Orders waiting for the fetch (`fetch_failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders: Option<i64>,
    /// The last HTTP status (the row's `status` column, not the detail).
    #[serde(skip)]
    pub status: Option<u16>,
}

/// An order line an event is about (written by the SQL triggers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderLineEvent {
    pub connection: String,
    pub order: Option<String>,
    pub sku: String,
    pub units: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForeignEvent {
    pub connection: String,
    /// The inbound event's kind.
    pub event: Option<String>,
    pub named_connections: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionRef {
    pub connection: String,
}

/// What the egress gateway saw go wrong (detail is its own one-line text, not JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressAnomaly {
    pub kind: EgressKind,
    pub caller: String,
    pub host: String,
    pub path_template: String,
    pub operation: String,
    pub status: Option<u16>,
    pub detail: String,
}

/// The egress anomalies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EgressKind {
    /// The host is not allowed (or the URL was not https).
    Blocked,
    /// A final 4xx (429 included).
    ClientError,
    /// A final 5xx.
    ServerError,
    /// Timeout, connection or TLS failure, an open circuit breaker, an oversized response.
    Transport,
    /// A 2xx answer that is not the JSON the API promises.
    Malformed,
}

impl EgressKind {
    const ALL: [EgressKind; 5] = [
        EgressKind::Blocked,
        EgressKind::ClientError,
        EgressKind::ServerError,
        EgressKind::Transport,
        EgressKind::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EgressKind::Blocked => "blocked",
            EgressKind::ClientError => "client_error",
            EgressKind::ServerError => "server_error",
            EgressKind::Transport => "transport",
            EgressKind::Malformed => "malformed",
        }
    }

    pub fn parse(s: &str) -> Option<EgressKind> {
        EgressKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BanRaised {
    pub count: Option<i64>,
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permanent: Option<bool>,
    pub reason: Option<String>,
    pub recidive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_s: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WrongEnvironmentKey {
    pub ip: Option<String>,
    pub key_env: String,
    pub server_env: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MfaReset {
    pub by: Option<String>,
    pub user: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelTrouble {
    pub channel: String,
    pub held: Option<i64>,
    pub reason: Option<String>,
}

/// A workflow execution that failed after its retries (the error workflow's input).
///
/// `message` comes from the executor's typed step error and is scrubbed before it gets
/// here; it is also cut to [`WorkflowFailure::MESSAGE_MAX`] characters on the way in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkflowFailure {
    pub attempts: i64,
    /// The error class (`transient`, `timeout`, `expression`, `fail`, …).
    pub class: String,
    /// The execution (job) id.
    pub execution: String,
    pub message: String,
    /// The failed step's path (`each#2/note`).
    pub step: String,
    pub version: i64,
    pub workflow: String,
    /// The last HTTP status, if the step made a request (the row's `status` column).
    #[serde(skip)]
    pub status: Option<u16>,
}

impl WorkflowFailure {
    /// The longest message kept, in characters.
    pub const MESSAGE_MAX: usize = 2000;

    /// Cut `message` to [`Self::MESSAGE_MAX`] characters (the caller scrubbed it).
    pub fn bounded_message(message: &str) -> String {
        message.chars().take(Self::MESSAGE_MAX).collect()
    }
}

/// An alert an `alert.send` step raised. Written once, in the step's fenced commit;
/// `key` is the step's idempotency key (`<execution>/<step path>`), the alert's dedup
/// key. `title` and `message` are scrubbed by the executor before they get here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkflowAlert {
    pub execution: String,
    pub key: String,
    pub message: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub step: String,
    pub title: String,
    pub version: i64,
    pub workflow: String,
    /// The configured alert channel the step named (`channel:`): the alert goes to that
    /// channel only. `None` (and every event stored before the field existed): every
    /// channel that takes its severity and source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// An order that was stored or changed (`order.created`, `order.cancelled`): the
/// connection, the marketplace, the marketplace's order id, the line count and the new
/// status. Never the buyer: no name, address, phone or email.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderChange {
    pub connection: String,
    pub lines: i64,
    pub marketplace: String,
    /// The marketplace's order id.
    pub order: String,
    /// The order's status after the change (`placed`, `cancelled`, …).
    pub status: String,
}

/// A connection revoked (deauthorized) and purged: counts of what the purge deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionRevoked {
    pub connection: String,
    pub marketplace: String,
    /// Orders whose data the purge deleted.
    pub orders: i64,
    /// `deauthorized` (the marketplace said so) or `revoked` (an operator).
    pub reason: String,
}

/// A SKU whose available stock (on hand minus reserved) fell to `threshold` or below.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StockLow {
    pub available: i64,
    pub sku: String,
    pub threshold: i64,
}

/// Columns of an event written by a component on its own behalf (no host or path).
fn own(
    source: &str,
    kind: &str,
    caller: String,
    operation: &str,
    detail: &impl Serialize,
) -> EventColumns {
    EventColumns {
        source: source.to_owned(),
        kind: kind.to_owned(),
        caller,
        host: String::new(),
        path_template: String::new(),
        operation: operation.to_owned(),
        status: None,
        detail: serde_json::to_string(detail).unwrap_or_else(|_| "{}".to_owned()),
    }
}

fn sync(kind: &str, connection: &str, operation: &str, detail: &impl Serialize) -> EventColumns {
    own(
        "sync",
        kind,
        format!("connection:{connection}"),
        operation,
        detail,
    )
}

fn access(kind: &str, detail: &impl Serialize) -> EventColumns {
    own(
        "access",
        kind,
        "system:access".to_owned(),
        "security",
        detail,
    )
}

fn order(kind: &str, o: &OrderChange) -> EventColumns {
    own(
        "order",
        kind,
        format!("connection:{}", o.connection),
        "order.ingest",
        o,
    )
}

fn alerts(kind: &str, c: &ChannelTrouble) -> EventColumns {
    own("alerts", kind, format!("alerts:{}", c.channel), "send", c)
}

impl Event {
    /// The row this event is stored as.
    pub fn columns(&self) -> EventColumns {
        match self {
            Event::PushFailed(f) => EventColumns {
                status: f.status.map(i64::from),
                ..sync("push_failed", &f.connection, "set_quantities", f)
            },
            Event::FetchFailed(f) => EventColumns {
                status: f.status.map(i64::from),
                ..sync("fetch_failed", &f.connection, "get_orders", f)
            },
            Event::Oversell(l) => sync("oversell", &l.connection, "order.ingest", l),
            Event::UnmatchedSku(l) => sync("unmatched_sku", &l.connection, "order.ingest", l),
            Event::ForeignEvent(f) => sync("foreign_event", &f.connection, "webhook", f),
            Event::AuthorizationExpiring(c) => {
                sync("authorization_expiring", &c.connection, "webhook", c)
            }
            Event::Egress(a) => EventColumns {
                source: "egress".to_owned(),
                kind: a.kind.as_str().to_owned(),
                caller: a.caller.clone(),
                host: a.host.clone(),
                path_template: a.path_template.clone(),
                operation: a.operation.clone(),
                status: a.status.map(i64::from),
                detail: a.detail.clone(),
            },
            Event::Ban(b) => access("ban", b),
            Event::ApiKeyWrongEnvironment(k) => access("apikey_wrong_environment", k),
            Event::MfaReset(m) => access("mfa_reset", m),
            Event::ChannelDown(c) => alerts("channel_down", c),
            Event::ChannelConfig(c) => alerts("channel_config", c),
            Event::WorkflowFailed(w) => EventColumns {
                status: w.status.map(i64::from),
                detail: serde_json::to_string(&WorkflowFailure {
                    message: WorkflowFailure::bounded_message(&w.message),
                    ..w.clone()
                })
                .unwrap_or_else(|_| "{}".to_owned()),
                ..own(
                    "workflow",
                    "failed",
                    format!("workflow:{}", w.workflow),
                    "execute",
                    &(),
                )
            },
            Event::WorkflowAlert(a) => own(
                "workflow",
                "alert",
                format!("workflow:{}", a.workflow),
                "alert.send",
                a,
            ),
            Event::OrderCreated(o) => order("created", o),
            Event::OrderCancelled(o) => order("cancelled", o),
            Event::ConnectionRevoked(r) => own(
                "connection",
                "revoked",
                format!("connection:{}", r.connection),
                "purge",
                r,
            ),
            Event::StockLow(l) => own("stock", "low", format!("sku:{}", l.sku), "stock", l),
            Event::Other(c) => c.clone(),
        }
    }

    /// Read a stored row back (never fails: see the module docs).
    pub fn decode(c: EventColumns) -> Event {
        fn detail<T: DeserializeOwned>(c: &EventColumns) -> Option<T> {
            serde_json::from_str(&c.detail).ok()
        }
        /// A sync event's connection: the detail's, else the caller's name.
        fn conn(mut v: String, c: &EventColumns) -> String {
            if v.is_empty() {
                v = c
                    .caller
                    .split_once(':')
                    .map_or(c.caller.as_str(), |(_, n)| n)
                    .to_owned();
            }
            v
        }
        let status = c.status.and_then(|s| u16::try_from(s).ok());
        let decoded = match (c.source.as_str(), c.kind.as_str()) {
            ("sync", kind @ ("push_failed" | "fetch_failed")) => {
                detail::<MarketFailure>(&c).map(|mut f| {
                    f.connection = conn(f.connection, &c);
                    f.status = status;
                    if kind == "push_failed" {
                        Event::PushFailed(f)
                    } else {
                        Event::FetchFailed(f)
                    }
                })
            }
            ("sync", kind @ ("oversell" | "unmatched_sku")) => {
                detail::<OrderLineEvent>(&c).map(|mut l| {
                    l.connection = conn(l.connection, &c);
                    if kind == "oversell" {
                        Event::Oversell(l)
                    } else {
                        Event::UnmatchedSku(l)
                    }
                })
            }
            ("sync", "foreign_event") => detail::<ForeignEvent>(&c).map(|mut f| {
                f.connection = conn(f.connection, &c);
                Event::ForeignEvent(f)
            }),
            ("sync", "authorization_expiring") => detail::<ConnectionRef>(&c).map(|mut r| {
                r.connection = conn(r.connection, &c);
                Event::AuthorizationExpiring(r)
            }),
            ("egress", kind) => EgressKind::parse(kind).map(|kind| {
                Event::Egress(EgressAnomaly {
                    kind,
                    caller: c.caller.clone(),
                    host: c.host.clone(),
                    path_template: c.path_template.clone(),
                    operation: c.operation.clone(),
                    status,
                    detail: c.detail.clone(),
                })
            }),
            ("access", "ban") => detail(&c).map(Event::Ban),
            ("access", "apikey_wrong_environment") => detail(&c).map(Event::ApiKeyWrongEnvironment),
            ("access", "mfa_reset") => detail(&c).map(Event::MfaReset),
            ("alerts", "channel_down") => detail(&c).map(Event::ChannelDown),
            ("alerts", "channel_config") => detail(&c).map(Event::ChannelConfig),
            ("workflow", "failed") => detail::<WorkflowFailure>(&c).map(|mut w| {
                w.status = status;
                Event::WorkflowFailed(w)
            }),
            ("workflow", "alert") => detail(&c).map(Event::WorkflowAlert),
            ("order", "created") => detail(&c).map(Event::OrderCreated),
            ("order", "cancelled") => detail(&c).map(Event::OrderCancelled),
            ("connection", "revoked") => detail(&c).map(Event::ConnectionRevoked),
            ("stock", "low") => detail(&c).map(Event::StockLow),
            _ => None,
        };
        decoded.unwrap_or(Event::Other(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: Event) -> EventColumns {
        let c = e.columns();
        assert_eq!(Event::decode(c.clone()), e, "{c:?}");
        c
    }

    #[test]
    fn details_are_stored_as_before() {
        // The JSON the producers wrote with `serde_json::json!` (sorted keys).
        let c = round_trip(Event::PushFailed(MarketFailure {
            attempts: Some(5),
            class: Some("server".into()),
            connection: "shop".into(),
            listings: Some(3),
            message: Some("boom".into()),
            orders: None,
            status: Some(503),
        }));
        assert_eq!(
            c.detail,
            r#"{"attempts":5,"class":"server","connection":"shop","listings":3,"message":"boom"}"#
        );
        assert_eq!(
            (
                c.source.as_str(),
                c.kind.as_str(),
                c.caller.as_str(),
                c.operation.as_str()
            ),
            ("sync", "push_failed", "connection:shop", "set_quantities")
        );
        assert_eq!(c.status, Some(503));
        let c = round_trip(Event::Ban(BanRaised {
            count: Some(2),
            ip: Some("203.0.113.7".into()),
            permanent: None,
            reason: Some("auto".into()),
            recidive: false,
            until_s: Some(100),
        }));
        assert_eq!(
            c.detail,
            r#"{"count":2,"ip":"203.0.113.7","reason":"auto","recidive":false,"until_s":100}"#
        );
        let c = round_trip(Event::ChannelDown(ChannelTrouble {
            channel: "ops".into(),
            held: Some(4),
            reason: Some("HTTP 500".into()),
        }));
        assert_eq!(
            c.detail,
            r#"{"channel":"ops","held":4,"reason":"HTTP 500"}"#
        );
        assert_eq!(c.caller, "alerts:ops");
        let c = round_trip(Event::ForeignEvent(ForeignEvent {
            connection: "a".into(),
            event: Some("order".into()),
            named_connections: vec!["b".into()],
        }));
        assert_eq!(
            c.detail,
            r#"{"connection":"a","event":"order","named_connections":["b"]}"#
        );
    }

    #[test]
    fn workflow_failures_round_trip_with_a_bounded_message() {
        let c = round_trip(Event::WorkflowFailed(WorkflowFailure {
            attempts: 3,
            class: "transient".into(),
            execution: "job_1".into(),
            message: "timed out".into(),
            step: "push".into(),
            version: 4,
            workflow: "restock".into(),
            status: Some(503),
        }));
        assert_eq!(
            (c.source.as_str(), c.kind.as_str(), c.caller.as_str()),
            ("workflow", "failed", "workflow:restock")
        );
        assert_eq!(
            c.detail,
            r#"{"attempts":3,"class":"transient","execution":"job_1","message":"timed out","step":"push","version":4,"workflow":"restock"}"#
        );
        let long = Event::WorkflowFailed(WorkflowFailure {
            message: "x".repeat(5000),
            ..WorkflowFailure::default()
        });
        let Event::WorkflowFailed(w) = Event::decode(long.columns()) else {
            panic!("decodes")
        };
        assert_eq!(w.message.len(), WorkflowFailure::MESSAGE_MAX);
    }

    #[test]
    fn order_and_connection_events_round_trip() {
        let c = round_trip(Event::OrderCreated(OrderChange {
            connection: "shop".into(),
            lines: 2,
            marketplace: "tiktok".into(),
            order: "O-1".into(),
            status: "placed".into(),
        }));
        assert_eq!(
            (c.source.as_str(), c.kind.as_str(), c.caller.as_str()),
            ("order", "created", "connection:shop")
        );
        assert_eq!(
            c.detail,
            r#"{"connection":"shop","lines":2,"marketplace":"tiktok","order":"O-1","status":"placed"}"#
        );
        let c = round_trip(Event::OrderCancelled(OrderChange::default()));
        assert_eq!((c.source.as_str(), c.kind.as_str()), ("order", "cancelled"));
        let c = round_trip(Event::ConnectionRevoked(ConnectionRevoked {
            connection: "shop".into(),
            marketplace: "ebay".into(),
            orders: 3,
            reason: "deauthorized".into(),
        }));
        assert_eq!(
            (c.source.as_str(), c.kind.as_str(), c.caller.as_str()),
            ("connection", "revoked", "connection:shop")
        );
        let c = round_trip(Event::StockLow(StockLow {
            available: 4,
            sku: "MUG-1".into(),
            threshold: 5,
        }));
        assert_eq!(c.detail, r#"{"available":4,"sku":"MUG-1","threshold":5}"#);
        assert_eq!(
            (c.caller.as_str(), c.operation.as_str()),
            ("sku:MUG-1", "stock")
        );
    }

    #[test]
    fn trigger_rows_decode() {
        // As PostgreSQL's json_build_object writes it.
        let e = Event::decode(EventColumns {
            source: "sync".into(),
            kind: "oversell".into(),
            caller: "connection:shop".into(),
            operation: "order.ingest".into(),
            detail: r#"{"connection" : "shop", "order" : "O-1", "sku" : "MUG", "units" : 2}"#
                .into(),
            ..EventColumns::default()
        });
        let Event::Oversell(l) = e else {
            panic!("{e:?}")
        };
        assert_eq!((l.sku.as_str(), l.units), ("MUG", Some(2)));
    }

    #[test]
    fn unknown_rows_and_keys() {
        let c = EventColumns {
            source: "workflow".into(),
            kind: "paused".into(),
            detail: "{}".into(),
            ..EventColumns::default()
        };
        assert_eq!(Event::decode(c.clone()), Event::Other(c.clone()));
        assert_eq!(Event::Other(c.clone()).columns(), c);
        let e = Event::decode(EventColumns {
            source: "sync".into(),
            kind: "authorization_expiring".into(),
            caller: "connection:x".into(),
            detail: r#"{"buyer_email":"a@b"}"#.into(),
            ..EventColumns::default()
        });
        assert_eq!(
            e,
            Event::AuthorizationExpiring(ConnectionRef {
                connection: "x".into()
            })
        );
        let bad = EventColumns {
            source: "access".into(),
            kind: "ban".into(),
            detail: "not json".into(),
            ..EventColumns::default()
        };
        assert_eq!(Event::decode(bad.clone()), Event::Other(bad));
    }
}
