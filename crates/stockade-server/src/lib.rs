//! Stockade's HTTP server: a TLS 1.2+ listener (rustls), security headers, the ban gate,
//! the sign-in API and pages, sessions, API keys and role checks, and the marketplaces'
//! webhooks in ([`hooks`]) and the workflows' webhooks ([`workflow_hooks`]). Later parts of the system (workflows, the dashboard) add
//! their routes to [`router`] and their rows to [`routes::ROUTES`].
//!
//! Modules: [`routes`] builds the router and the middleware (security headers, the ban
//! and cross-site front gate, the per-route gate); the handlers in [`pages`], [`api`] and
//! [`hooks`] use only the shared [`state`], [`error`] ([`AppError`]), [`extract`] and
//! [`dashboard`] modules. Pages are askama templates in `templates/`.
//! The JSON API's answer types and cursors are in [`api_types`]; [`openapi`] builds the
//! OpenAPI document from the handlers' `#[utoipa::path]` attributes.

pub mod api;
pub mod api_types;
pub mod api_workflows;
pub mod ban_page;
pub mod console;
pub mod console_data;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod hooks;
pub mod i18n;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod route_table;
pub mod routes;
pub mod state;
pub mod tls;
pub mod workflow_hooks;
// The orders part of the console and API.
pub mod api_orders;
pub mod console_orders;
pub mod orders_data;
// The Workflows, Executions and Alerts pages.
pub mod api_alerts;
pub mod console_alerts;
pub mod console_workflows;
pub mod workflow_view;
// The Connections and Security pages and their API.
pub mod api_ops;
pub mod console_connections;
pub mod console_security;
pub mod hook_stats;
// The inventory, stock API and server timing.
pub mod api_stock;
pub mod channel_live;
pub mod server_timing;
pub mod stock_actions;
// Compliance page and report, per-user language, translated sign-in pages.
pub mod compliance;
pub mod console_compliance;
pub mod frame;
// Compliance report: the report as a Markdown, JSON or standalone HTML document.
pub mod compliance_render;
// Incident response: the Security page's section, an incident's page, the API.
pub mod api_incidents;
pub mod console_incidents;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use error::AppError;
pub use routes::router;
pub use state::{AlertTestOutcome, AlertTester, AppState, ConsoleSettings, MetricsSource};

/// How to listen.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// `None` = plain HTTP (allowed only on a loopback address).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How often bans added or lifted elsewhere are picked up.
    pub ban_refresh: Duration,
    /// A background-work process (`serve --role worker`): answer `/healthz`, `/readyz`
    /// and `/metrics` only; everything else is 404 with a pointer to the API processes.
    pub health_only: bool,
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
        // Bans: re-read every `refresh`, and at once when another process (on PostgreSQL)
        // says a ban changed.
        let mut wakeups = access.store().wakeups(stockade_store::Topic::Bans).await;
        let sweep_every = refresh.saturating_mul(300);
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            wakeups.wait(refresh).await;
            if let Err(e) = access.refresh_bans().await {
                tracing::warn!("could not refresh bans: {e}");
            }
            if last_sweep.elapsed() >= sweep_every {
                last_sweep = tokio::time::Instant::now();
                if let Err(e) = access.sweep_sessions().await {
                    tracing::warn!("could not sweep expired sessions: {e}");
                }
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
    let mut routes = router(state);
    if options.health_only {
        routes = routes.layer(axum::middleware::from_fn(health_only));
    }
    let app = routes.into_make_service_with_connect_info::<SocketAddr>();
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

/// `serve --role worker`: only health and metrics are served here.
async fn health_only(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match req.uri().path() {
        "/healthz" | "/readyz" | "/metrics" => next.run(req).await,
        _ => (
            axum::http::StatusCode::NOT_FOUND,
            "this process runs background work only (serve --role worker); send requests and webhooks to a process with --role api or all\n",
        )
            .into_response(),
    }
}
// Webhooks refused as unavailable: a line a second, not one per delivery.
pub mod hook_log;
