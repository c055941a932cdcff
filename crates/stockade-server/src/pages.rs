//! Server-rendered sign-in pages and the dashboard pages. No JavaScript: plain forms,
//! each with its CSRF token. Every page is an askama template under `templates/`
//! (extending `base.html`), so every value written into HTML is escaped; only the QR code's
//! SVG, built here from the otpauth URI, is marked safe. Failures are [`AppError`]s, shown
//! as pages by the front gate. The sign-in pages (sign-in, code prompt, enrollment,
//! recovery codes, lock, signed out) speak the request's language through
//! [`crate::frame::Frame`]: every text, refusals included, comes from the catalogue; a
//! full sign-in also writes the user's stored language into the browser's cookie.

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use serde::Deserialize;
use stockade_access::{LoginError, NewSession, SecondFactor, SessionState, SessionView};
use stockade_core::SecretString;

use crate::error::{AppError, render, sign_in_redirect};
use crate::extract::{
    Caller, ClientIp, LOGIN_CSRF_COOKIE, MaybeSession, clear_session_cookie, qr_svg, session_cookie,
};
use crate::frame::Frame;
use crate::i18n::{Lang, lang_cookie};
use crate::state::AppState;

type PageResult = Result<Response, AppError>;

/// The one stylesheet (`/static/app.css`; the CSP allows no inline style).
pub const CSS: &str = include_str!("../static/app.css");

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

fn random_token() -> String {
    let mut b = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    f: Frame,
    title: &'a str,
    message: Option<&'a str>,
    csrf: &'a str,
}

/// The frame of a sign-in page coming back to `here` after a language switch.
fn frame(state: &AppState, headers: &HeaderMap, here: &'static str) -> Frame {
    Frame::of(headers, state.access.environment(), Some(here))
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    message: Option<&str>,
) -> Response {
    let csrf = random_token();
    let f = frame(state, headers, "/login");
    let page = SignInPage {
        title: f.t("si.title"),
        f,
        message,
        csrf: &csrf,
    };
    let mut res = render(status, &page);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_CSRF_COOKIE}={csrf}; Path=/; Secure; HttpOnly; SameSite=Strict"
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

pub async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    login_page(&state, &headers, StatusCode::OK, None)
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

/// Signed in fully: the user's stored language (if any) becomes this browser's too, so
/// the pages before and after a session speak it.
async fn with_stored_language(
    state: &AppState,
    session: &NewSession,
    mut res: Response,
) -> Response {
    match state.access.language(&session.user.id).await {
        Ok(Some(code)) => {
            if let Some(v) = Lang::parse(&code)
                .and_then(|l| HeaderValue::from_str(&lang_cookie(l, !state.plain_http)).ok())
            {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("could not read the user's language: {e}"),
    }
    res
}

/// A failed step the page answers itself, with its form, the status and the message in
/// `lang` (`failed` is the catalogue key of what is on that page: the API never says which
/// factor was wrong, and neither do these); an internal failure is an [`AppError`].
fn form_failure(
    e: LoginError,
    lang: Lang,
    failed: &'static str,
) -> Result<(StatusCode, &'static str), AppError> {
    match e {
        LoginError::Banned { .. } => Ok((StatusCode::FORBIDDEN, lang.t("si.banned"))),
        LoginError::Throttled { .. } => Ok((StatusCode::TOO_MANY_REQUESTS, lang.t("si.throttled"))),
        LoginError::Failed => Ok((StatusCode::UNAUTHORIZED, lang.t(failed))),
        e => Err(e.into()),
    }
}

pub async fn login_submit(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> PageResult {
    let password = SecretString::from(form.password);
    match state
        .access
        .login(ip, &form.email, &password, None, true)
        .await
    {
        Ok(s) => {
            crate::routes::lockdown_sign_in(&state, &s).await?;
            let to = if s.stage == stockade_access::Stage::Enroll {
                "/mfa/enroll"
            } else {
                "/mfa"
            };
            Ok(signed_in_redirect(&s, to))
        }
        // The ban page says which address and until when.
        Err(LoginError::Banned { until }) => Err(AppError::Banned { until_s: until }),
        Err(e) => {
            let (status, message) = form_failure(e, Lang::of(&headers), "si.failed")?;
            Ok(login_page(&state, &headers, status, Some(message)))
        }
    }
}

/// A page that asks for a code: the MFA prompt, the unlock form and TOTP enrollment.
#[derive(Template)]
#[template(path = "code.html")]
struct CodePage<'a> {
    f: Frame,
    title: &'a str,
    intro: &'a str,
    /// The secret to enroll (enrollment only).
    enrollment: Option<Enrollment<'a>>,
    message: Option<&'a str>,
    action: &'a str,
    csrf: &'a str,
    with_password: bool,
    recovery: bool,
}

struct Enrollment<'a> {
    qr_svg: String,
    secret: &'a str,
    uri: &'a str,
}

impl<'a> CodePage<'a> {
    fn respond(self, status: StatusCode, message: Option<&'a str>) -> Response {
        render(status, &CodePage { message, ..self })
    }
}

fn mfa_page(csrf: &str, f: Frame) -> CodePage<'_> {
    CodePage {
        f,
        title: f.t("mfa.title"),
        intro: f.t("mfa.intro"),
        enrollment: None,
        message: None,
        action: "/mfa",
        csrf,
        with_password: false,
        recovery: true,
    }
}

