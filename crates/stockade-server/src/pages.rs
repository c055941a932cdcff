//! Server-rendered sign-in pages. No JavaScript: plain forms, each with its CSRF token;
//! every value written into HTML goes through [`esc`].

use axum::Extension;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use serde::Deserialize;
use stockade_access::{LoginError, NewSession, SecondFactor, SessionState};
use stockade_core::SecretString;

use crate::AppState;
use crate::api::{clear_session_cookie, session_cookie};
use crate::error_page::internal_page;
use crate::routes::{Caller, ClientIp, LOGIN_CSRF_COOKIE, MaybeSession};

/// Escape text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn layout(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Stockade</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
         <body><main><h1>{}</h1>{}</main></body></html>\n",
        esc(title),
        esc(title),
        body
    ))
}

fn notice(message: Option<&str>) -> String {
    message.map_or_else(String::new, |m| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m))
    })
}

pub const CSS: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}\
main{max-width:34rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}\
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;box-sizing:border-box}\
button{margin-top:1rem;padding:.5rem 1.2rem}.error{color:#a11}.codes{font-family:monospace;font-size:1.2rem}\
.qr svg{width:220px;height:220px}code{word-break:break-all}";

pub async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// The QR code of an otpauth URI as inline SVG (rendered here, no external service).
pub fn qr_svg(uri: &str) -> String {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .build();
            // Drop the XML declaration so the SVG can sit inside HTML.
            match svg.find("<svg") {
                Some(i) => svg[i..].to_owned(),
                None => svg,
            }
        }
        Err(e) => {
            tracing::error!("QR code rendering failed: {e}");
            String::new()
        }
    }
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let csrf = random_token();
    let body = format!(
        "{}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Continue</button></form>",
        notice(message),
        esc(&csrf)
    );
    let mut res = (status, layout("Sign in", &body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_CSRF_COOKIE}={csrf}; Path=/; Secure; HttpOnly; SameSite=Strict"
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

pub async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
}

fn signed_in_redirect(session: &NewSession, to: &str) -> Response {
    let mut res = Redirect::to(to).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        session_cookie(session.token.expose_secret()),
    );
    res
}

