//! The JSON API: sign-in, MFA enrollment, logout, whoami, the access-control reads, and the
//! audit log (newest first, paged by an opaque cursor: `?limit=&cursor=`, `next_cursor`).
//! Answers are the typed [`crate::api_types`]; each handler's `#[utoipa::path]` puts it in
//! the OpenAPI document ([`crate::openapi`]).
//!
//! Errors are [`AppError`]s (`{"error":{"code","message"}}`). A failed sign-in is 401
//! whatever factor was wrong; 403 when the address is banned; 409 with an enrollment token when the user
//! must enroll TOTP first; 429 while the account is throttled.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use stockade_access::{NewSession, SecondFactor, SessionState};
use stockade_core::{SecretString, time::format_rfc3339_ms};
use utoipa::ToSchema;

use crate::api_types::{
    ApiKeyItem, ApiKeyList, AuditItem, AuditPage, AuditQuery, AuditVerify, BanItem, BanList,
    EnrollAnswer, EnrollmentRequired, ErrorBody, ErrorDetail, KeyRef, Ready, SessionAnswer,
    SessionTimes, UserItem, UserList, UserRef, WhoAmI,
};
use crate::api_types::{bad_cursor, decode_cursor, encode_cursor, page_limit};
use crate::error::AppError;
use crate::extract::{
    Caller, ClientIp, MaybeSession, clear_session_cookie, qr_svg, session_cookie,
};
use crate::state::AppState;

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;
type ApiResult = Result<Response, AppError>;

fn user_ref(s: &NewSession) -> UserRef {
    UserRef {
        id: s.user.id.clone(),
        email: s.user.email.clone(),
        role: s.user.role.as_str().to_owned(),
    }
}

fn with_cookie(mut res: Response, token: &SecretString) -> Response {
    res.headers_mut()
        .append(header::SET_COOKIE, session_cookie(token.expose_secret()));
    res
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

/// Sign in with email, password and a TOTP code (or a recovery code).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", security(()),
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SessionAnswer),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Wrong email, password or code", body = ErrorBody),
        (status = 403, description = "The address is banned", body = ErrorBody),
        (status = 409, description = "TOTP enrollment required", body = EnrollmentRequired),
        (status = 429, description = "Throttled", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    body: JsonBody<LoginBody>,
) -> ApiResult {
    let Json(body) = body.map_err(|_| {
        AppError::bad_body("\"email\", \"password\" and \"totp\" or \"recovery_code\"")
    })?;
    let password = SecretString::from(body.password);
    let factor = match (body.totp, body.recovery_code) {
        (Some(t), _) => Some(SecondFactor::Totp(SecretString::from(t))),
        (None, Some(r)) => Some(SecondFactor::Recovery(SecretString::from(r))),
        (None, None) => None,
    };
    let s = state
        .access
        .login(ip, &body.email, &password, factor.as_ref(), false)
        .await?;
    crate::routes::lockdown_sign_in(&state, &s).await?;
    if s.stage == stockade_access::Stage::Enroll {
        return Ok((
            StatusCode::CONFLICT,
            Json(EnrollmentRequired {
                error: ErrorDetail {
                    code: "mfa_enrollment_required".into(),
                    message: "TOTP enrollment is required: POST the enrollment_token to /api/v1/auth/mfa/enroll, then a code to /api/v1/auth/mfa/confirm".into(),
                    until: None,
                    retry_after_s: None,
                },
                enrollment_token: s.token.expose_secret().to_owned(),
            }),
        )
            .into_response());
    }
    Ok(with_cookie(
        Json(SessionAnswer {
            user: user_ref(&s),
            csrf_token: s.csrf.clone(),
            recovery_codes: None,
            expires_at: format_rfc3339_ms(s.expires_at_ms),
        })
        .into_response(),
        &s.token,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollBody {
    enrollment_token: String,
    #[serde(default)]
    totp: Option<String>,
}

async fn enrollment_session(
    state: &AppState,
    token: &str,
) -> Result<stockade_access::SessionView, AppError> {
    match state.access.session(token).await? {
        Some(s) if s.state == SessionState::NeedsEnrollment => Ok(s),
        _ => Err(AppError::refused(
            StatusCode::UNAUTHORIZED,
            "invalid_enrollment_token",
            "the enrollment token is unknown or expired; sign in again",
        )),
    }
}

/// Start TOTP enrollment with the token of a 409 sign-in answer.
#[utoipa::path(post, path = "/api/v1/auth/mfa/enroll", tag = "auth", security(()),
    request_body = EnrollBody,
    responses(
        (status = 200, description = "The secret to add to an authenticator", body = EnrollAnswer),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Unknown or expired enrollment token", body = ErrorBody),
    ))]
pub async fn mfa_enroll(
    State(state): State<AppState>,
    body: JsonBody<EnrollBody>,
) -> Result<Json<EnrollAnswer>, AppError> {
    let Json(body) = body.map_err(|_| AppError::bad_body("\"enrollment_token\""))?;
    let session = enrollment_session(&state, &body.enrollment_token).await?;
    let e = state.access.begin_enrollment(&session).await?;
    Ok(Json(EnrollAnswer {
        secret: e.secret_base32.as_str().to_owned(),
        otpauth_uri: e.otpauth_uri.as_str().to_owned(),
        qr_svg: qr_svg(&e.otpauth_uri),
    }))
}

/// Confirm enrollment with a first code: signs in and answers the recovery codes once.
#[utoipa::path(post, path = "/api/v1/auth/mfa/confirm", tag = "auth", security(()),
    request_body = EnrollBody,
    responses(
        (status = 200, description = "Enrolled and signed in; the session cookie is set", body = SessionAnswer),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Wrong code or unknown enrollment token", body = ErrorBody),
    ))]
