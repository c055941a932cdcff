//! The one error type of the HTTP edge.
//!
//! Handlers and the gate return `Result<_, AppError>` and use `?`. An [`AppError`] answers
//! in the language of the route it happened on, chosen here and not by the handler:
//! - on `/api/` and `/hooks/` ([`RouteKind::Json`]) the stable JSON body
//!   `{"error":{"code","message"}}` (a ban adds `until` and `retry_after_s`), with its
//!   status code and `Retry-After` where it has one;
//! - on every other route ([`RouteKind::Page`]) a page in the sign-in pages' layout, a
//!   redirect to the sign-in step the session is at, or the ban page. A person who
//!   submitted a form never lands on raw JSON.
//!
//! `into_response` always builds the JSON answer and keeps the error in the response's
//! extensions; the front gate ([`crate::routes::front_gate`]) swaps it for the page on
//! page routes. Internal failures are logged with their cause where they are converted
//! ([`AppError::internal`], the `From` impls) and answered without it: no cause, secret or
//! personal data ever reaches a body.

use std::borrow::Cow;
use std::net::IpAddr;

use askama::Template;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::json;
use stockade_access::{AccessError, LoginError, SessionState};
use stockade_core::time::{format_rfc3339_ms, now_ms};
use stockade_store::StoreError;

use crate::ban_page::BannedPage;
use crate::frame::Frame;
use crate::i18n::Lang;

/// How a route answers: JSON (the API and the webhooks) or pages (everything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Json,
    Page,
}

impl RouteKind {
    pub fn of(path: &str) -> Self {
        // `/metrics` is read by scrapers: its refusals are JSON too.
        if path.starts_with("/api/") || path.starts_with("/hooks/") || path == "/metrics" {
            RouteKind::Json
        } else {
            RouteKind::Page
        }
    }
}

/// Why a request was not answered with what it asked for.
#[derive(Debug, Clone)]
pub enum AppError {
    /// Refused, with a stable `code`. `message` is plain text in lower case (the page
    /// shows it as a sentence).
    Refused {
        status: StatusCode,
        code: &'static str,
        message: Cow<'static, str>,
        retry_after_s: Option<i64>,
    },
    /// Not signed in (`None`), or the session is at another step: 401, or a redirect to
    /// the page of that step.
    SignIn(Option<SessionState>),
    /// The address is banned, until `until_s` (`None`: until an administrator lifts it).
    Banned { until_s: Option<i64> },
    /// Failed on the server's side; the cause is in the log.
    Internal,
}

