//! The JSON API: sign-in, MFA enrollment, logout, whoami, and the access-control reads.
//!
//! Errors are [`AppError`]s (`{"error":{"code","message"}}`). A failed sign-in is 401
//! whatever factor was wrong; 403 when the address is banned; 409 with an enrollment token when the user
//! must enroll TOTP first; 429 while the account is throttled.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use stockade_access::{NewSession, SecondFactor, SessionState};
use stockade_core::{SecretString, time::format_rfc3339_ms};

use crate::dashboard;
use crate::error::AppError;
use crate::extract::{
    Caller, ClientIp, MaybeSession, clear_session_cookie, qr_svg, session_cookie,
};
use crate::state::AppState;

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;
type ApiResult = Result<Response, AppError>;

fn user_json(s: &NewSession) -> Value {
    json!({"id": s.user.id, "email": s.user.email, "role": s.user.role.as_str()})
}

fn with_cookie(mut res: Response, token: &SecretString) -> Response {
    res.headers_mut()
        .append(header::SET_COOKIE, session_cookie(token.expose_secret()));
    res
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

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
    if s.stage == stockade_access::Stage::Enroll {
        return Ok((
            StatusCode::CONFLICT,
            Json(json!({
                "error": {"code": "mfa_enrollment_required", "message": "TOTP enrollment is required: POST the enrollment_token to /api/v1/auth/mfa/enroll, then a code to /api/v1/auth/mfa/confirm"},
                "enrollment_token": s.token.expose_secret(),
            })),
        )
            .into_response());
    }
    Ok(with_cookie(
        Json(json!({
            "user": user_json(&s),
            "csrf_token": s.csrf,
            "expires_at": format_rfc3339_ms(s.expires_at_ms),
        }))
        .into_response(),
        &s.token,
    ))
}

#[derive(Deserialize)]
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

pub async fn mfa_enroll(
    State(state): State<AppState>,
    body: JsonBody<EnrollBody>,
) -> Result<Json<Value>, AppError> {
    let Json(body) = body.map_err(|_| AppError::bad_body("\"enrollment_token\""))?;
    let session = enrollment_session(&state, &body.enrollment_token).await?;
    let e = state.access.begin_enrollment(&session).await?;
    Ok(Json(json!({
        "secret": e.secret_base32.as_str(),
        "otpauth_uri": e.otpauth_uri.as_str(),
        "qr_svg": qr_svg(&e.otpauth_uri),
    })))
}

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
        Json(json!({
            "user": user_json(&s),
            "csrf_token": s.csrf,
            "recovery_codes": codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "expires_at": format_rfc3339_ms(s.expires_at_ms),
        }))
        .into_response(),
        &s.token,
    ))
}

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

pub async fn whoami(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let env = state.access.environment().as_str();
    Json(match caller {
        Caller::Session(s) => json!({
            "kind": "session",
            "env": env,
            "user": {"id": s.user.id, "email": s.user.email, "role": s.user.role.as_str()},
            "session": {
                "created_at": format_rfc3339_ms(s.created_at_ms),
                "expires_at": format_rfc3339_ms(s.expires_at_ms),
                "idle_timeout_s": state.access.config().idle_timeout_s,
            },
        }),
        Caller::Key(k) => json!({
            "kind": "api_key",
            "env": env,
            "key": {"id": k.id, "name": k.name, "role": k.role.as_str()},
        }),
    })
}

pub async fn users(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let users = state.access.users().await?;
    Ok(Json(json!({"users": users.iter().map(|u| json!({
        "id": u.id, "email": u.email, "role": u.role.as_str(), "disabled": u.disabled,
        "mfa_enrolled": u.mfa_enrolled, "created_at": format_rfc3339_ms(u.created_at_ms),
    })).collect::<Vec<_>>()})))
}

pub async fn api_keys(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let keys = state.access.api_keys().await?;
    Ok(Json(json!({"api_keys": keys.iter().map(|k| json!({
        "id": k.id, "name": k.name, "role": k.role.as_str(), "env": k.env,
        "created_at": format_rfc3339_ms(k.created_at_ms),
        "expires_at": k.expires_at_ms.map(format_rfc3339_ms),
        "last_used_at": k.last_used_at_ms.map(format_rfc3339_ms),
        "revoked_at": k.revoked_at_ms.map(format_rfc3339_ms),
    })).collect::<Vec<_>>()})))
}

fn ban_json(b: &stockade_access::BanInfo) -> Value {
    json!({
        "id": b.id, "ip": b.ip.to_string(), "since": format_rfc3339_ms(b.since_s * 1000),
        "until": b.until_s.map(|u| format_rfc3339_ms(u * 1000)), "count": b.count,
        "recidive": b.recidive, "reason": b.reason,
        "lifted_at": b.lifted_at_s.map(|u| format_rfc3339_ms(u * 1000)),
    })
}

pub async fn bans(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let bans = state.access.bans(false).await?;
    Ok(Json(
        json!({"bans": bans.iter().map(ban_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanBody {
    ip: String,
    #[serde(default)]
    duration: Option<String>,
}

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
    Ok((StatusCode::CREATED, Json(ban_json(&b))).into_response())
}

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
        Json(json!({
            "ok": ok,
            "rows": report.rows_checked,
            "head": report.head.map(|(seq, hash)| format!("{seq}:{}", hex::encode(hash))),
            "problem": report.problem.map(|p| p.to_string()),
        })),
    )
        .into_response())
}

/// Alert channels' state and the newest alerts (scrubbed, allow-listed fields only).
pub async fn alerts(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let store = state.access.store();
    let (channels, recent) = dashboard::alerts_view(store, 50).await?;
    let alerts = dashboard::alert_history(store, 100).await?;
    Ok(Json(
        json!({"channels": channels, "alerts": alerts, "recent": recent}),
    ))
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    match state.access.store().query_one("SELECT 1", vec![]).await {
        Ok(_) => Ok(Json(json!({"status": "ready"}))),
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