pub async fn mfa_confirm(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    body: JsonBody<EnrollBody>,
) -> ApiResult {
    let Json(body) = body.map_err(|_| AppError::bad_body("\"enrollment_token\" and \"totp\""))?;
    let session = enrollment_session(&state, &body.enrollment_token).await?;
    let code = SecretString::from(body.totp.unwrap_or_default());
    let (s, codes) = state.access.confirm_enrollment(ip, &session, &code).await?;
    Ok(with_cookie(
        Json(SessionAnswer {
            user: user_ref(&s),
            csrf_token: s.csrf.clone(),
            recovery_codes: Some(codes.iter().map(|c| c.as_str().to_owned()).collect()),
            expires_at: format_rfc3339_ms(s.expires_at_ms),
        })
        .into_response(),
        &s.token,
    ))
}

/// End the session of the cookie (also a session still at a sign-in step).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("session" = [], "csrf" = [])),
    responses(
        (status = 204, description = "Signed out; the cookie is cleared"),
        (status = 401, description = "No session", body = ErrorBody),
        (status = 403, description = "Missing or wrong CSRF token", body = ErrorBody),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
) -> ApiResult {
    let session = session.ok_or_else(|| {
        AppError::refused(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "no session to end",
        )
    })?;
    state.access.logout(&session).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_session_cookie())],
    )
        .into_response())
}

/// Who is calling: the session's user or the API key, and the environment.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "access",
    responses((status = 200, description = "The caller", body = WhoAmI)))]
pub async fn whoami(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<WhoAmI> {
    let env = state.access.environment().as_str().to_owned();
    Json(match caller {
        Caller::Session(s) => WhoAmI {
            kind: "session".into(),
            env,
            user: Some(UserRef {
                id: s.user.id.clone(),
                email: s.user.email.clone(),
                role: s.user.role.as_str().to_owned(),
            }),
            session: Some(SessionTimes {
                created_at: format_rfc3339_ms(s.created_at_ms),
                expires_at: format_rfc3339_ms(s.expires_at_ms),
                idle_timeout_s: state.access.config().idle_timeout_s,
            }),
            key: None,
        },
        Caller::Key(k) => WhoAmI {
            kind: "api_key".into(),
            env,
            user: None,
            session: None,
            key: Some(KeyRef {
                id: k.id.clone(),
                name: k.name.clone(),
                role: k.role.as_str().to_owned(),
            }),
        },
    })
}

/// Every user with role, MFA state and whether disabled.
#[utoipa::path(get, path = "/api/v1/users", tag = "access",
    responses((status = 200, description = "The users", body = UserList)))]
