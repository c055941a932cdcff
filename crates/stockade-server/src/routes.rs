//! The route table and the request gate.
//!
//! Every route is listed once in [`ROUTES`] (`route_table.rs`) with who may call it. The gate runs on every
//! request, in this order: security headers (outermost), ban check (a banned address gets
//! 403 before anything else: no body read, no hashing, no database; the ban of the jail
//! that guards the route: webhook routes answer to the `webhook` jail, everything else to
//! the `interactive` jail), the cross-site check on state-changing requests
//! ([`cross_site`]), then per route: authentication (API key or session cookie), session
//! stage (enrollment, code prompt, idle lock), CSRF on state-changing cookie requests, and
//! the role's permission. A route missing from the table is refused
//! (fail closed). Webhook routes ([`Gate::MarketplaceSignature`]) skip authentication,
//! CSRF and roles: the marketplace's signature, checked by the hook sink, stands in for
//! them, and their failures feed the same ban guard. `/metrics` ([`Gate::MetricsScrape`]) admits a
//! loopback caller without credentials; any caller with credentials, from anywhere, needs
//! `ViewMetrics`; anyone else is refused ([`scrape_access`]). Refusals and failures, here and in
//! the handlers, are [`AppError`]s: the front gate answers them as pages on page routes,
//! as JSON on `/api/`, `/hooks/` and `/metrics` ([`RouteKind`]).
//!
//! The handler modules ([`pages`], [`api`], [`api_workflows`], [`hooks`]) depend only on the shared modules
//! (`state`, `error`, `extract`, `dashboard`), never on each other or on this one.
//! The workflow and alert pages and API ([`console_workflows`], [`console_alerts`],
//! [`api_alerts`]) read through the shared `workflow_view` and `dashboard` modules, and the
//! console pages share the layout's `console::Chrome`.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use stockade_access::{FailureKind, Jail, KeyRejection, Permission, SessionState, SessionView};
use stockade_core::order::Marketplace;

use crate::error::{AppError, RouteKind};
use crate::extract::{
    CSRF_FIELD, CSRF_HEADER, Caller, ClientIp, HookRoute, LOGIN_CSRF_COOKIE, MaybeSession,
    SESSION_COOKIE, cookie,
};
use crate::state::AppState;
use crate::{
    api, api_workflows as wf, console, console_compliance, hooks, metrics, openapi, pages,
    workflow_hooks,
};
use crate::{api_alerts, console_alerts, console_workflows as cw};
use crate::{api_orders, console_orders};
// Connections and Security.
use crate::{api_incidents as ai, console_incidents as ci};
use crate::{api_ops as ops, console_connections as cc, console_security as cs};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Anyone not banned (sign-in, health, static files).
    Public,
    /// A sign-in step: the handler checks the session's stage itself.
    SignIn,
    /// A signed-in user with a full, unlocked session, or an API key, holding the permission.
    Needs(Permission),
    /// Public, authenticated by this marketplace's signature: no session, no API key, no
    /// CSRF. The hook sink verifies the signature; bad ones count toward a ban.
    MarketplaceSignature(Marketplace),
    /// Public, authenticated by the workflow's own webhook auth (HMAC or API key), which
    /// the handler checks before anything runs; failures count toward a ban.
    WorkflowHook,
    /// `/metrics`: a caller with credentials (API key or session) must hold
    /// `ViewMetrics`; a caller without any is admitted only from loopback
    /// ([`scrape_access`]); anyone else is refused.
    MetricsScrape,
}

/// How a `/metrics` request is decided, before any credential is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrapeAccess {
    /// No credentials, from a loopback address (after `X-Forwarded-For` resolution, so a
    /// local reverse proxy does not make remote scrapers local).
    Loopback,
    /// Credentials given: they must be valid and hold `ViewMetrics`.
    Credentials,
    /// No credentials, not from loopback.
    Refused,
}