impl AppError {
    pub fn refused(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        AppError::Refused {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// An internal failure: the cause is logged here and never answered.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!("request failed: {cause}");
        AppError::Internal
    }

    /// A JSON body that did not parse: 400 with what was expected, never echoing the
    /// input (it may hold a password).
    pub fn bad_body(expected: &str) -> Self {
        Self::refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "the body must be a JSON object with {expected}, sent as Content-Type: application/json"
            ),
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Refused { status, .. } => *status,
            AppError::SignIn(_) => StatusCode::UNAUTHORIZED,
            AppError::Banned { .. } => StatusCode::FORBIDDEN,
            AppError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code_and_message(&self) -> (&'static str, Cow<'static, str>) {
        match self {
            AppError::Refused { code, message, .. } => (code, message.clone()),
            AppError::SignIn(state) => {
                let (code, message) = match state {
                    None => (
                        "unauthenticated",
                        "sign in, or send a valid API key as `Authorization: Bearer stk_…`",
                    ),
                    Some(SessionState::Locked) => (
                        "session_locked",
                        "the session is locked after inactivity; sign in again",
                    ),
                    Some(SessionState::NeedsEnrollment) => {
                        ("mfa_enrollment_required", "enroll TOTP first")
                    }
                    Some(_) => ("mfa_required", "enter your TOTP code first"),
                };
                (code, message.into())
            }
            AppError::Banned { until_s } => (
                "banned",
                match until_s {
                    Some(u) => format!(
                        "this address is banned after repeated failures until {}",
                        format_rfc3339_ms(u.saturating_mul(1000))
                    )
                    .into(),
                    None => "this address is banned after repeated failures until an administrator lifts the ban".into(),
                },
            ),
            AppError::Internal => ("internal", "internal error; see the server log".into()),
        }
    }

    fn retry_after(&self, now_s: i64) -> Option<i64> {
        match self {
            AppError::Refused { retry_after_s, .. } => *retry_after_s,
            AppError::Banned { until_s } => until_s.map(|u| (u - now_s).max(1)),
            _ => None,
        }
    }

    /// The JSON answer (API and webhook routes).
    fn json(&self) -> Response {
        let (code, message) = self.code_and_message();
        let mut body = json!({"error": {"code": code, "message": message}});
        let retry_after = self.retry_after(now_ms() / 1000);
        if let AppError::Banned { until_s } = self {
            body["error"]["until"] =
                json!(until_s.map(|u| format_rfc3339_ms(u.saturating_mul(1000))));
            body["error"]["retry_after_s"] = json!(retry_after);
        }
        with_retry_after((self.status(), Json(body)).into_response(), retry_after)
    }

    /// The answer on a page route, for a client at `ip`, in the frame's language (times
    /// in `tz`). The gate's own refusals are worded by the catalogue (`err.<code>`);
    /// a handler's message is shown as it wrote it (handlers word theirs in the caller's
    /// language).
    pub fn page(&self, ip: IpAddr, f: Frame, tz: chrono_tz::Tz) -> Response {
        let now_s = now_ms() / 1000;
        let res = match self {
            AppError::SignIn(state) => return sign_in_redirect(*state).into_response(),
            AppError::Banned { until_s } => {
                let page = BannedPage::new(ip, *until_s, now_s, f, tz);
                render(self.status(), &page)
            }
            AppError::Internal => render(
                self.status(),
                &ErrorPage::new(f, f.t("err.internal_title"), f.t("err.internal")),
            ),
            AppError::Refused { code, message, .. } => {
                let message = if GATE_CODES.contains(code) {
                    f.t(&format!("err.{code}"))
                } else {
                    message
                };
                render(
                    self.status(),
                    &ErrorPage::new(f, f.t("err.refused_title"), message),
                )
            }
        };
        with_retry_after(res, self.retry_after(now_s))
    }
}

/// Refusals of the gate itself, worded on pages by the catalogue (`err.<code>`).
const GATE_CODES: &[&str] = &[
    "forbidden",
    "csrf",
    "cross_origin",
    "too_large",
    "no_client_address",
];

impl IntoResponse for AppError {
    /// The JSON answer, with the error kept for the front gate to turn into a page on page
    /// routes.
    fn into_response(self) -> Response {
        let mut res = self.json();
        res.extensions_mut().insert(self);
        res
    }
}

/// The redirect to the page of the sign-in step a session is at (the sign-in page
/// without one).
pub fn sign_in_redirect(state: Option<SessionState>) -> Redirect {
    Redirect::to(match state {
        Some(SessionState::NeedsEnrollment) => "/mfa/enroll",
        Some(SessionState::NeedsCode) => "/mfa",
        Some(SessionState::Locked) => "/lock",
        Some(SessionState::Active) => "/",
        None => "/login",
    })
}

fn with_retry_after(mut res: Response, seconds: Option<i64>) -> Response {
    if let Some(v) = seconds.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// A page rendered from its template; a template that fails to render (it cannot, short of
/// a formatting bug) is logged and answered with a plain 500.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!("page rendering failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the server log",
            )
                .into_response()
        }
    }
}

/// An error page: a title, what happened as a sentence, and a link back to Stockade.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    f: Frame,
    title: &'a str,
    sentence: String,
}

impl<'a> ErrorPage<'a> {
    /// `message` in lower case and with or without its full stop (the JSON messages) reads
    /// as one sentence.
    fn new(f: Frame, title: &'a str, message: &str) -> Self {
        let mut chars = message.chars();
        let sentence: String = chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect())
            .unwrap_or_default();
        let sentence = sentence.trim_end_matches(['.', '。']);
        let stop = if f.lang == Lang::Zh { "。" } else { "." };
        ErrorPage {
            f: Frame {
                here: Some("/"),
                ..f
            },
            title,
            sentence: format!("{sentence}{stop}"),
        }
    }
}

