//! Stockade's HTTP server: a TLS 1.2+ listener (rustls), security headers, the ban gate,
//! the sign-in API and pages, sessions, API keys and role checks, and the marketplaces'
//! webhooks in ([`hooks`]). Later parts of the system (workflows, the dashboard) add
//! their routes to [`router`] and their rows to [`routes::ROUTES`].

pub mod api;
pub mod ban_page;
pub mod error_page;
pub mod hooks;
pub mod pages;
pub mod routes;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use stockade_access::Access;
use stockade_marketplaces::HookSink;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub access: Arc<Access>,
    /// Take the client address from X-Forwarded-For (only honoured from a loopback peer).
    pub trust_forwarded_for: bool,
    /// Plain HTTP behind a local reverse proxy.
    pub plain_http: bool,
    /// Where webhook deliveries go; `None` while sync is not running (hooks answer 503).
    pub hooks: Option<Arc<dyn HookSink>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("access", &self.access)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("plain_http", &self.plain_http)
            .field("hooks", &self.hooks.as_ref().map(|_| "running"))
            .finish()
    }
}

/// How to listen.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// `None` = plain HTTP (allowed only on a loopback address).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How often bans added or lifted elsewhere are picked up.
    pub ban_refresh: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "plain HTTP is allowed only on a loopback address (for a reverse proxy on the same host), not on {0}; remove `plain_http` or listen on 127.0.0.1"
    )]
    PlainHttpNotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// All routes. Every one of them must be in [`routes::ROUTES`] or it is refused.
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
        .route("/api/v1/alerts", get(api::alerts))
        .route("/alerts", get(pages::alerts))
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
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::route_gate,
        ));
    gated
        .layer(DefaultBodyLimit::max(routes::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::front_gate,
        ))
        .layer(axum::middleware::from_fn(routes::security_headers))
        .with_state(state)
}

/// Serve until `shutdown` resolves. Reports the bound address through `bound`.
pub async fn serve(
    state: AppState,
    options: ServeOptions,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if options.tls.is_none() && !options.listen.ip().is_loopback() {
        return Err(ServeError::PlainHttpNotLoopback(options.listen));
    }
    let access = Arc::clone(&state.access);
    let refresh = options.ban_refresh;
    let housekeeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(refresh);
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            if let Err(e) = access.refresh_bans().await {
                tracing::warn!("could not refresh bans: {e}");
            }
            n += 1;
            if n.is_multiple_of(300)
                && let Err(e) = access.sweep_sessions().await
            {
                tracing::warn!("could not sweep expired sessions: {e}");
            }
        }
    });
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let h = handle.clone();
    tokio::spawn(async move {
        if let Some(addr) = h.listening().await {
            let _ = bound.send(addr);
        }
    });
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let addr = options.listen;
    let result = match options.tls {
        Some(config) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(config);
            axum_server::bind_rustls(addr, config)
                .handle(handle)
                .serve(app)
                .await
        }
        None => axum_server::bind(addr).handle(handle).serve(app).await,
    };
    housekeeping.abort();
    result.map_err(|e| ServeError::Bind {
        addr,
        reason: e.to_string(),
    })
}