/// The `/metrics` decision for a client address and whether credentials came with it.
pub fn scrape_access(client: IpAddr, has_credentials: bool) -> ScrapeAccess {
    let loopback = match client {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    match (has_credentials, loopback) {
        (true, _) => ScrapeAccess::Credentials,
        (false, true) => ScrapeAccess::Loopback,
        (false, false) => ScrapeAccess::Refused,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub gate: Gate,
}

pub(crate) const fn r(method: &'static str, path: &'static str, gate: Gate) -> RouteSpec {
    RouteSpec { method, path, gate }
}

pub use crate::route_table::ROUTES;

pub fn spec_for(method: &Method, path: &str) -> Option<&'static RouteSpec> {
    // HEAD is answered by the GET route.
    let method = if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES.iter().find(|s| s.path == path && s.method == method)
}

/// Forms and JSON bodies on the gated routes are small.
pub const MAX_BODY: usize = 64 * 1024;

/// All routes. Every one of them must be in [`ROUTES`] or it is refused.
pub fn router(state: AppState) -> Router {
    let gated = Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/static/app.css", get(pages::css))
        .route("/api/v1/auth/login", post(api::login))
        .route("/api/v1/auth/mfa/enroll", post(api::mfa_enroll))
        .route("/api/v1/auth/mfa/confirm", post(api::mfa_confirm))
        .route("/api/v1/auth/logout", post(api::logout))
        .route("/api/v1/whoami", get(api::whoami))
        .route("/api/v1/users", get(api::users))
        .route("/api/v1/apikeys", get(api::api_keys))
        .route("/api/v1/bans", get(api::bans).post(api::add_ban))
        .route("/api/v1/bans/{ip}", delete(api::remove_ban))
        .route("/api/v1/audit/verify", get(api::audit_verify))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .route("/api/v1/audit", get(api::audit))
        .route("/api/v1/alerts", get(api_alerts::alerts))
        .route("/api/v1/workflows", get(wf::list))
        .route("/api/v1/workflows/{name}/versions", get(wf::versions))
        .route(
            "/api/v1/workflows/{name}/versions/{version}/approve",
            post(wf::approve),
        )
        .route("/api/v1/workflows/{name}/run", post(wf::run))
        .route("/api/v1/executions", get(wf::executions))
        .route("/api/v1/executions/{id}", get(wf::execution))
        .route("/api/v1/executions/{id}/cancel", post(wf::cancel))
        .route("/api/v1/executions/{id}/rerun", post(wf::rerun))
        .route("/alerts", get(console_alerts::alerts))
        .route("/login", get(pages::login_form).post(pages::login_submit))
        .route("/mfa", get(pages::mfa_form).post(pages::mfa_submit))
        .route(
            "/mfa/enroll",
            get(pages::enroll_form).post(pages::enroll_submit),
        )
        .route("/lock", get(pages::lock_form).post(pages::lock_submit))
        .route("/logout", post(pages::logout))
        .route("/", get(pages::home))
        .route("/hooks/tiktok/{connection}", post(hooks::receive))
        .route("/hooks/amazon/{connection}", post(hooks::receive))
        .route(
            "/hooks/ebay/{connection}",
            get(hooks::receive).post(hooks::receive),
        )
        .route("/hooks/workflows/{*path}", post(workflow_hooks::receive))
        .route("/static/htmx.min.js", get(console::htmx))
        .route("/lang", get(console::switch_lang))
        .route("/overview", get(console::overview))
        .route("/overview/live", get(console::overview_live))
        .route("/inventory", get(console::inventory))
        .route("/inventory/adjust", post(console::adjust))
        .route("/audit", get(console::audit))
        .route("/audit.csv", get(console::audit_csv))
        .route("/metrics", get(metrics::scrape))
        // Orders (console and API).
        .route("/orders", get(console_orders::orders))
        .route("/orders/{id}", get(console_orders::order))
        .route("/orders/{id}/reveal", post(console_orders::reveal))
        .route("/api/v1/orders", get(api_orders::list))
        .route("/api/v1/orders/{id}", get(api_orders::show))
        .route("/api/v1/orders/{id}/reveal", post(api_orders::reveal))
        // The Workflows, Executions and Alerts pages and their API additions.
        .route("/workflows", get(cw::list))
        .route("/workflows/{name}", get(cw::detail))
        .route(
            "/workflows/{name}/versions/{version}/approve",
            post(cw::approve),
        )
        .route(
            "/workflows/{name}/versions/{version}/reject",
            post(cw::reject),
        )
        .route("/workflows/{name}/run", post(cw::run))
        .route("/executions", get(cw::executions))
        .route("/executions/{id}", get(cw::execution))
        .route("/executions/{id}/cancel", post(cw::cancel))
        .route("/executions/{id}/rerun", post(cw::rerun))
        .route("/alerts/test", post(console_alerts::test_send))
        .route(
            "/api/v1/workflows/{name}/versions/{version}/reject",
            post(wf::reject),
        )
        .route("/api/v1/workflows/{name}/diff", get(wf::diff))
        .route(
            "/api/v1/workflows/{name}/versions/{version}/lint",
            get(wf::lint),
        )
        .route(
            "/api/v1/alerts/channels/{name}/test",
            post(api_alerts::alert_test),
        )
        // Connections and Security pages and their API.
        .route("/connections", get(cc::connections))
        .route("/connections/pause", post(cc::pause))
        .route("/connections/resume", post(cc::resume))
        .route("/connections/revoke", post(cc::revoke))
        .route("/security", get(cs::security))
        .route("/security/bans/add", post(cs::add_ban))
        .route("/security/bans/lift", post(cs::lift_ban))
        .route("/security/apikeys/revoke", post(cs::revoke_key))
        .route("/security/sessions/revoke", post(cs::revoke_session))
        .route(
            "/security/sessions/revoke-user",
            post(cs::revoke_user_sessions),
        )
        .route("/api/v1/connections", get(ops::connections))
        .route("/api/v1/connections/{name}/pause", post(ops::pause))
        .route("/api/v1/connections/{name}/resume", post(ops::resume))
        .route("/api/v1/connections/{name}/revoke", post(ops::revoke))
        .route("/api/v1/security/sessions", get(ops::sessions))
        .route(
            "/api/v1/security/sessions/{id}/revoke",
            post(ops::revoke_session),
        )
        .route(
            "/api/v1/security/users/{id}/sessions/revoke",
            post(ops::revoke_user_sessions),
        )
        .route("/api/v1/apikeys/{id}/revoke", post(ops::revoke_api_key))
        // Incident response (under /incidents: a lockdown leaves it open to administrators).
        .route("/incidents", post(ci::open))
        .route("/incidents/{id}", get(ci::show))
        .route("/incidents/{id}/revoke", post(ci::revoke))
        .route("/incidents/{id}/isolate", post(ci::isolate))
        .route("/incidents/{id}/release", post(ci::release))
        .route("/incidents/{id}/lockdown", post(ci::lockdown))
        .route("/incidents/{id}/note", post(ci::note))
        .route("/incidents/{id}/notify", post(ci::notify))
        .route("/incidents/{id}/close", post(ci::close))
        .route("/incidents/{id}/report", post(ci::report))
        .route("/api/v1/incidents", get(ai::list).post(ai::open))
        .route("/api/v1/incidents/{id}", get(ai::show))
        .route("/api/v1/incidents/{id}/revoke", post(ai::revoke))
        .route("/api/v1/incidents/{id}/isolate", post(ai::isolate))
        .route("/api/v1/incidents/{id}/release", post(ai::release))
        .route("/api/v1/incidents/{id}/lockdown", post(ai::lockdown))
        .route("/api/v1/incidents/{id}/notes", post(ai::note))
        .route("/api/v1/incidents/{id}/notify", post(ai::notify))
        .route("/api/v1/incidents/{id}/close", post(ai::close))
        .route("/api/v1/incidents/{id}/report", post(ai::report))
        // The inventory and stock API.
        .route("/api/v1/stock", get(crate::api_stock::list))
        .route("/api/v1/stock.csv", get(crate::api_stock::csv))
        .route("/api/v1/stock/{sku}", get(crate::api_stock::show))
        .route("/api/v1/stock/{sku}/adjust", post(crate::api_stock::adjust))
        .route("/inventory.csv", get(crate::api_stock::csv))
        .route(
            "/api/v1/stock/import",
            post(crate::stock_actions::api_import)
                .layer(DefaultBodyLimit::max(crate::stock_actions::IMPORT_MAX)),
        )
        .route(
            "/api/v1/stock/discover",
            post(crate::stock_actions::api_discover),
        )
        .route("/inventory/import", post(crate::stock_actions::import_form))
        .route(
            "/inventory/discover",
            post(crate::stock_actions::discover_form),
        )
        .route("/compliance", get(console_compliance::page))
        .route("/api/v1/compliance", get(console_compliance::api))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            route_gate,
        ));
    gated
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            front_gate,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        // Outermost: the server time of the whole request.
        .layer(axum::middleware::from_fn(
            crate::server_timing::server_timing,
        ))
        .with_state(state)
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn client_ip(state: &AppState, req: &Request) -> Option<IpAddr> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    if state.trust_forwarded_for && peer.is_loopback() {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        return Some(forwarded.unwrap_or(peer));
    }
    Some(peer)
}