impl From<LoginError> for AppError {
    /// A failed sign-in step as the API answers it: 401 whatever factor was wrong, 403
    /// banned, 429 throttled. The sign-in pages answer `Failed` and `Throttled` with
    /// their form instead.
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Banned { until } => AppError::Banned { until_s: until },
            LoginError::Throttled { retry_after } => AppError::Refused {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "throttled",
                message: "too many failed attempts for this account; wait and try again".into(),
                retry_after_s: Some(retry_after),
            },
            LoginError::Failed => AppError::refused(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "sign-in failed: check the email, password and code",
            ),
            LoginError::Internal(e) => AppError::internal(e),
        }
    }
}

impl From<AccessError> for AppError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotBanned(_) => AppError::refused(
                StatusCode::NOT_FOUND,
                "not_banned",
                "this address is not banned",
            ),
            e => AppError::internal(e),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_decides_json_or_page() {
        assert_eq!(RouteKind::of("/api/v1/whoami"), RouteKind::Json);
        assert_eq!(RouteKind::of("/hooks/ebay/shop"), RouteKind::Json);
        assert_eq!(RouteKind::of("/login"), RouteKind::Page);
        assert_eq!(RouteKind::of("/apis"), RouteKind::Page);
    }

    #[test]
    fn an_error_page_escapes_what_it_shows() {
        let f = Frame::new(Lang::En, stockade_core::Environment::Dev, None);
        let html = ErrorPage::new(f, "Request refused", "a <script>alert(1)</script> & more.")
            .render()
            .unwrap();
        assert!(
            html.contains("A &#60;script&#62;alert(1)&#60;/script&#62; &#38; more"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
    }
    /// What a reader sees of a page: its text without tags.
    fn visible(html: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for ch in html.chars() {
            match ch {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    out.push(' ');
                }
                _ if !in_tag => out.push(ch),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn ban_and_error_pages_speak_the_request_language() {
        use crate::i18n::{Lang, keys};
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let tz = chrono_tz::Asia::Shanghai;
        let env = stockade_core::Environment::Prod;
        let pages = |lang: Lang| -> Vec<String> {
            let f = Frame::new(lang, env, None);
            let now = now_ms() / 1000;
            vec![
                BannedPage::new(ip, Some(now + 600), now, f, tz)
                    .render()
                    .unwrap(),
                BannedPage::new(ip, None, now, f, tz).render().unwrap(),
                ErrorPage::new(f, f.t("err.internal_title"), f.t("err.internal"))
                    .render()
                    .unwrap(),
                ErrorPage::new(f, f.t("err.refused_title"), f.t("err.forbidden"))
                    .render()
                    .unwrap(),
            ]
        };
        for (zh, en) in pages(Lang::Zh).iter().zip(pages(Lang::En)) {
            assert!(zh.contains("lang=\"zh-CN\"") && en.contains("lang=\"en\""));
            assert!(zh.contains("生产环境") || zh.contains("正式"), "{zh}");
            let (zh_text, en_text) = (visible(zh), visible(&en));
            for k in keys(Lang::En) {
                let (e, z) = (Lang::En.t(k), Lang::Zh.t(k));
                if e.len() > 3 && e != "Stockade" && !z.contains(e) {
                    assert!(
                        !zh_text.contains(e),
                        "{k} in English on a Chinese page: {zh_text}"
                    );
                }
                if z.chars().count() > 1 && !e.contains(z) {
                    assert!(!en_text.contains(z), "{k} in Chinese on an English page");
                }
            }
        }
        let zh = &pages(Lang::Zh)[0];
        assert!(zh.contains("封禁结束时间") && zh.contains("分钟后"), "{zh}");
        assert!(pages(Lang::En)[0].contains("The ban ends at"));
    }
}