pub async fn users(State(state): State<AppState>) -> Result<Json<UserList>, AppError> {
    let users = state.access.users().await?;
    let users = users
        .iter()
        .map(|u| UserItem {
            id: u.id.clone(),
            email: u.email.clone(),
            role: u.role.as_str().to_owned(),
            disabled: u.disabled,
            mfa_enrolled: u.mfa_enrolled,
            created_at: format_rfc3339_ms(u.created_at_ms),
        })
        .collect();
    Ok(Json(UserList { users }))
}

/// Every API key (never its secret).
#[utoipa::path(get, path = "/api/v1/apikeys", tag = "access",
    responses((status = 200, description = "The API keys", body = ApiKeyList)))]
pub async fn api_keys(State(state): State<AppState>) -> Result<Json<ApiKeyList>, AppError> {
    let keys = state.access.api_keys().await?;
    let api_keys = keys
        .iter()
        .map(|k| ApiKeyItem {
            id: k.id.clone(),
            name: k.name.clone(),
            role: k.role.as_str().to_owned(),
            env: k.env.clone(),
            created_at: format_rfc3339_ms(k.created_at_ms),
            expires_at: k.expires_at_ms.map(format_rfc3339_ms),
            last_used_at: k.last_used_at_ms.map(format_rfc3339_ms),
            revoked_at: k.revoked_at_ms.map(format_rfc3339_ms),
        })
        .collect();
    Ok(Json(ApiKeyList { api_keys }))
}

fn ban_item(b: &stockade_access::BanInfo) -> BanItem {
    BanItem {
        id: b.id.clone(),
        ip: b.ip.to_string(),
        since: format_rfc3339_ms(b.since_s * 1000),
        until: b.until_s.map(|u| format_rfc3339_ms(u * 1000)),
        count: b.count,
        recidive: b.recidive,
        reason: b.reason.clone(),
        lifted_at: b.lifted_at_s.map(|u| format_rfc3339_ms(u * 1000)),
    }
}

/// The active bans.
#[utoipa::path(get, path = "/api/v1/bans", tag = "access",
    responses((status = 200, description = "The active bans", body = BanList)))]
pub async fn bans(State(state): State<AppState>) -> Result<Json<BanList>, AppError> {
    let bans = state.access.bans(false).await?;
    Ok(Json(BanList {
        bans: bans.iter().map(ban_item).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BanBody {
    ip: String,
    #[serde(default)]
    duration: Option<String>,
}

/// Ban an address (`duration` like `1h`, `7d`, or `permanent`; default 1h).
#[utoipa::path(post, path = "/api/v1/bans", tag = "access", request_body = BanBody,
    responses(
        (status = 201, description = "Banned", body = BanItem),
        (status = 400, description = "Bad address or duration", body = ErrorBody),
    ))]
pub async fn add_ban(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: JsonBody<BanBody>,
) -> ApiResult {
    let Json(body) = body.map_err(|_| AppError::bad_body("\"ip\" and optionally \"duration\""))?;
    let ip = body.ip.trim().parse().map_err(|_| {
        AppError::refused(
            StatusCode::BAD_REQUEST,
            "invalid_ip",
            "`ip` must be an IPv4 or IPv6 address",
        )
    })?;
    let duration =
        stockade_access::service::parse_duration(body.duration.as_deref().unwrap_or("1h"))
            .map_err(|e| {
                AppError::refused(StatusCode::BAD_REQUEST, "invalid_duration", e.to_string())
            })?;
    let b = state.access.add_ban(ip, duration, &caller.actor()).await?;
    Ok((StatusCode::CREATED, Json(ban_item(&b))).into_response())
}

/// Lift the ban of an address.
#[utoipa::path(delete, path = "/api/v1/bans/{ip}", tag = "access",
    params(("ip" = String, Path, description = "IPv4 or IPv6 address")),
    responses(
        (status = 204, description = "Lifted"),
        (status = 400, description = "Not an address", body = ErrorBody),
        (status = 404, description = "Not banned", body = ErrorBody),
    ))]