/// Outermost layer: security headers on every response.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    // `same-origin`, not `no-referrer`: under `no-referrer` browsers send `Origin: null`
    // on their own form posts, which the cross-site check cannot tell from a forgery.
    // Other sites still get no referrer at all.
    set(h, "referrer-policy", "same-origin");
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    res
}

/// Second layer: the ban check and the cross-origin check, before any routing work; and
/// on the way out, an [`AppError`] on a page route becomes its page.
pub async fn front_gate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(ip) = client_ip(&state, &req) else {
        return AppError::refused(
            StatusCode::FORBIDDEN,
            "no_client_address",
            "the client address is unknown",
        )
        .into_response();
    };
    let kind = RouteKind::of(req.uri().path());
    let htmx = req.headers().contains_key(HX_REQUEST);
    let lang = crate::i18n::Lang::of(req.headers());
    let res = match admit(&state, &req, ip) {
        Ok(()) => {
            req.extensions_mut().insert(ClientIp(ip));
            next.run(req).await
        }
        Err(e) => e.into_response(),
    };
    let res = match res.extensions().get::<AppError>() {
        Some(e) if kind == RouteKind::Page => {
            let frame = crate::frame::Frame::new(lang, state.access.environment(), None);
            e.page(ip, frame, state.console.timezone)
        }
        _ => res,
    };
    if htmx { whole_page_redirect(res) } else { res }
}

