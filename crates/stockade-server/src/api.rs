//! The JSON API: sign-in, MFA enrollment, logout, whoami, and the access-control reads.
//!
//! Errors are `{"error":{"code","message"}}`. A failed sign-in is 401 whatever factor
//! was wrong; 403 when the address is banned; 409 with an enrollment token when the user
//! must enroll TOTP first; 429 while the account is throttled.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use stockade_access::{LoginError, NewSession, SecondFactor, SessionState};
use stockade_core::{SecretString, time::format_rfc3339_ms};

use crate::AppState;
use crate::routes::{Caller, ClientIp, MaybeSession, SESSION_COOKIE, internal};

/// A JSON body that did not parse: 400 with what was expected, never echoing the input
/// (it may hold a password).
fn bad_body(expected: &str) -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!(
            "the body must be a JSON object with {expected}, sent as Content-Type: application/json"
        ),
    )
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

pub fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// The session cookie: `__Host-` prefix (Secure, Path=/, no Domain), HttpOnly, SameSite=Strict.
pub fn session_cookie(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| {
        HeaderValue::from_static(
            "__Host-stockade=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        )
    })
}

pub fn clear_session_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-stockade=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}

pub fn login_error(e: LoginError) -> Response {
    match e {
        LoginError::Banned { until } => {
            crate::ban_page::banned_json(until, stockade_core::time::now_ms() / 1000)
        }
        LoginError::Throttled { retry_after } => {
            let mut res = api_error(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "too many failed attempts for this account; wait and try again",
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
        LoginError::Failed => api_error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "sign-in failed: check the email, password and code",
        ),
        LoginError::Internal(e) => internal(e),
    }
}

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
) -> Response {
    let Ok(Json(body)) = body else {
        return bad_body("\"email\", \"password\" and \"totp\" or \"recovery_code\"");
    };
    let password = SecretString::from(body.password);
    let factor = match (body.totp, body.recovery_code) {
        (Some(t), _) => Some(SecondFactor::Totp(SecretString::from(t))),
        (None, Some(r)) => Some(SecondFactor::Recovery(SecretString::from(r))),
        (None, None) => None,
    };
    match state
        .access
        .login(ip, &body.email, &password, factor.as_ref(), false)
        .await
    {
        Ok(s) if s.stage == stockade_access::Stage::Enroll => (
            StatusCode::CONFLICT,
            Json(json!({
                "error": {"code": "mfa_enrollment_required", "message": "TOTP enrollment is required: POST the enrollment_token to /api/v1/auth/mfa/enroll, then a code to /api/v1/auth/mfa/confirm"},
                "enrollment_token": s.token.expose_secret(),
            })),
        )
            .into_response(),
        Ok(s) => with_cookie(
            Json(json!({
                "user": user_json(&s),
                "csrf_token": s.csrf,
                "expires_at": format_rfc3339_ms(s.expires_at_ms),
            }))
            .into_response(),
            &s.token,
        ),
        Err(e) => login_error(e),
    }
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
) -> Result<stockade_access::SessionView, Response> {
    match state.access.session(token).await {
        Ok(Some(s)) if s.state == SessionState::NeedsEnrollment => Ok(s),
        Ok(_) => Err(api_error(
            StatusCode::UNAUTHORIZED,
            "invalid_enrollment_token",
            "the enrollment token is unknown or expired; sign in again",
        )),
        Err(e) => Err(internal(e)),
    }
}

pub async fn mfa_enroll(State(state): State<AppState>, body: JsonBody<EnrollBody>) -> Response {
    let Ok(Json(body)) = body else {
        return bad_body("\"enrollment_token\"");
    };
    let session = match enrollment_session(&state, &body.enrollment_token).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match state.access.begin_enrollment(&session).await {
        Ok(e) => Json(json!({
            "secret": e.secret_base32.as_str(),
            "otpauth_uri": e.otpauth_uri.as_str(),
            "qr_svg": crate::pages::qr_svg(&e.otpauth_uri),
        }))
        .into_response(),
        Err(e) => login_error(e),
    }
}

