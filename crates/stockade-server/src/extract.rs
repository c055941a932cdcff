//! What the gate ([`crate::routes`]) hands to handlers as request extensions, and the
//! cookies both sign-in surfaces (API and pages) set. Handlers take these as
//! `Extension<…>`; only the gate inserts them, so a handler that finds one knows the gate
//! ran and decided.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue, header};
use stockade_access::{ApiPrincipal, Role, SessionView};
use stockade_core::Actor;
use stockade_core::order::Marketplace;

pub const SESSION_COOKIE: &str = "__Host-stockade";
pub const LOGIN_CSRF_COOKIE: &str = "__Host-stockade_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_FIELD: &str = "csrf";

/// The client address (the TCP peer, or the proxy's X-Forwarded-For when trusted).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The authenticated caller of a permission-gated route.
#[derive(Debug, Clone)]
pub enum Caller {
    Session(SessionView),
    Key(ApiPrincipal),
}

impl Caller {
    pub fn role(&self) -> Role {
        match self {
            Caller::Session(s) => s.user.role,
            Caller::Key(k) => k.role,
        }
    }
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Session(s) => Actor::User(s.user.id.clone()),
            Caller::Key(k) => Actor::ApiKey(k.id.clone()),
        }
    }
}

/// The session cookie of a sign-in step route, if any.
#[derive(Debug, Clone)]
pub struct MaybeSession(pub Option<SessionView>);

/// Which marketplace a hook route belongs to; set by the route gate from the route table.
#[derive(Debug, Clone, Copy)]
pub struct HookRoute(pub Marketplace);

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session cookie: `__Host-` prefix (Secure, Path=/, no Domain), HttpOnly, SameSite=Strict.
pub fn session_cookie(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| clear_session_cookie())
}

pub fn clear_session_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-stockade=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}

/// The QR code of an otpauth URI as inline SVG (rendered here, no external service), for
/// the enrollment page and the enrollment API.
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