/// The header htmx sends with its own requests.
const HX_REQUEST: &str = "hx-request";

/// A redirect answering an htmx request (a locked or ended session while the overview
/// polls) moves the whole page (`HX-Redirect`) instead of swapping the target page into
/// a fragment.
fn whole_page_redirect(mut res: Response) -> Response {
    if !res.status().is_redirection() {
        return res;
    }
    let Some(to) = res.headers().get(header::LOCATION).cloned() else {
        return res;
    };
    *res.status_mut() = StatusCode::OK;
    res.headers_mut().remove(header::LOCATION);
    res.headers_mut().insert("hx-redirect", to);
    res
}

/// The ban and cross-site checks of [`front_gate`].
fn admit(state: &AppState, req: &Request, ip: IpAddr) -> Result<(), AppError> {
    let path = req.uri().path();
    // The stylesheet is a constant, served even to a banned address so its ban page is
    // readable; nothing else is.
    let stylesheet = path == "/static/app.css" && !is_unsafe(req.method());
    if !stylesheet && let Some(ban) = state.access.banned(ip, Jail::for_path(path)) {
        // Nothing else happens for a banned address.
        return Err(AppError::Banned { until_s: ban.until });
    }
    if is_unsafe(req.method()) && cross_site(req.headers(), state.plain_http) {
        tracing::warn!("cross-site {} {} refused", req.method(), path);
        return Err(AppError::refused(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "this request came from another site and was refused (cross-site request forgery protection); open Stockade's own page and submit the form there",
        ));
    }
    Ok(())
}