pub async fn mfa_confirm(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    body: JsonBody<EnrollBody>,
) -> Response {
    let Ok(Json(body)) = body else {
        return bad_body("\"enrollment_token\" and \"totp\"");
    };
    let session = match enrollment_session(&state, &body.enrollment_token).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let code = SecretString::from(body.totp.unwrap_or_default());
    match state.access.confirm_enrollment(ip, &session, &code).await {
        Ok((s, codes)) => with_cookie(
            Json(json!({
                "user": user_json(&s),
                "csrf_token": s.csrf,
                "recovery_codes": codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "expires_at": format_rfc3339_ms(s.expires_at_ms),
            }))
            .into_response(),
            &s.token,
        ),
        Err(e) => login_error(e),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
) -> Response {
    let Some(session) = session else {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "no session to end",
        );
    };
    match state.access.logout(&session).await {
        Ok(()) => {
            let mut res = StatusCode::NO_CONTENT.into_response();
            res.headers_mut()
                .append(header::SET_COOKIE, clear_session_cookie());
            res
        }
        Err(e) => internal(e),
    }
}

pub async fn whoami(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let env = state.access.environment().as_str();
    match caller {
        Caller::Session(s) => Json(json!({
            "kind": "session",
            "env": env,
            "user": {"id": s.user.id, "email": s.user.email, "role": s.user.role.as_str()},
            "session": {
                "created_at": format_rfc3339_ms(s.created_at_ms),
                "expires_at": format_rfc3339_ms(s.expires_at_ms),
                "idle_timeout_s": state.access.config().idle_timeout_s,
            },
        })),
        Caller::Key(k) => Json(json!({
            "kind": "api_key",
            "env": env,
            "key": {"id": k.id, "name": k.name, "role": k.role.as_str()},
        })),
    }
    .into_response()
}

pub async fn users(State(state): State<AppState>) -> Response {
    match state.access.users().await {
        Ok(users) => Json(json!({"users": users.iter().map(|u| json!({
            "id": u.id, "email": u.email, "role": u.role.as_str(), "disabled": u.disabled,
            "mfa_enrolled": u.mfa_enrolled, "created_at": format_rfc3339_ms(u.created_at_ms),
        })).collect::<Vec<_>>()}))
        .into_response(),
        Err(e) => internal(e),
    }
}

pub async fn api_keys(State(state): State<AppState>) -> Response {
    match state.access.api_keys().await {
        Ok(keys) => Json(json!({"api_keys": keys.iter().map(|k| json!({
            "id": k.id, "name": k.name, "role": k.role.as_str(), "env": k.env,
            "created_at": format_rfc3339_ms(k.created_at_ms),
            "expires_at": k.expires_at_ms.map(format_rfc3339_ms),
            "last_used_at": k.last_used_at_ms.map(format_rfc3339_ms),
            "revoked_at": k.revoked_at_ms.map(format_rfc3339_ms),
        })).collect::<Vec<_>>()}))
        .into_response(),
        Err(e) => internal(e),
    }
}

fn ban_json(b: &stockade_access::BanInfo) -> Value {
    json!({
        "id": b.id, "ip": b.ip.to_string(), "since": format_rfc3339_ms(b.since_s * 1000),
        "until": b.until_s.map(|u| format_rfc3339_ms(u * 1000)), "count": b.count,
        "recidive": b.recidive, "reason": b.reason,
        "lifted_at": b.lifted_at_s.map(|u| format_rfc3339_ms(u * 1000)),
    })
}

pub async fn bans(State(state): State<AppState>) -> Response {
    match state.access.bans(false).await {
        Ok(bans) => {
            Json(json!({"bans": bans.iter().map(ban_json).collect::<Vec<_>>()})).into_response()
        }
        Err(e) => internal(e),
    }
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
) -> Response {
    let Ok(Json(body)) = body else {
        return bad_body("\"ip\" and optionally \"duration\"");
    };
    let Ok(ip) = body.ip.trim().parse() else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_ip",
            "`ip` must be an IPv4 or IPv6 address",
        );
    };
    let duration =
        match stockade_access::service::parse_duration(body.duration.as_deref().unwrap_or("1h")) {
            Ok(d) => d,
            Err(e) => {
                return api_error(StatusCode::BAD_REQUEST, "invalid_duration", &e.to_string());
            }
        };
    match state.access.add_ban(ip, duration, &caller.actor()).await {
        Ok(b) => (StatusCode::CREATED, Json(ban_json(&b))).into_response(),
        Err(e) => internal(e),
    }
}