/// The message for a failed step. `failed` names what is on that page (the API never
/// says which factor was wrong, and neither do these).
fn failure_message(e: &LoginError, failed: &'static str) -> Option<&'static str> {
    match e {
        LoginError::Banned { .. } => {
            Some("This address is temporarily banned after repeated failures.")
        }
        LoginError::Throttled { .. } => {
            Some("Too many failed attempts for this account. Wait a few minutes and try again.")
        }
        LoginError::Failed => Some(failed),
        LoginError::Internal(_) => None,
    }
}

fn failure_status(e: &LoginError) -> StatusCode {
    match e {
        LoginError::Banned { .. } => StatusCode::FORBIDDEN,
        LoginError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNAUTHORIZED,
    }
}

pub async fn login_submit(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Form(form): Form<LoginForm>,
) -> Response {
    let password = SecretString::from(form.password);
    match state
        .access
        .login(ip, &form.email, &password, None, true)
        .await
    {
        Ok(s) => {
            let to = if s.stage == stockade_access::Stage::Enroll {
                "/mfa/enroll"
            } else {
                "/mfa"
            };
            signed_in_redirect(&s, to)
        }
        Err(LoginError::Internal(e)) => internal_page(e),
        Err(LoginError::Banned { until }) => {
            crate::ban_page::banned(ip, until, stockade_core::time::now_ms() / 1000, false)
        }
        Err(e) => login_page(
            failure_status(&e),
            failure_message(&e, "Sign-in failed. Check your email and password."),
        ),
    }
}

fn code_form(action: &str, csrf: &str, with_password: bool, recovery: bool) -> String {
    let password = if with_password {
        "<label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>"
    } else {
        ""
    };
    let recovery = if recovery {
        "<label for=\"recovery_code\">Or a recovery code</label><input id=\"recovery_code\" name=\"recovery_code\" autocomplete=\"off\">"
    } else {
        ""
    };
    format!(
        "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{}\
         <label for=\"code\">6-digit code from your authenticator app</label>\
         <input id=\"code\" name=\"code\" inputmode=\"numeric\" pattern=\"[0-9]{{6}}\" autocomplete=\"one-time-code\">{}\
         <button type=\"submit\">Verify</button></form>",
        esc(action),
        esc(csrf),
        password,
        recovery
    )
}

fn stage_redirect(
    session: Option<&stockade_access::SessionView>,
    want: SessionState,
) -> Option<Response> {
    match session {
        None => Some(Redirect::to("/login").into_response()),
        Some(s) if s.state == want => None,
        Some(s) => Some(
            Redirect::to(match s.state {
                SessionState::NeedsEnrollment => "/mfa/enroll",
                SessionState::NeedsCode => "/mfa",
                SessionState::Locked => "/lock",
                SessionState::Active => "/",
            })
            .into_response(),
        ),
    }
}

fn mfa_page(csrf: &str, status: StatusCode, message: Option<&str>) -> Response {
    let body = format!(
        "<p>Enter the 6-digit code from your authenticator app.</p>{}{}",
        notice(message),
        code_form("/mfa", csrf, false, true)
    );
    (status, layout("Two-step verification", &body)).into_response()
}

pub async fn mfa_form(Extension(MaybeSession(session)): Extension<MaybeSession>) -> Response {
    if let Some(r) = stage_redirect(session.as_ref(), SessionState::NeedsCode) {
        return r;
    }
    let csrf = session.map(|s| s.csrf).unwrap_or_default();
    mfa_page(&csrf, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    recovery_code: String,
    #[serde(default)]
    password: String,
}

fn factor_of(form: &CodeForm) -> SecondFactor {
    if form.code.trim().is_empty() && !form.recovery_code.trim().is_empty() {
        SecondFactor::Recovery(SecretString::from(form.recovery_code.clone()))
    } else {
        SecondFactor::Totp(SecretString::from(form.code.trim().to_owned()))
    }
}

pub async fn mfa_submit(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
    Form(form): Form<CodeForm>,
) -> Response {
    if let Some(r) = stage_redirect(session.as_ref(), SessionState::NeedsCode) {
        return r;
    }
    let Some(session) = session else {
        return Redirect::to("/login").into_response();
    };
    match state
        .access
        .submit_code(ip, &session, &factor_of(&form))
        .await
    {
        Ok(s) => signed_in_redirect(&s, "/"),
        Err(LoginError::Internal(e)) => internal_page(e),
        Err(e) => mfa_page(
            &session.csrf,
            failure_status(&e),
            failure_message(
                &e,
                "That code did not work. Enter the 6-digit code your authenticator app shows now, or one of your recovery codes.",
            ),
        ),
    }
}

async fn enroll_page(
    state: &AppState,
    session: &stockade_access::SessionView,
    status: StatusCode,
    message: Option<&str>,
) -> Response {
    match state.access.begin_enrollment(session).await {
        Ok(e) => {
            let body = format!(
                "<p>Two-step verification is required. Scan this code with an authenticator app \
                 (or enter the key by hand), then type the 6-digit code it shows.</p>\
                 <div class=\"qr\">{}</div><p>Key: <code>{}</code></p><p><small>URI: <code>{}</code></small></p>{}{}",
                qr_svg(&e.otpauth_uri),
                esc(&e.secret_base32),
                esc(&e.otpauth_uri),
                notice(message),
                code_form("/mfa/enroll", &session.csrf, false, false)
            );
            (status, layout("Set up two-step verification", &body)).into_response()
        }
        Err(LoginError::Internal(e)) => internal_page(e),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

pub async fn enroll_form(
    State(state): State<AppState>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
) -> Response {
    if let Some(r) = stage_redirect(session.as_ref(), SessionState::NeedsEnrollment) {
        return r;
    }
    let Some(session) = session else {
        return Redirect::to("/login").into_response();
    };
    enroll_page(&state, &session, StatusCode::OK, None).await
}

pub async fn enroll_submit(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
    Form(form): Form<CodeForm>,
) -> Response {
    if let Some(r) = stage_redirect(session.as_ref(), SessionState::NeedsEnrollment) {
        return r;
    }
    let Some(session) = session else {
        return Redirect::to("/login").into_response();
    };
    let code = SecretString::from(form.code.trim().to_owned());
    match state.access.confirm_enrollment(ip, &session, &code).await {
        Ok((s, codes)) => {
            let list: String = codes
                .iter()
                .map(|c| format!("<li>{}</li>", esc(c)))
                .collect();
            let body = format!(
                "<p>Two-step verification is on. These recovery codes each work once if you lose \
                 your authenticator. Store them somewhere safe now: they are not shown again.</p>\
                 <ol class=\"codes\">{list}</ol><p><a href=\"/\">Continue</a></p>"
            );
            let mut res = layout("Recovery codes", &body).into_response();
            res.headers_mut()
                .append(header::SET_COOKIE, session_cookie(s.token.expose_secret()));
            res
        }
        Err(LoginError::Internal(e)) => internal_page(e),
        Err(e) => {
            // The same QR code and key again: the pending secret is kept until confirmed.
            let message = failure_message(
                &e,
                "That code did not match. Type the 6-digit code your authenticator app shows for this key now (it changes every 30 seconds).",
            );
            enroll_page(&state, &session, failure_status(&e), message).await
        }
    }
}

fn lock_page(csrf: &str, status: StatusCode, message: Option<&str>) -> Response {
    let body = format!(
        "<p>The session was locked after a period of inactivity. Enter your password and the 6-digit code from your authenticator app to continue.</p>{}{}",
        notice(message),
        code_form("/lock", csrf, true, true)
    );
    (status, layout("Session locked", &body)).into_response()
}

pub async fn lock_form(Extension(MaybeSession(session)): Extension<MaybeSession>) -> Response {
    match session {
        Some(s) if matches!(s.state, SessionState::Locked | SessionState::Active) => {
            lock_page(&s.csrf, StatusCode::OK, None)
        }
        s => stage_redirect(s.as_ref(), SessionState::Locked)
            .unwrap_or_else(|| Redirect::to("/login").into_response()),
    }
}

pub async fn lock_submit(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
    Form(form): Form<CodeForm>,
) -> Response {
    let Some(session) =
        session.filter(|s| matches!(s.state, SessionState::Locked | SessionState::Active))
    else {
        return Redirect::to("/login").into_response();
    };
    let password = SecretString::from(form.password.clone());
    match state
        .access
        .unlock(ip, &session, &password, &factor_of(&form))
        .await
    {
        Ok(s) => signed_in_redirect(&s, "/"),
        Err(LoginError::Internal(e)) => internal_page(e),
        Err(e) => lock_page(
            &session.csrf,
            failure_status(&e),
            failure_message(
                &e,
                "Unlock failed. Check your password and the 6-digit code from your authenticator app (or a recovery code).",
            ),
        ),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
) -> Response {
    if let Some(s) = session
        && let Err(e) = state.access.logout(&s).await
    {
        return internal_page(e);
    }
    let mut res = layout(
        "Signed out",
        "<p>You are signed out. The session has ended on the server.</p><p><a href=\"/login\">Sign in again</a></p>",
    )
    .into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, clear_session_cookie());
    res
}

pub async fn home(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    let (who, csrf) = match &caller {
        Caller::Session(s) => (
            format!("{} ({})", s.user.email, s.user.role),
            s.csrf.clone(),
        ),
        Caller::Key(k) => (format!("API key {} ({})", k.name, k.role), String::new()),
    };
    let body = format!(
        "<p>Signed in as {} in the <strong>{}</strong> environment.</p>\
         <p><a href=\"/alerts\">Alerts</a> · the API is at <code>/api/v1</code>.</p>\
         <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Sign out</button></form>",
        esc(&who),
        esc(state.access.environment().as_str()),
        esc(&csrf)
    );
    layout("Stockade", &body).into_response()
}

/// The alerts dashboard: each channel's state (a misconfigured channel is raised here
/// and on the other channels) and the newest alerts with their delivery state.
pub async fn alerts(State(state): State<AppState>) -> Response {
    let (channels, recent) = match crate::api::alerts_view(state.access.store(), 100).await {
        Ok(v) => v,
        Err(e) => return internal_page(e),
    };
    let history = match crate::api::alert_history(state.access.store(), 200).await {
        Ok(v) => v,
        Err(e) => return internal_page(e),
    };
    let s =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
    let n =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0);
    let mut body = String::from("<h1>Alerts</h1><h2>Channels</h2>");
    if channels.is_empty() {
        body.push_str("<p>No alert channel has run yet: alerts are kept here and in <code>stockade alert list</code>. Configure <code>[[alerts.channel]]</code> in stockade.toml to have them sent (docs/alerts.md).</p>");
    } else {
        body.push_str("<table><tr><th>Channel</th><th>Kind</th><th>Status</th><th>Pending</th><th>Held</th><th>Last error</th></tr>");
        for c in &channels {
            let status = s(c, "status");
            let flag = if status == "ok" {
                ""
            } else {
                " class=\"problem\""
            };
            body.push_str(&format!(
                "<tr{flag}><td>{}</td><td>{}</td><td><strong>{}</strong></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s(c, "name")),
                esc(&s(c, "kind")),
                esc(&status),
                n(c, "pending"),
                n(c, "held"),
                esc(&s(c, "last_error"))
            ));
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>Alerts</h2>");
    if history.is_empty() {
        body.push_str("<p>No alerts yet.</p>");
    } else {
        body.push_str("<table><tr><th>Time (UTC)</th><th>Severity</th><th>Source</th><th>Kind</th><th>What</th><th>Delivery</th></tr>");
        for a in &history {
            body.push_str(&format!(
                "<tr id=\"alert-{}\"><td><time datetime=\"{}\">{}</time></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                n(a, "event_id"),
                esc(&s(a, "at")),
                esc(&s(a, "at")),
                esc(&s(a, "severity")),
                esc(&s(a, "source")),
                esc(&s(a, "kind")),
                esc(&s(a, "title")),
                esc(&s(a, "delivery"))
            ));
        }
        body.push_str("</table>");
    }
    if !recent.is_empty() {
        body.push_str("<h2>Deliveries</h2><table><tr><th>#</th><th>Queued (UTC)</th><th>Channel</th><th>State</th><th>Severity</th><th>Events</th><th>What</th></tr>");
        for a in &recent {
            let queued = stockade_core::time::format_rfc3339_ms(n(a, "created_at_ms"));
            body.push_str(&format!(
                "<tr id=\"event-{}\"><td>{}</td><td><time datetime=\"{queued}\">{queued}</time></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.get("event_id").and_then(serde_json::Value::as_i64).unwrap_or(0),
                n(a, "id"),
                esc(&s(a, "channel")),
                esc(&s(a, "state")),
                esc(&s(a, "severity")),
                n(a, "events"),
                esc(&s(a, "title"))
            ));
        }
        body.push_str("</table>");
    }
    body.push_str("<p><a href=\"/\">Home</a></p>");
    layout("Stockade alerts", &body).into_response()
}

// Holds credentials or tokens: never printed.
impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginForm { .. }")
    }
}

// Holds credentials or tokens: never printed.
impl std::fmt::Debug for CodeForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeForm { .. }")
    }
}