/// Whether a state-changing request comes from another site.
///
/// Browsers say where a request comes from in `Sec-Fetch-Site` (every current browser
/// sends it, and a page cannot set or remove it): only `same-origin` and `none` (typed or
/// bookmarked by the user) pass; `same-site` (a sibling subdomain) and `cross-site` are
/// refused. Without it (older browsers, API clients, curl) the `Origin` header, when
/// present, must be this server's own origin; `Origin: null` (sandboxed frames, opaque
/// redirects, privacy modes) is refused. A request with neither header is not a browser's
/// cross-site request and goes on to its CSRF token check. This is the same decision as
/// Go's `net/http.CrossOriginProtection` and the OWASP CSRF cheat sheet's "Fetch
/// Metadata" defence; the CSRF token and `SameSite=Strict` cookies remain behind it.
pub fn cross_site(headers: &HeaderMap, plain_http: bool) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let same = host.is_some_and(|host| {
        origin.to_str().ok().is_some_and(|o| {
            o == format!("https://{host}") || (plain_http && o == format!("http://{host}"))
        })
    });
    !same
}

/// Compare two tokens without leaking where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Check the CSRF token of a state-changing request against `expected`: the
/// `x-csrf-token` header, or the `csrf` field of a form body (which is read and put back).
async fn check_csrf(req: Request, expected: &str) -> Result<Request, AppError> {
    let refused = || {
        AppError::refused(
            StatusCode::FORBIDDEN,
            "csrf",
            "the form's CSRF token is missing or out of date; reload the page and try again",
        )
    };
    if let Some(h) = req.headers().get(CSRF_HEADER) {
        return if h.to_str().is_ok_and(|v| same_token(v, expected)) {
            Ok(req)
        } else {
            Err(refused())
        };
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(refused());
    }
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_BODY).await.map_err(|_| {
        AppError::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the form is too large",
        )
    })?;
    let ok = bytes
        .split(|b| *b == b'&')
        .filter_map(|kv| {
            let mut it = kv.splitn(2, |b| *b == b'=');
            Some((it.next()?, it.next()?))
        })
        .any(|(k, v)| {
            k == CSRF_FIELD.as_bytes()
                && std::str::from_utf8(v).is_ok_and(|v| same_token(v, expected))
        });
    if ok {
        Ok(Request::from_parts(parts, Body::from(bytes)))
    } else {
        Err(refused())
    }
}

/// Per-route layer: authentication, session stage, CSRF and permission.
pub async fn route_gate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let Some(spec) = spec_for(req.method(), &path) else {
        tracing::error!(
            "route {} {} is not in the route table; refused",
            req.method(),
            path
        );
        return Err(AppError::refused(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this route is not open to anyone",
        ));
    };
    let Some(ClientIp(ip)) = req.extensions().get::<ClientIp>().copied() else {
        return Err(AppError::refused(
            StatusCode::FORBIDDEN,
            "no_client_address",
            "the client address is unknown",
        ));
    };
    match spec.gate {
        Gate::MarketplaceSignature(marketplace) => {
            req.extensions_mut().insert(HookRoute(marketplace));
        }
        Gate::WorkflowHook => {}
        Gate::Public => {
            if spec.path == "/login" && is_unsafe(req.method()) {
                let Some(expected) = cookie(req.headers(), LOGIN_CSRF_COOKIE).map(str::to_owned)
                else {
                    return Ok(Redirect::to("/login").into_response());
                };
                req = check_csrf(req, &expected).await?;
            }
        }
        Gate::SignIn => {
            let session = session_of(&state, req.headers()).await?;
            if let Some(s) = &session {
                lockdown_admits(&state, s.user.role, &Method::GET, spec.path)?;
            }
            if is_unsafe(req.method()) {
                let Some(s) = &session else {
                    // The API answers its JSON 401; a page goes to the sign-in page.
                    if RouteKind::of(spec.path) == RouteKind::Json {
                        return Err(AppError::SignIn(None));
                    }
                    return Ok(Redirect::to("/login").into_response());
                };
                req = check_csrf(req, &s.csrf).await?;
            }
            req.extensions_mut().insert(MaybeSession(session));
        }
        Gate::MetricsScrape => {
            let has_credentials = req.headers().contains_key(header::AUTHORIZATION)
                || cookie(req.headers(), SESSION_COOKIE).is_some();
            match scrape_access(ip, has_credentials) {
                ScrapeAccess::Loopback => {}
                ScrapeAccess::Refused => {
                    return Err(AppError::refused(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "metrics need an API key with the metrics permission, or a request from this machine",
                    ));
                }
                ScrapeAccess::Credentials => {
                    let caller;
                    (caller, req) = authenticate(&state, ip, req).await?;
                    if !caller.role().can(Permission::ViewMetrics) {
                        return Err(AppError::refused(
                            StatusCode::FORBIDDEN,
                            "forbidden",
                            format!("the {} role may not read metrics", caller.role()),
                        ));
                    }
                    req.extensions_mut().insert(caller);
                }
            }
        }
        Gate::Needs(permission) => {
            let caller;
            (caller, req) = authenticate(&state, ip, req).await?;
            lockdown_admits(&state, caller.role(), req.method(), spec.path)?;
            if !caller.role().can(permission) {
                return Err(AppError::refused(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("the {} role may not do this", caller.role()),
                ));
            }
            req.extensions_mut().insert(caller);
        }
    }
    Ok(next.run(req).await)
}