pub async fn remove_ban(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(ip): Path<String>,
) -> Response {
    let Ok(ip) = ip.parse() else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_ip",
            "not an IPv4 or IPv6 address",
        );
    };
    match state.access.remove_ban(ip, &caller.actor()).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(stockade_access::AccessError::NotBanned(_)) => api_error(
            StatusCode::NOT_FOUND,
            "not_banned",
            "this address is not banned",
        ),
        Err(e) => internal(e),
    }
}

pub async fn audit_verify(State(state): State<AppState>) -> Response {
    match state.access.store().verify_audit(None).await {
        Ok(report) => {
            let ok = report.problem.is_none();
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::CONFLICT
            };
            (
                status,
                Json(json!({
                    "ok": ok,
                    "rows": report.rows_checked,
                    "head": report.head.map(|(seq, hash)| format!("{seq}:{}", hex::encode(hash))),
                    "problem": report.problem.map(|p| p.to_string()),
                })),
            )
                .into_response()
        }
        Err(e) => internal(e),
    }
}

/// Alert channels' state and the newest alerts (scrubbed, allow-listed fields only).
pub async fn alerts(State(state): State<AppState>) -> Response {
    let store = state.access.store();
    let view = match alerts_view(store, 50).await {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    match alert_history(store, 100).await {
        Ok(alerts) => {
            let (channels, recent) = view;
            Json(json!({"channels": channels, "alerts": alerts, "recent": recent})).into_response()
        }
        Err(e) => internal(e),
    }
}

/// Every alert, newest first, dated by its event's time, with where it went (each
/// channel's state, or "dashboard only" when no channel takes it).
pub(crate) async fn alert_history(
    store: &stockade_store::Store,
    limit: i64,
) -> Result<Vec<serde_json::Value>, stockade_store::StoreError> {
    let entries = stockade_alerts::alert_history(store, limit).await?;
    Ok(entries
        .iter()
        .map(|e| {
            let a = &e.alert;
            json!({
                "event_id": a.event_id, "at_ms": a.at_ms,
                "at": stockade_core::time::format_rfc3339_ms(a.at_ms),
                "severity": a.severity.to_string(), "source": a.source, "kind": a.kind,
                "title": a.title, "delivery": e.delivery_summary(),
            })
        })
        .collect())
}

/// Read the alert tables (written by the alert pipeline) for the dashboard.
pub(crate) async fn alerts_view(
    store: &stockade_store::Store,
    limit: i64,
) -> Result<(Vec<serde_json::Value>, Vec<serde_json::Value>), stockade_store::StoreError> {
    let rows = store
        .query(
            "SELECT c.name, c.kind, c.status, c.last_error, c.last_ok_ms,
                    (SELECT COUNT(*) FROM alert_outbox o WHERE o.channel = c.name AND o.state = 'pending'),
                    (SELECT COUNT(*) FROM alert_outbox o WHERE o.channel = c.name AND o.state = 'held')
               FROM alert_channels c ORDER BY c.name",
            vec![],
        )
        .await?;
    let mut channels = Vec::with_capacity(rows.len());
    for r in rows {
        channels.push(json!({
            "name": r.text(0)?, "kind": r.text(1)?, "status": r.text(2)?,
            "last_error": r.opt_text(3)?, "last_ok_ms": r.opt_int(4)?,
            "pending": r.int(5)?, "held": r.int(6)?,
        }));
    }
    let rows = store
        .query(
            "SELECT id, channel, state, attempts, events, created_at_ms, sent_at_ms, alert
               FROM alert_outbox ORDER BY id DESC LIMIT $1",
            stockade_store::sql_params![limit],
        )
        .await?;
    let mut recent = Vec::with_capacity(rows.len());
    for r in rows {
        let alert: serde_json::Value = serde_json::from_str(&r.text(7)?).unwrap_or_default();
        recent.push(json!({
            "id": r.int(0)?, "channel": r.text(1)?, "state": r.text(2)?,
            "attempts": r.int(3)?, "events": r.int(4)?,
            "created_at_ms": r.int(5)?, "sent_at_ms": r.opt_int(6)?,
            "event_id": alert.get("event_id"), "severity": alert.get("severity"),
            "source": alert.get("source"), "kind": alert.get("kind"),
            "title": alert.get("title"), "facts": alert.get("facts"),
            "message": alert.get("message"), "count": alert.get("count"),
        }));
    }
    Ok((channels, recent))
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.access.store().query_one("SELECT 1", vec![]).await {
        Ok(_) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!("readiness check failed: {e}");
            api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the database is not reachable",
            )
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
