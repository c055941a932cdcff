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
    /// The alert channels' test-send (`stockade alert test`); `None`: not offered.
    pub alert_test: Option<Arc<dyn AlertTester>>,
    /// Webhook deliveries per connection seen by this process (the connections page).
    pub hook_stats: Arc<crate::hook_stats::HookStats>,
    /// Each channel's push lag and rate-limit state for the overview; `None`: not shown.
    pub channels: Option<Arc<dyn crate::channel_live::ChannelLive>>,
    /// Gathers the compliance report (`/compliance`); `None` answers it 503.
    pub compliance: Option<Arc<dyn crate::compliance::ComplianceSource>>,
    /// The live overview's figures shared by every polling console (1 s).
    pub live_cache: Arc<crate::console::LiveCache>,
    /// The compliance page's last evidence (at most 5 minutes old).
    pub compliance_page: Arc<crate::console_compliance::PageEvidence>,
}

/// What a test message to an alert channel came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertTestOutcome {
    /// `delivered`, `rate_limited`, `failed` or `config_error`.
    pub status: String,
    /// The platform's (scrubbed) answer or what is wrong, as the CLI prints it.
    pub detail: String,
}

/// Sends a signed test message to one configured alert channel, as `stockade alert test`
/// does (same function, audited `alert.test` as the caller). The composition root owns
/// the channels' configuration, the vault and the egress gateway.
pub trait AlertTester: Send + Sync {
    /// The configured channels: `(name, kind)`.
    fn channels(&self) -> Vec<(String, String)>;
    /// Send the test message to `channel` as `actor`; `Err` when no such channel is
    /// configured (nothing sent, nothing written).
    fn test<'a>(
        &'a self,
        channel: &'a str,
        actor: stockade_core::Actor,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<AlertTestOutcome, String>> + Send + 'a>,
    >;
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
            .field("alert_test", &self.alert_test.as_ref().map(|_| "on"))
            .field("channels", &self.channels.as_ref().map(|_| "on"))
            .field("compliance", &self.compliance.as_ref().map(|_| "on"))
            .finish_non_exhaustive()
    }
}
