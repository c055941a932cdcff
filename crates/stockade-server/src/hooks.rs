//! Webhooks in: `POST /hooks/{tiktok,amazon,ebay}/{connection}` and eBay's endpoint
//! validation challenge `GET /hooks/ebay/{connection}?challenge_code=…`.
//!
//! These routes carry no session and no API key: the marketplace's signature is the
//! credential, and only the sync engine (through the marketplace connector) can check it.
//! The server does not depend on that engine: it hands each delivery to a
//! [`HookSink`](stockade_marketplaces::HookSink) (the contract lives in
//! `stockade-marketplaces`, next to [`InboundRequest`]) and maps its [`HookError`] to an
//! [`AppError`] here.
//!
//! The order, each step before the next:
//! 1. the ban check (the outer gate in [`crate::routes::front_gate`], before routing);
//! 2. a sink is running (else 503: the marketplace retries);
//! 3. the connection name is 1 to 64 of `[A-Za-z0-9_-]` (else 404, logged);
//! 4. the body is at most [`MAX_EVENT_BODY`]: a larger declared length is refused
//!    unread, a longer stream is refused once it passes the limit (413, not counted);
//! 5. the sink verifies the signature before it parses anything, and resolves only once
//!    what the delivery carries is durably stored: its 2xx is the acknowledgement.
//!
//! Bad signatures are recorded as `webhook_signature` failures in the `webhook` jail, so
//! repeated ones ban the address from the webhook routes (only: staff sign-in is the
//! `interactive` jail). Deliveries to unknown connections (404) or revoked ones (410:
//! the marketplace should stop) are logged, not counted: a marketplace still posting to
//! a stale URL is not an attacker, and a guessed name gains nothing. Answers never echo the
//! body, the headers or the signature; log lines name the marketplace, the connection,
//! the status and the kind of outcome only.

use std::borrow::Cow;
use std::net::IpAddr;
use std::pin::Pin;

use axum::Extension;
use axum::body::{Body, HttpBody};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stockade_access::FailureKind;
use stockade_core::time::now_ms;
use stockade_marketplaces::{HookAnswer, HookError, InboundRequest, MAX_EVENT_BODY};

use crate::error::AppError;
use crate::extract::{ClientIp, HookRoute};
use crate::state::AppState;

/// Seconds a marketplace is asked to wait before retrying an unavailable endpoint.
pub const RETRY_AFTER_S: i64 = 5;

