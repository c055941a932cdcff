//! The JSON API's answer types and its cursor pagination, shared by the handler modules
//! ([`crate::api`], [`crate::api_workflows`]) and described in the OpenAPI document
//! ([`crate::openapi`]) from these same types (`ToSchema`), so the document cannot drift
//! from what the handlers send.
//!
//! Invariants: times are RFC 3339 strings in UTC with milliseconds; no type here holds a
//! secret except the one-time answers of sign-in (`csrf_token`, `recovery_codes`) that the
//! caller must receive. Cursors are opaque to callers (URL-safe base64 of a tagged key);
//! a cursor that does not decode, or is of another list, is refused with 400
//! `invalid_cursor` and never echoed.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::AppError;

/// The one JSON error shape of `/api/` and `/hooks/` (built by `AppError`, error.rs).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable `code` to branch on and a plain-text `message`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable (e.g. `unauthenticated`, `forbidden`, `invalid_request`,
    /// `not_found`, `conflict`, `banned`, `throttled`, `internal`).
    pub code: String,
    pub message: String,
    /// On `banned`: until when (RFC 3339), `null` until an administrator lifts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// On `banned` and `throttled`: seconds to wait (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<i64>,
}

/// `?limit=&cursor=` of a paginated list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Rows per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 1000;

/// The page size asked for, within 1..=[`MAX_LIMIT`].
pub fn page_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

pub fn bad_cursor() -> AppError {
    AppError::refused(
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
        "the cursor is not one this list handed out; start again without it",
    )
}

/// An opaque cursor for a list tagged `tag` (one tag per list) holding `key`.
pub fn encode_cursor(tag: &str, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tag}:{key}"))
}

/// The key of a cursor made by [`encode_cursor`] with the same `tag`.
pub fn decode_cursor(tag: &str, cursor: &str) -> Result<String, AppError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.as_bytes())
        .map_err(|_| bad_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    text.strip_prefix(tag)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(str::to_owned)
        .ok_or_else(bad_cursor)
}

/// A signed-in user, as the sign-in answers show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserRef {
    pub id: String,
    pub email: String,
    pub role: String,
}

/// A new session (sign-in or enrollment confirmed). The session cookie is set too.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionAnswer {
    pub user: UserRef,
    /// Send as `X-CSRF-Token` on state-changing requests made with the cookie.
    pub csrf_token: String,
    /// Only after enrollment: single-use recovery codes, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
    pub expires_at: String,
}

/// 409 on sign-in: TOTP enrollment comes first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentRequired {
    pub error: ErrorDetail,
    pub enrollment_token: String,
}

/// The TOTP secret to enroll, as text, URI and QR code (SVG).
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollAnswer {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// Who is calling: a session's user or an API key.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// `session` or `api_key`.
    pub kind: String,
    pub env: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionTimes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyRef>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionTimes {
    pub created_at: String,
    pub expires_at: String,
    pub idle_timeout_s: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyRef {
    pub id: String,
    pub name: String,
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserItem {
    pub id: String,
    pub email: String,
    pub role: String,
    pub disabled: bool,
    pub mfa_enrolled: bool,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserItem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyItem {
    pub id: String,
    pub name: String,
    pub role: String,
    pub env: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyItem>,
}

/// A ban of one address (`until` null: until lifted).
#[derive(Debug, Serialize, ToSchema)]
pub struct BanItem {
    pub id: String,
    pub ip: String,
    pub since: String,
    pub until: Option<String>,
    pub count: u32,
    pub recidive: bool,
    pub reason: String,
    pub lifted_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BanList {
    pub bans: Vec<BanItem>,
}

/// The audit chain's verification (`ok` false answers 409).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditVerify {
    pub ok: bool,
    pub rows: u64,
    /// `SEQ:HASH` of the newest row.
    pub head: Option<String>,
    pub problem: Option<String>,
}

/// Alert channels' state and the newest alerts (allow-listed fields only).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsAnswer {
    pub channels: Vec<Value>,
    /// One page of alerts, newest first (each with its `deliveries`).
    pub alerts: Vec<Value>,
    pub recent: Vec<Value>,
    /// Pass as `cursor` for the next page of `alerts`; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub status: String,
}

/// One audit row (newest first in [`AuditPage`]).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditItem {
    pub seq: i64,
    pub at: String,
    pub env: String,
    /// `user:ID`, `apikey:ID` or `system:NAME`.
    pub actor: String,
    pub action: String,
    pub resource: String,
    /// The row's details object, as hashed into the chain.
    pub details: Value,
    /// This row's chain hash (hex).
    pub hash: String,
}

/// One page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub rows: Vec<AuditItem>,
    /// Pass as `cursor` (with the same filters) for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/audit`: filters and the page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only rows of this actor (exact, e.g. `user:usr_…`).
    #[serde(default)]
    pub actor: Option<String>,
    /// Only rows of this action (exact, e.g. `session.start`).
    #[serde(default)]
    pub action: Option<String>,
    /// Only rows about this resource (exact).
    #[serde(default)]
    pub resource: Option<String>,
    /// Rows per page, 1 to 1000 (default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page; absent for the first page.
    #[serde(default)]
    pub cursor: Option<String>,
}