/// Routes an administrator may still use to change things during a lockdown: the
/// incident actions themselves (and signing out).
const LOCKDOWN_OPEN: &[&str] = &["/incidents", "/api/v1/incidents"];

/// Signing out is always allowed.
const SIGN_OUT: &[&str] = &["/logout", "/api/v1/auth/logout"];

/// The instance's lockdown (`stockade incident lockdown`): only administrators are let
/// in (sign-in included: a non-administrator's session stops at the MFA step), and
/// nothing that changes data is accepted except the incident actions. Read from the
/// process' incident controls (refreshed at least every second), not the database.
fn lockdown_admits(
    state: &AppState,
    role: stockade_access::Role,
    method: &Method,
    path: &str,
) -> Result<(), AppError> {
    if SIGN_OUT.contains(&path) || !state.access.store().controls().locked_down() {
        return Ok(());
    }
    if role != stockade_access::Role::Admin {
        return Err(AppError::refused(
            StatusCode::LOCKED,
            "lockdown",
            "the instance is locked down for an incident: only administrators may sign in; try again after the lockdown is lifted",
        ));
    }
    let open = LOCKDOWN_OPEN
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    if is_unsafe(method) && !open {
        return Err(AppError::refused(
            StatusCode::LOCKED,
            "lockdown",
            "the instance is locked down for an incident and read-only: nothing was changed; `stockade incident release --lockdown` lifts it",
        ));
    }
    Ok(())
}

/// After a successful password (and code) check during a lockdown: a non-administrator's
/// new session is ended at once and the sign-in refused (423), so only administrators,
/// with MFA, sign in while the instance is locked down.
pub(crate) async fn lockdown_sign_in(
    state: &AppState,
    s: &stockade_access::NewSession,
) -> Result<(), AppError> {
    if !state.access.store().controls().locked_down() || s.user.role == stockade_access::Role::Admin
    {
        return Ok(());
    }
    if let Ok(Some(view)) = state.access.session(s.token.expose_secret()).await
        && let Err(e) = state.access.logout(&view).await
    {
        tracing::error!("could not end a session refused by the lockdown: {e}");
    }
    lockdown_admits(state, s.user.role, &Method::GET, "/login")
}

