//! Alerts: failure and security events to DingTalk, Feishu/Lark and signed webhooks.
//!
//! See [`pipeline`] for the flow (events → router → outbox → senders), [`model`] for
//! what an alert may contain, [`scrub`] for the text scrubber, [`sign`] for the
//! platforms' signing schemes and [`render`] for their message formats.

pub mod channel;
pub mod config;
pub mod model;
pub mod pipeline;
pub mod render;
pub mod scrub;
pub mod sign;

pub use channel::{ChannelClient, Outcome};
pub use config::{AlertsConfig, ChannelConfig, ChannelKind};
pub use model::{Alert, EventRow, Severity};
pub use pipeline::{
    Alerts, AlertsError, ChannelStatus, PipelineStats, RecentAlert, channel_statuses,
    recent_alerts, release_held, test_channel,
};