/// A connection name as it may appear in a hook URL: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn valid_connection_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The handler of every hook route.
pub async fn receive(
    State(state): State<AppState>,
    route: Option<Extension<HookRoute>>,
    client: Option<Extension<ClientIp>>,
    connection: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, AppError> {
    let (Some(Extension(HookRoute(marketplace))), Some(Extension(ClientIp(ip)))) = (route, client)
    else {
        return Err(AppError::internal(
            "a hook route was reached without its gate",
        ));
    };
    let Some(sink) = state.hooks.clone() else {
        tracing::warn!(
            target: "stockade::hooks",
            "webhook {marketplace} status=503 outcome=sync_not_running"
        );
        return Err(unavailable("sync is not running"));
    };
    let connection = match connection {
        Ok(Path(name)) if valid_connection_name(&name) => name,
        _ => {
            // Not logged: it is not a name we could have issued, and may be anything.
            tracing::warn!(
                target: "stockade::hooks",
                "webhook {marketplace} connection=<invalid> status=404 outcome=unknown_connection"
            );
            return Err(HookError::UnknownConnection.into());
        }
    };
    // Incident isolation: the connection's deliveries are refused with Retry-After (the
    // marketplace delivers them again after `stockade incident release`). A lockdown
    // alone does not refuse them: orders keep coming in, verified and stored.
    if state
        .access
        .store()
        .controls()
        .connection_isolated(&connection)
    {
        tracing::warn!(
            target: "stockade::hooks",
            "webhook {marketplace} connection={connection} status=503 outcome=isolated"
        );
        return Err(unavailable(
            "this connection is isolated by an incident; deliver again later",
        ));
    }
    let log = |status: StatusCode, outcome: &str| {
        let status = status.as_u16();
        if (200..300).contains(&status) {
            tracing::info!(
                target: "stockade::hooks",
                "webhook {marketplace} connection={connection} status={status} outcome={outcome}"
            );
        } else {
            tracing::warn!(
                target: "stockade::hooks",
                "webhook {marketplace} connection={connection} status={status} outcome={outcome}"
            );
        }
    };

    if req.method() == Method::HEAD {
        // Only a GET (eBay's challenge) or a POST is a delivery; a HEAD probe is neither.
        log(StatusCode::METHOD_NOT_ALLOWED, "head");
        let refused = AppError::refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "webhooks are delivered with POST (eBay's challenge with GET)",
        );
        return Ok(([(header::ALLOW, "GET, POST")], refused).into_response());
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_EVENT_BODY as u64) {
        log(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
        return Err(HookError::TooLarge.into());
    }
    let (parts, body) = req.into_parts();
    let body = match read_limited(body, MAX_EVENT_BODY).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => {
            log(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
            return Err(HookError::TooLarge.into());
        }
        Err(ReadError::Broken) => {
            log(StatusCode::BAD_REQUEST, "unreadable_body");
            return Err(AppError::refused(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                "the request body could not be read",
            ));
        }
    };
    let request = InboundRequest {
        method: parts.method,
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
        headers: parts.headers,
        body,
    };

    // Spawned: if the marketplace hangs up, the delivery still runs to its end (it is
    // idempotent, the retry finds it done) and a panicking sink is a 500, not a reset.
    let delivery = tokio::spawn(sink.deliver(marketplace, connection.clone(), request)).await;
    let answer = match delivery {
        Err(_) => {
            log(StatusCode::INTERNAL_SERVER_ERROR, "sink_failed");
            return Err(AppError::internal(format_args!(
                "the {marketplace} hook sink failed on connection {connection}"
            )));
        }
        Ok(Ok(answer)) => answer,
        Ok(Err(HookError::Overloaded)) => {
            // Shed: counted and summarised once a second by the sink, not logged here.
            return Err(HookError::Overloaded.into());
        }
        Ok(Err(e)) => {
            match &e {
                HookError::Signature(reason) => {
                    tracing::warn!(
                        target: "stockade::hooks",
                        "webhook {marketplace} connection={connection} signature refused: {reason}"
                    );
                    count_failure(&state, ip).await;
                }
                HookError::Unavailable(cause) => {
                    // One line a second for the process (`hook_log`), not one per delivery.
                    if let Some(held) = crate::hook_log::UNAVAILABLE.admit(now_ms()) {
                        tracing::warn!(
                            target: "stockade::hooks",
                            "webhook {marketplace} connection={connection} status=503 unavailable: {cause} ({held} more refused as unavailable since the last such line)"
                        );
                    }
                }
                _ => {}
            }
            if !matches!(e, HookError::UnknownConnection) {
                state.hook_stats.record(&connection, false, now_ms());
            }
            let (kind, said) = (e.kind(), matches!(e, HookError::Unavailable(_)));
            let refused = AppError::from(e);
            if !said {
                log(refused.status(), kind);
            }
            return Err(refused);
        }
    };
    let Some(res) = answer_response(answer) else {
        log(StatusCode::INTERNAL_SERVER_ERROR, "bad_sink_answer");
        return Err(AppError::internal(format_args!(
            "the {marketplace} hook sink answered with a non-2xx status or an invalid content type"
        )));
    };
    // Accepted deliveries are logged at debug: the engine logs one line per stored batch.
    tracing::debug!(
        target: "stockade::hooks",
        "webhook {marketplace} connection={connection} status={} outcome=accepted",
        res.status().as_u16()
    );
    state.hook_stats.record(&connection, true, now_ms());
    Ok(res)
}

/// Record a bad signature in the `webhook` jail (and the Fail2Ban log line); also for
/// workflow webhooks' auth failures.
pub(crate) async fn count_failure(state: &AppState, ip: IpAddr) {
    if let Err(e) = state
        .access
        .record_failure(ip, FailureKind::WebhookSignature, None, None)
        .await
    {
        tracing::error!("could not record a webhook failure: {e}");
    }
}

fn answer_response(answer: HookAnswer) -> Option<Response> {
    let status = StatusCode::from_u16(answer.status)
        .ok()
        .filter(StatusCode::is_success)?;
    let content_type = HeaderValue::from_str(answer.content_type).ok()?;
    Some((status, [(header::CONTENT_TYPE, content_type)], answer.body).into_response())
}

impl From<HookError> for AppError {
    /// What a marketplace is told about a delivery the sink refused (never its cause).
    fn from(e: HookError) -> Self {
        let (status, code, message): (_, _, Cow<'static, str>) = match e {
            HookError::UnknownConnection => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no webhook endpoint here".into(),
            ),
            HookError::RevokedConnection => (
                StatusCode::GONE,
                "connection_revoked",
                "this connection was revoked; stop delivering to it".into(),
            ),
            HookError::Signature(_) => (
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "the delivery's signature does not verify".into(),
            ),
            HookError::Malformed(message) => (StatusCode::BAD_REQUEST, "malformed", message.into()),
            HookError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is larger than {MAX_EVENT_BODY} bytes").into(),
            ),
            HookError::Unavailable(_) => {
                return unavailable("the endpoint is temporarily unavailable; retry later");
            }
            HookError::Overloaded => {
                return unavailable("the server is overloaded; retry later");
            }
        };
        AppError::refused(status, code, message)
    }
}

/// 503 with `Retry-After`: the marketplace retries.
pub(crate) fn unavailable(message: &'static str) -> AppError {
    AppError::Refused {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "unavailable",
        message: message.into(),
        retry_after_s: Some(RETRY_AFTER_S),
    }
}

pub(crate) enum ReadError {
    TooLarge,
    Broken,
}

/// Read the body, refusing it as soon as it passes `limit` bytes: at most `limit` bytes
/// (plus the one frame in flight) are ever held.
pub(crate) async fn read_limited(mut body: Body, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(data) = frame.map_err(|_| ReadError::Broken)?.into_data() else {
            continue; // trailers
        };
        if out.len() + data.len() > limit {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_names_are_short_and_plain() {
        for good in ["a", "shop-1", "EU_main", &"x".repeat(64)] {
            assert!(valid_connection_name(good), "{good}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "a b",
            "a/b",
            "a.b",
            "{connection}",
            "ä",
            "a%2F",
        ] {
            assert!(!valid_connection_name(bad), "{bad}");
        }
    }

    #[test]
    fn only_2xx_answers_with_a_valid_content_type_pass() {
        assert!(answer_response(HookAnswer::ok()).is_some());
        assert!(answer_response(HookAnswer::json(b"{}".to_vec())).is_some());
        let mut a = HookAnswer::ok();
        a.status = 404;
        assert!(answer_response(a.clone()).is_none());
        a.status = 1000;
        assert!(answer_response(a).is_none());
        let mut b = HookAnswer::ok();
        b.content_type = "text/plain\n";
        assert!(answer_response(b).is_none());
    }
}
