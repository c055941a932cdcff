//! The webhook contract between the HTTP edge and whatever processes deliveries.
//!
//! The server receives `POST /hooks/<marketplace>/<connection>` (and eBay's challenge
//! `GET`), checks the connection name and the body size, and hands the
//! [`InboundRequest`] to a [`HookSink`]; the sync engine implements it. Both depend on
//! this crate, so the contract lives here and neither calls up into the binary. A
//! delivery's walk runs one way: route → verify → fetch → ingest → commit → answer.
//!
//! Invariants a sink keeps:
//! - it verifies the signature before it parses anything;
//! - it resolves only once what the delivery carries is durably stored: the 2xx
//!   [`HookAnswer`] is the marketplace's acknowledgement;
//! - the texts in a [`HookError`] never hold request content (no body, headers or
//!   signature).

use std::future::Future;
use std::pin::Pin;

use stockade_core::order::Marketplace;

use crate::events::InboundRequest;

/// What [`HookSink::deliver`] returns: owned, so the server can run it to completion
/// even when the marketplace hangs up (a half-processed delivery is never left behind).
pub type HookFuture = Pin<Box<dyn Future<Output = Result<HookAnswer, HookError>> + Send>>;

/// Where verified deliveries go: implemented by the sync engine.
pub trait HookSink: Send + Sync + 'static {
    /// Verify (signature first, before parsing) and process one delivery. Resolve only
    /// once whatever it carries is durably stored: the 2xx answer is the marketplace's
    /// acknowledgement. `connection` is already checked to be 1 to 64 of `[A-Za-z0-9_-]`;
    /// `request.body` is at most [`MAX_EVENT_BODY`](crate::MAX_EVENT_BODY).
    fn deliver(
        &self,
        marketplace: Marketplace,
        connection: String,
        request: InboundRequest,
    ) -> HookFuture;
}

/// The answer to an accepted delivery, passed through to the marketplace as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAnswer {
    /// A 2xx status; anything else is a sink bug and answered 500.
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl HookAnswer {
    /// 200 with `{"ok":true}`: "received".
    pub fn ok() -> Self {
        HookAnswer::json(b"{\"ok\":true}".to_vec())
    }

    /// 200 with a JSON body (eBay's challenge response).
    pub fn json(body: impl Into<Vec<u8>>) -> Self {
        HookAnswer {
            status: 200,
            content_type: "application/json",
            body: body.into(),
        }
    }
}

/// Why a delivery was refused. None of the texts may hold request content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// No such connection for this marketplace: 404, logged, not counted as an
    /// authentication failure.
    #[error("no such connection")]
    UnknownConnection,
    /// 410: the connection existed and was revoked (the marketplace should stop
    /// delivering). Logged, not counted.
    #[error("the connection was revoked")]
    RevokedConnection,
    /// The signature is missing or wrong: 401 with a generic body, counted in the
    /// `webhook` jail. The reason (`"missing_signature"`, `"stale_timestamp"`…) goes to
    /// the log only.
    #[error("signature refused ({0})")]
    Signature(&'static str),
    /// Signed but unusable: 400 with this message (a scrubbed description, no input
    /// echoed). Verified, so not counted.
    #[error("malformed delivery")]
    Malformed(String),
    /// Over the body limit: 413.
    #[error("body too large")]
    TooLarge,
    /// Not stored now (store down, shutting down): 503 with `Retry-After: 5`, the
    /// marketplace retries. The cause goes to the log only.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Shed: too many deliveries pending. 503 with `Retry-After`, like `Unavailable`,
    /// but not logged per delivery (the sink counts them and logs a summary a second).
    #[error("overloaded")]
    Overloaded,
}

impl HookError {
    /// The stable word logged for this outcome.
    pub fn kind(&self) -> &'static str {
        match self {
            HookError::UnknownConnection => "unknown_connection",
            HookError::RevokedConnection => "revoked_connection",
            HookError::Signature(_) => "bad_signature",
            HookError::Malformed(_) => "malformed",
            HookError::TooLarge => "too_large",
            HookError::Unavailable(_) => "unavailable",
            HookError::Overloaded => "overloaded",
        }
    }
}
