//! Response builders: each marketplace's envelope and error shapes.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use stockade_core::order::Marketplace;

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(1);

/// A request id shaped like the marketplace's.
pub(crate) fn request_id() -> String {
    let n = REQUEST_SEQ.fetch_add(1, Ordering::Relaxed);
    let t = stockade_core::time::now_ms();
    format!("{t:014X}{n:010X}")
}

/// A JSON response with `status`.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    raw_json(status, body)
}

pub(crate) fn raw_json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn with_header(mut r: Response, name: &'static str, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
    r
}

// ---- TikTok ----

/// TikTok's success envelope.
pub(crate) fn tts_ok(data: Value) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"code": 0, "message": "Success", "request_id": request_id(), "data": data}),
    )
}

/// TikTok's error envelope (`data` null) with an HTTP status.
pub(crate) fn tts_err(status: StatusCode, code: u64, message: &str) -> Response {
    json_response(
        status,
        &json!({"code": code, "message": message, "request_id": request_id(), "data": null}),
    )
}

pub(crate) const TTS_BAD_PARAMS: u64 = 36_004_004;
pub(crate) const TTS_THROTTLED: u64 = 36_009_004;
pub(crate) const TTS_INVALID_TOKEN: u64 = 105_001;
pub(crate) const TTS_EXPIRED_TOKEN: u64 = 105_002;
pub(crate) const TTS_BAD_SIGN: u64 = 106_001;
pub(crate) const TTS_INTERNAL: u64 = 36_009_003;
pub(crate) const TTS_NOT_FOUND: u64 = 36_004_005;

pub(crate) fn tts_bad(message: &str) -> Response {
    tts_err(StatusCode::BAD_REQUEST, TTS_BAD_PARAMS, message)
}

// ---- Amazon ----

/// SP-API error body `{"errors":[{code,message,details}]}` with `x-amzn-ErrorType`.
pub(crate) fn amz_err(status: StatusCode, code: &str, message: &str, details: &str) -> Response {
    let r = json_response(
        status,
        &json!({"errors": [{"code": code, "message": message, "details": details}]}),
    );
    let r = with_header(r, "x-amzn-RequestId", &amz_request_id());
    with_header(r, "x-amzn-ErrorType", code)
}

pub(crate) fn amz_ok(status: StatusCode, value: &Value) -> Response {
    with_header(
        json_response(status, value),
        "x-amzn-RequestId",
        &amz_request_id(),
    )
}

fn amz_request_id() -> String {
    let id = request_id().to_lowercase();
    format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..24]
    )
}

pub(crate) fn amz_invalid(message: &str) -> Response {
    amz_err(StatusCode::BAD_REQUEST, "InvalidInput", message, "")
}

pub(crate) fn amz_unauthorized(details: &str) -> Response {
    let r = json_response(
        StatusCode::FORBIDDEN,
        &json!({"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied.", "details": details}]}),
    );
    let r = with_header(r, "x-amzn-RequestId", &amz_request_id());
    with_header(r, "x-amzn-ErrorType", "AccessDeniedException")
}

/// LWA error `{"error","error_description"}`.
pub(crate) fn lwa_err(error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": error, "error_description": description}),
    )
}

// ---- eBay ----

pub(crate) fn ebay_err(
    status: StatusCode,
    error_id: u32,
    domain: &str,
    category: &str,
    message: &str,
    long_message: Option<&str>,
) -> Response {
    let mut e =
        json!({"errorId": error_id, "domain": domain, "category": category, "message": message});
    if let (Some(l), Some(obj)) = (long_message, e.as_object_mut()) {
        obj.insert("longMessage".into(), Value::String(l.to_owned()));
    }
    json_response(status, &json!({"errors": [e]}))
}

pub(crate) fn ebay_bad(error_id: u32, domain: &str, message: &str) -> Response {
    ebay_err(
        StatusCode::BAD_REQUEST,
        error_id,
        domain,
        "REQUEST",
        message,
        None,
    )
}

pub(crate) fn ebay_invalid_token() -> Response {
    ebay_err(
        StatusCode::UNAUTHORIZED,
        1001,
        "OAuth",
        "REQUEST",
        "Invalid access token",
        Some("Invalid access token. Check the value of the Authorization HTTP request header."),
    )
}

pub(crate) fn ebay_forbidden() -> Response {
    ebay_err(
        StatusCode::FORBIDDEN,
        1100,
        "ACCESS",
        "REQUEST",
        "Access denied",
        Some("Insufficient permissions to fulfill the request."),
    )
}

pub(crate) fn oauth_err(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

// ---- per marketplace: throttling and server errors ----

/// The marketplace's 429 answer. `retry_after` (seconds) is sent only by eBay.
pub(crate) fn throttled(m: Marketplace, retry_after: f64) -> Response {
    match m {
        Marketplace::TikTok => tts_err(
            StatusCode::TOO_MANY_REQUESTS,
            TTS_THROTTLED,
            "Too many requests, please retry later.",
        ),
        Marketplace::Amazon => amz_err(
            StatusCode::TOO_MANY_REQUESTS,
            "QuotaExceeded",
            "You exceeded your quota for the requested resource.",
            "",
        ),
        Marketplace::Ebay => {
            let r = ebay_err(
                StatusCode::TOO_MANY_REQUESTS,
                2001,
                "ACCESS",
                "REQUEST",
                "The request limit has been reached for the resource.",
                None,
            );
            let secs = retry_after.ceil().clamp(1.0, 86_400.0) as u64;
            with_header(r, "Retry-After", &secs.to_string())
        }
    }
}

/// The marketplace's internal-error answer (HTTP 500).
pub(crate) fn server_error(m: Marketplace) -> Response {
    match m {
        Marketplace::TikTok => tts_err(
            StatusCode::INTERNAL_SERVER_ERROR,
            TTS_INTERNAL,
            "Internal error, please retry later.",
        ),
        Marketplace::Amazon => amz_err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "We encountered an internal error. Please try again.",
            "",
        ),
        Marketplace::Ebay => ebay_err(
            StatusCode::INTERNAL_SERVER_ERROR,
            2003,
            "ACCESS",
            "APPLICATION",
            "There was a problem with an eBay internal system or process. Contact eBay developer support for assistance.",
            None,
        ),
    }
}

/// 404 for an unknown path, in the marketplace's shape.
pub(crate) fn no_route(m: Marketplace) -> Response {
    match m {
        Marketplace::TikTok => tts_err(StatusCode::NOT_FOUND, TTS_NOT_FOUND, "Path not found"),
        Marketplace::Amazon => amz_err(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The requested resource was not found.",
            "",
        ),
        Marketplace::Ebay => ebay_err(
            StatusCode::NOT_FOUND,
            2002,
            "ACCESS",
            "REQUEST",
            "Resource not found",
            None,
        ),
    }
}