pub async fn remove_ban(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(ip): Path<String>,
) -> Result<StatusCode, AppError> {
    let ip = ip.parse().map_err(|_| {
        AppError::refused(
            StatusCode::BAD_REQUEST,
            "invalid_ip",
            "not an IPv4 or IPv6 address",
        )
    })?;
    // Not banned: 404 `not_banned` (the `From<AccessError>`).
    state.access.remove_ban(ip, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Verify the audit chain: every row's hash against its predecessor's.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses(
        (status = 200, description = "The chain verifies", body = AuditVerify),
        (status = 409, description = "The chain is broken", body = AuditVerify),
    ))]
pub async fn audit_verify(State(state): State<AppState>) -> ApiResult {
    let report = state.access.store().verify_audit(None).await?;
    let ok = report.problem.is_none();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    Ok((
        status,
        Json(AuditVerify {
            ok,
            rows: report.rows_checked,
            head: report
                .head
                .map(|(seq, hash)| format!("{seq}:{}", hex::encode(hash))),
            problem: report.problem.map(|p| p.to_string()),
        }),
    )
        .into_response())
}

const AUDIT_CURSOR: &str = "a1";

/// The audit log, newest first, filtered by actor, action and resource, paged by cursor.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses(
        (status = 200, description = "One page of audit rows, newest first", body = AuditPage),
        (status = 400, description = "Bad filter, limit or cursor", body = ErrorBody),
    ))]
pub async fn audit(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, AppError> {
    let Query(q) = query.map_err(|_| {
        AppError::refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the query takes actor, action, resource, limit and cursor",
        )
    })?;
    let limit = page_limit(q.limit);
    let before = match q.cursor.as_deref() {
        Some(c) => decode_cursor(AUDIT_CURSOR, c)?
            .parse::<i64>()
            .map_err(|_| bad_cursor())?,
        None => i64::MAX,
    };
    let filter = (
        q.actor.as_deref().unwrap_or(""),
        q.action.as_deref().unwrap_or(""),
        q.resource.as_deref().unwrap_or(""),
    );
    // `limit` is at most 1000, so the conversion holds.
    let fetch = u32::try_from(limit + 1).unwrap_or(1001);
    let mut rows = state
        .access
        .store()
        .audit_rows_before(before, filter, fetch)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|r| encode_cursor(AUDIT_CURSOR, &r.seq.to_string()));
    let rows = rows
        .into_iter()
        .map(|r| AuditItem {
            seq: r.seq,
            at: format_rfc3339_ms(r.ts_ms),
            env: r.env,
            actor: r.actor,
            action: r.action,
            resource: r.resource,
            details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
            hash: hex::encode(&r.hash),
        })
        .collect();
    Ok(Json(AuditPage { rows, next_cursor }))
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, AppError> {
    match state.access.store().query_one("SELECT 1", vec![]).await {
        Ok(_) => Ok(Json(Ready {
            status: "ready".into(),
        })),
        Err(e) => {
            tracing::warn!("readiness check failed: {e}");
            Err(AppError::refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the database is not reachable",
            ))
        }
    }
}

// Holds credentials or tokens: never printed.
impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginBody { .. }")
    }
}

// Holds credentials or tokens: never printed.
impl std::fmt::Debug for EnrollBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnrollBody { .. }")
    }
}

// Holds credentials or tokens: never printed.
impl std::fmt::Debug for BanBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BanBody { .. }")
    }
}