fn lock_page(csrf: &str, f: Frame) -> CodePage<'_> {
    CodePage {
        f,
        title: f.t("lock.title"),
        intro: f.t("lock.intro"),
        enrollment: None,
        message: None,
        action: "/lock",
        csrf,
        with_password: true,
        recovery: true,
    }
}

/// The session at the step `want`, or the redirect to the step it is at (the sign-in
/// page if there is none).
fn at_stage(session: Option<SessionView>, want: SessionState) -> Result<SessionView, Redirect> {
    match session {
        Some(s) if s.state == want => Ok(s),
        s => Err(sign_in_redirect(s.map(|s| s.state))),
    }
}

pub async fn mfa_form(
    State(state): State<AppState>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
    headers: HeaderMap,
) -> Response {
    match at_stage(session, SessionState::NeedsCode) {
        Ok(s) => mfa_page(&s.csrf, frame(&state, &headers, "/mfa")).respond(StatusCode::OK, None),
        Err(r) => r.into_response(),
    }
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
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> PageResult {
    let f = frame(&state, &headers, "/mfa");
    let session = match at_stage(session, SessionState::NeedsCode) {
        Ok(s) => s,
        Err(r) => return Ok(r.into_response()),
    };
    match state
        .access
        .submit_code(ip, &session, &factor_of(&form))
        .await
    {
        Ok(s) => Ok(with_stored_language(&state, &s, signed_in_redirect(&s, "/")).await),
        Err(e) => {
            let (status, message) = form_failure(e, f.lang, "mfa.failed")?;
            Ok(mfa_page(&session.csrf, f).respond(status, Some(message)))
        }
    }
}

async fn enroll_page(
    state: &AppState,
    session: &SessionView,
    f: Frame,
    status: StatusCode,
    message: Option<&str>,
) -> PageResult {
    let e = match state.access.begin_enrollment(session).await {
        Ok(e) => e,
        Err(LoginError::Internal(e)) => return Err(AppError::internal(e)),
        Err(_) => return Ok(Redirect::to("/login").into_response()),
    };
    let page = CodePage {
        f,
        title: f.t("enroll.title"),
        intro: f.t("enroll.intro"),
        enrollment: Some(Enrollment {
            qr_svg: qr_svg(&e.otpauth_uri),
            secret: &e.secret_base32,
            uri: &e.otpauth_uri,
        }),
        message: None,
        action: "/mfa/enroll",
        csrf: &session.csrf,
        with_password: false,
        recovery: false,
    };
    Ok(page.respond(status, message))
}

pub async fn enroll_form(
    State(state): State<AppState>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
    headers: HeaderMap,
) -> PageResult {
    let f = frame(&state, &headers, "/mfa/enroll");
    match at_stage(session, SessionState::NeedsEnrollment) {
        Ok(s) => enroll_page(&state, &s, f, StatusCode::OK, None).await,
        Err(r) => Ok(r.into_response()),
    }
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct RecoveryCodesPage<'a> {
    f: Frame,
    title: &'a str,
    codes: &'a [zeroize::Zeroizing<String>],
}

pub async fn enroll_submit(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> PageResult {
    let f = frame(&state, &headers, "/mfa/enroll");
    let session = match at_stage(session, SessionState::NeedsEnrollment) {
        Ok(s) => s,
        Err(r) => return Ok(r.into_response()),
    };
    let code = SecretString::from(form.code.trim().to_owned());
    match state.access.confirm_enrollment(ip, &session, &code).await {
        Ok((s, codes)) => {
            // No language switch here: the codes are shown once.
            let f = Frame { here: None, ..f };
            let page = RecoveryCodesPage {
                f,
                title: f.t("rc.title"),
                codes: &codes,
            };
            let mut res = render(StatusCode::OK, &page);
            res.headers_mut()
                .append(header::SET_COOKIE, session_cookie(s.token.expose_secret()));
            Ok(res)
        }
        Err(e) => {
            // The same QR code and key again: the pending secret is kept until confirmed.
            let (status, message) = form_failure(e, f.lang, "enroll.failed")?;
            enroll_page(&state, &session, f, status, Some(message)).await
        }
    }
}

/// The unlock form is for a locked session, or an active one (it still works there).
fn lockable(s: &SessionView) -> bool {
    matches!(s.state, SessionState::Locked | SessionState::Active)
}

pub async fn lock_form(
    State(state): State<AppState>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
    headers: HeaderMap,
) -> Response {
    match session {
        Some(s) if lockable(&s) => {
            lock_page(&s.csrf, frame(&state, &headers, "/lock")).respond(StatusCode::OK, None)
        }
        s => sign_in_redirect(s.map(|s| s.state)).into_response(),
    }
}

pub async fn lock_submit(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> PageResult {
    let f = frame(&state, &headers, "/lock");
    let Some(session) = session.filter(lockable) else {
        return Ok(Redirect::to("/login").into_response());
    };
    let password = SecretString::from(form.password.clone());
    match state
        .access
        .unlock(ip, &session, &password, &factor_of(&form))
        .await
    {
        Ok(s) => Ok(with_stored_language(&state, &s, signed_in_redirect(&s, "/")).await),
        Err(e) => {
            let (status, message) = form_failure(e, f.lang, "lock.failed")?;
            Ok(lock_page(&session.csrf, f).respond(status, Some(message)))
        }
    }
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage<'a> {
    f: Frame,
    title: &'a str,
}

pub async fn logout(
    State(state): State<AppState>,
    Extension(MaybeSession(session)): Extension<MaybeSession>,
    headers: HeaderMap,
) -> PageResult {
    if let Some(s) = session {
        state.access.logout(&s).await?;
    }
    let f = frame(&state, &headers, "/login");
    let mut res = render(
        StatusCode::OK,
        &SignedOutPage {
            f,
            title: f.t("so.title"),
        },
    );
    res.headers_mut()
        .append(header::SET_COOKIE, clear_session_cookie());
    Ok(res)
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    title: &'a str,
    who: String,
    environment: &'a str,
    csrf: &'a str,
}

pub async fn home(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    let (who, csrf) = match &caller {
        Caller::Session(s) => (
            format!("{} ({})", s.user.email, s.user.role),
            s.csrf.as_str(),
        ),
        Caller::Key(k) => (format!("API key {} ({})", k.name, k.role), ""),
    };
    let page = HomePage {
        title: "Stockade",
        who,
        environment: state.access.environment().as_str(),
        csrf,
    };
    render(StatusCode::OK, &page)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_on_pages_are_escaped() {
        let home = HomePage {
            title: "Stockade",
            who: "<script>alert(1)</script>@shop.example (admin)".into(),
            environment: "dev",
            csrf: "\"><script>",
        }
        .render()
        .unwrap();
        assert!(!home.contains("<script>"), "{home}");
        assert!(home.contains("&#60;script&#62;alert(1)&#60;/script&#62;@shop.example"));
    }

    #[test]
    fn the_code_form_has_the_fields_of_its_page() {
        let page = |p: CodePage<'_>| p.render().unwrap();
        let f = Frame::new(Lang::En, stockade_core::Environment::Dev, Some("/mfa"));
        let mfa = page(mfa_page("tok", f));
        assert!(mfa.contains("name=\"csrf\" value=\"tok\""), "{mfa}");
        assert!(mfa.contains("name=\"recovery_code\"") && !mfa.contains("name=\"password\""));
        let lock = page(lock_page("tok", f));
        assert!(lock.contains("name=\"recovery_code\"") && lock.contains("name=\"password\""));
        assert!(lock.contains("action=\"/lock\""));
    }
}
