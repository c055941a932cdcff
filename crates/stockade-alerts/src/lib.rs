//! Alerts: failure and security events to DingTalk, Feishu/Lark and signed webhooks.
//!
//! See [`pipeline`] for the flow (events → router → outbox → senders), [`classify`] for
//! the alert each event kind raises, [`model`] for what an alert may contain, [`scrub`]
//! for the text scrubber, [`sign`] for the platforms' signing schemes and [`render`] for
//! their message formats.

#[cfg(feature = "pipeline")]
pub mod channel;
pub mod classify;
pub mod config;
pub mod history;
pub mod model;
#[cfg(feature = "pipeline")]
pub mod pipeline;
pub mod render;
pub mod scrub;
#[cfg(feature = "pipeline")]
pub mod sign;
pub mod status;
pub mod zh;

#[cfg(feature = "pipeline")]
pub use channel::{ChannelClient, Outcome};
pub use classify::classify;
pub use config::{AlertsConfig, ChannelConfig, ChannelKind, Language};
pub use history::{AlertEntry, Delivery, alert_history, alert_page};
pub use model::{Alert, Severity};
#[cfg(feature = "pipeline")]
pub use pipeline::{
    AlertLabels, AlertTelemetry, Alerts, AlertsError, PipelineStats, lease_name, release_held,
    test_channel,
};
pub use status::{ChannelStatus, RecentAlert, channel_statuses, recent_alerts};
