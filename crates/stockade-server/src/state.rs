//! What every handler and middleware shares: [`AppState`]. It is built by the caller of
//! [`crate::serve`] and cloned per request (only `Arc`s and flags inside).

use std::sync::Arc;

use stockade_access::Access;
use stockade_marketplaces::HookSink;

use crate::workflow_hooks::WorkflowHooks;

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
    /// Workflow webhooks (`/hooks/workflows/…`); `None` answers them 404.
    pub workflows: Option<Arc<WorkflowHooks>>,
    /// The console's settings (`[console]`).
    pub console: ConsoleSettings,
    /// What `/metrics` renders; `None` answers it 404.
    pub metrics: Option<Arc<dyn MetricsSource>>,
    /// Gathers the compliance report (`/compliance`); `None` answers it 503.
    pub compliance: Option<Arc<dyn crate::compliance::ComplianceSource>>,
}

/// `[console]`: how the web console shows things.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleSettings {
    /// The time zone times are shown in (stored in UTC).
    pub timezone: chrono_tz::Tz,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            timezone: chrono_tz::Asia::Shanghai,
        }
    }
}

/// Renders the Prometheus text for `/metrics` (the composition root owns the registry and
/// reads its scrape-time gauges from the store first).
pub trait MetricsSource: Send + Sync {
    fn render(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + '_>>;
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("access", &self.access)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("plain_http", &self.plain_http)
            .field("hooks", &self.hooks.as_ref().map(|_| "running"))
            .field("workflows", &self.workflows.as_ref().map(|_| "running"))
            .field("console", &self.console)
            .field("metrics", &self.metrics.as_ref().map(|_| "on"))
            .field("compliance", &self.compliance.as_ref().map(|_| "on"))
            .finish()
    }
}
