//! Inbound webhook and event deliveries: the request as received, what it means, and why
//! it was refused.

use http::{HeaderMap, Method};

use stockade_core::order::Order;

use crate::MarketError;
use crate::sign::SignatureFormatError;

/// Bodies larger than this are refused before any verification or parsing.
pub const MAX_EVENT_BODY: usize = 256 * 1024;

/// An inbound HTTP request, as the server received it.
#[derive(Clone)]
pub struct InboundRequest {
    pub method: Method,
    /// The path and query exactly as received, e.g. `/hooks/ebay?challenge_code=…`.
    pub path_and_query: String,
    pub headers: HeaderMap,
    /// The raw body bytes (signatures are over these).
    pub body: Vec<u8>,
}

impl InboundRequest {
    /// A POST with a body.
    pub fn post(path_and_query: impl Into<String>, headers: HeaderMap, body: Vec<u8>) -> Self {
        InboundRequest {
            method: Method::POST,
            path_and_query: path_and_query.into(),
            headers,
            body,
        }
    }

    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl std::fmt::Debug for InboundRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers carry signatures and shared secrets, bodies carry account ids: neither
        // is printed.
        f.debug_struct("InboundRequest")
            .field("method", &self.method)
            .field("path", &self.path_and_query.split('?').next().unwrap_or(""))
            .field("headers", &self.headers.len())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Refuse a body over [`MAX_EVENT_BODY`].
pub fn check_body_size(body: &[u8]) -> Result<(), EventError> {
    if body.len() > MAX_EVENT_BODY {
        return Err(EventError::TooLarge {
            size: body.len(),
            limit: MAX_EVENT_BODY,
        });
    }
    Ok(())
}

/// What a verified delivery means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEvent {
    /// An order was created or changed: fetch it (the push is a trigger only).
    OrderChanged {
        external_id: String,
        /// The shop / seller / user the event is about, when the payload names it.
        account: Option<String>,
        /// The marketplace's status in the event, when it carries one.
        status: Option<String>,
        /// The marketplace's notification id, for de-duplication.
        event_id: Option<String>,
        occurred_at_ms: Option<i64>,
        /// What the notification itself says of the order when it says enough to move
        /// stock (Amazon's ORDER_CHANGE summary: status, SKUs, quantities; no buyer
        /// data), so stock can move before the order is fetched.
        summary: Option<Box<Order>>,
    },
    /// An endpoint validation challenge: answer 200 with this JSON body.
    Challenge { response_body: String },
    /// The account withdrew its authorisation or was deleted: drop its tokens, stop
    /// syncing, purge its personal data.
    Revoked { account: String, reason: String },
    /// The authorisation expires soon: ask the seller to authorise again.
    AuthorizationExpiring {
        account: String,
        expires_at_ms: Option<i64>,
    },
    /// A known event type that needs no action.
    Ignored { kind: String },
}

/// Why a delivery was refused. None of these carries body text, header values or
/// secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the body is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("method {0} is not accepted on this endpoint")]
    MethodNotAllowed(String),
    #[error("the signature header ({0}) is missing")]
    MissingSignature(String),
    #[error("the signature does not match the body")]
    BadSignature,
    /// Signed, but the signed timestamp is outside the accepted window (a replay, or a
    /// clock out of step), or missing.
    #[error("the delivery's signed timestamp {0}")]
    StaleTimestamp(String),
    #[error("the signature header is unusable: {0}")]
    SignatureFormat(#[from] SignatureFormatError),
    #[error("the body is not JSON (HTML or text instead)")]
    NotJson,
    #[error("the body is malformed: {0}")]
    Malformed(String),
    #[error("unknown event type {0:?}")]
    UnknownEvent(String),
    #[error("this connection is not set up to receive this event: {0}")]
    NotConfigured(&'static str),
    #[error("the signing key could not be fetched: {0}")]
    KeyUnavailable(MarketError),
}

impl EventError {
    /// The status to answer the sender with: 413 too large, 405 wrong method, 401/412
    /// signature and timestamp problems, 400 bad bodies, 500 when the key could not be fetched (so the
    /// sender retries).
    pub fn http_status(&self) -> u16 {
        match self {
            EventError::TooLarge { .. } => 413,
            EventError::MethodNotAllowed(_) => 405,
            EventError::MissingSignature(_) | EventError::StaleTimestamp(_) => 401,
            EventError::BadSignature | EventError::SignatureFormat(_) => 412,
            EventError::NotJson | EventError::Malformed(_) | EventError::UnknownEvent(_) => 400,
            EventError::NotConfigured(_) => 404,
            EventError::KeyUnavailable(_) => 500,
        }
    }
}

/// Parse a JSON body into `T`, telling HTML/text apart from broken JSON. serde's message
/// (line/column and the expected shape, never the input) is kept.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, EventError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if !matches!(first, Some(b'{' | b'[')) {
        return Err(EventError::NotJson);
    }
    serde_json::from_slice(body).map_err(|e| EventError::Malformed(serde_message(&e)))
}

/// serde_json's error text without any quoted input fragment.
pub(crate) fn serde_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    // "invalid type: string \"secret\", expected u32 at line 1 column 9": drop quoted parts.
    let mut out = String::with_capacity(text.len());
    let mut in_quote = false;
    for c in text.chars() {
        if c == '"' {
            if !in_quote {
                out.push_str("\"…\"");
            }
            in_quote = !in_quote;
        } else if !in_quote {
            out.push(c);
        }
    }
    out
}

/// How far a signed delivery's own timestamp may be from this server's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessWindow {
    /// Oldest accepted age, in seconds.
    pub max_age_s: i64,
    /// Furthest accepted into the future (clock skew), in seconds.
    pub max_ahead_s: i64,
}

impl FreshnessWindow {
    /// Refuse a signed timestamp (Unix seconds) outside the window around `now_s`.
    pub fn check(&self, signed_s: Option<i64>, now_s: i64) -> Result<(), EventError> {
        let Some(t) = signed_s else {
            return Err(EventError::StaleTimestamp(
                "is missing: a delivery without one could be replayed at any time".into(),
            ));
        };
        let age = now_s.saturating_sub(t);
        if age > self.max_age_s {
            return Err(EventError::StaleTimestamp(format!(
                "is {age} s old, over the {} s accepted: a replay, a delivery retried too late, or this server's clock is wrong",
                self.max_age_s
            )));
        }
        if -age > self.max_ahead_s {
            return Err(EventError::StaleTimestamp(format!(
                "is {} s in the future, over the {} s accepted: this server's clock or the sender's is wrong",
                -age, self.max_ahead_s
            )));
        }
        Ok(())
    }
}