/// Who calls a permission-gated route: a valid API key (`Authorization: Bearer`), or a
/// full, unlocked session (its activity recorded, its CSRF token checked on a
/// state-changing request). A bad key is counted toward a ban.
async fn authenticate(
    state: &AppState,
    ip: IpAddr,
    req: Request,
) -> Result<(Caller, Request), AppError> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        let rejection = match state.access.authenticate_api_key(token.trim()).await? {
            Ok(p) => return Ok((Caller::Key(p), req)),
            Err(rejection) => rejection,
        };
        if let KeyRejection::WrongEnvironment { key_env, .. } = &rejection
            && let Err(e) = state.access.record_wrong_environment_key(ip, key_env).await
        {
            tracing::error!("could not audit a wrong-environment key: {e}");
        }
        if let Err(e) = state
            .access
            .record_failure(ip, FailureKind::ApiKey, None, None)
            .await
        {
            tracing::error!("could not record an API key failure: {e}");
        }
        let msg = match rejection {
            KeyRejection::WrongEnvironment { .. } => "this API key belongs to another environment",
            KeyRejection::Expired => "this API key has expired",
            KeyRejection::Revoked => "this API key has been revoked",
            _ => "invalid API key",
        };
        return Err(AppError::refused(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            msg,
        ));
    }
    let Some(session) = session_of(state, req.headers()).await? else {
        return Err(AppError::SignIn(None));
    };
    if session.state != SessionState::Active {
        return Err(AppError::SignIn(Some(session.state)));
    }
    // A page polling by itself (htmx, e.g. the live overview) is not the user's activity:
    // it must not hold off the idle lock. (A client can only shorten its own session so.)
    let polled = !is_unsafe(req.method()) && req.headers().contains_key(HX_REQUEST);
    if !polled && let Err(e) = state.access.touch_session(&session).await {
        tracing::warn!("could not record session activity: {e}");
    }
    let req = if is_unsafe(req.method()) {
        check_csrf(req, &session.csrf).await?
    } else {
        req
    };
    Ok((Caller::Session(session), req))
}

async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<SessionView>, AppError> {
    match cookie(headers, SESSION_COOKIE) {
        None => Ok(None),
        Some(token) => Ok(state.access.session(token).await?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_htmx_redirect_moves_the_whole_page() {
        let res = whole_page_redirect(Redirect::to("/lock").into_response());
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["hx-redirect"], "/lock");
        assert!(res.headers().get(header::LOCATION).is_none());
        let ok = whole_page_redirect(StatusCode::OK.into_response());
        assert!(ok.headers().get("hx-redirect").is_none());
    }

    #[test]
    fn metrics_without_credentials_are_for_loopback_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for local in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(
                scrape_access(ip(local), false),
                ScrapeAccess::Loopback,
                "{local}"
            );
        }
        for remote in [
            "10.0.0.1",
            "192.168.1.2",
            "203.0.113.9",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "0.0.0.0",
        ] {
            assert_eq!(
                scrape_access(ip(remote), false),
                ScrapeAccess::Refused,
                "{remote}"
            );
            assert_eq!(
                scrape_access(ip(remote), true),
                ScrapeAccess::Credentials,
                "{remote}"
            );
        }
        // Credentials are always checked, even from loopback (a bad key is not waved through).
        assert_eq!(
            scrape_access(ip("127.0.0.1"), true),
            ScrapeAccess::Credentials
        );
        let spec = spec_for(&Method::GET, "/metrics").unwrap();
        assert_eq!(spec.gate, Gate::MetricsScrape);
    }

    #[test]
    fn every_route_is_listed_once() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    a.method != b.method || a.path != b.path,
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
        }
    }

    #[test]
    fn hook_routes_name_their_marketplace_and_nothing_else_is_signature_gated() {
        let mut seen = Vec::new();
        for spec in ROUTES {
            match spec.gate {
                Gate::MarketplaceSignature(m) => {
                    assert_eq!(spec.path, format!("/hooks/{m}/{{connection}}"));
                    seen.push(m);
                }
                Gate::WorkflowHook => {
                    assert_eq!(spec.path, "/hooks/workflows/{*path}");
                    assert!(
                        Marketplace::ALL
                            .iter()
                            .all(|m| m.to_string() != "workflows"),
                        "workflow hooks must not collide with a marketplace's"
                    );
                }
                _ => assert!(!spec.path.starts_with("/hooks/"), "{}", spec.path),
            }
        }
        for m in Marketplace::ALL {
            assert!(seen.contains(&m), "{m} has no hook route");
        }
    }
}
