//! A signed test message sent to one channel now, outside the outbox (the channels'
//! state and the recent alerts, plain reads, are in [`crate::status`]).

use stockade_core::Actor;
use stockade_egress::Gateway;
use stockade_store::{AuditDetails, AuditEntry, Change, Store};
use stockade_vault::Vault;

use super::sender::{outbox_rows, release_held};
use super::{AlertsError, Result, now_ms};
use crate::channel::{ChannelClient, Outcome};
use crate::config::ChannelConfig;
use crate::model::{Alert, Severity};

/// Send a signed test message to one channel now (not through the outbox) and report
/// the platform's answer. Audited as `alert.test`.
pub async fn test_channel(
    store: &Store,
    vault: &Vault,
    gateway: &Gateway,
    channel: &ChannelConfig,
    dashboard: Option<String>,
    language: crate::config::Language,
    actor: &Actor,
) -> Result<Outcome> {
    channel.validate().map_err(AlertsError::Config)?;
    let env = store.environment().as_str();
    let client =
        ChannelClient::new(gateway, channel.clone(), env, dashboard).with_language(language);
    let now = now_ms();
    let alert = Alert {
        severity: Severity::Info,
        source: "test".into(),
        kind: "test".into(),
        title: "Test alert from Stockade: this channel works".into(),
        facts: vec![
            ("Channel".into(), channel.name.clone()),
            ("Kind".into(), channel.kind.as_str().into()),
        ],
        message: None,
        hint: Some("A test message (`stockade alert test` or the console); nothing failed.".into()),
        key: format!("test:{now}"),
        event_id: 0,
        at_ms: now,
        count: 1,
        since_ms: None,
        about_channel: None,
        to_channel: None,
    };
    let outcome = client.send(vault, &[alert]).await;
    store
        .commit(
            actor,
            vec![Change::event(AuditEntry::new(
                "alert.test",
                format!("alert_channel:{}", channel.name),
                AuditDetails::new()
                    .str("channel", &channel.name)
                    .str("kind", channel.kind.as_str())
                    .str("status", outcome.status()),
            ))],
        )
        .await?;
    if matches!(outcome, Outcome::Delivered { .. }) {
        // A channel that works again releases what it held.
        if outbox_rows(store, &channel.name, "held").await? > 0 {
            release_held(store, &channel.name, "test message delivered").await?;
        }
    }
    Ok(outcome)
}
