//! What the dashboard and the CLI ask of the channels: each channel's state, the recent
//! alerts (scrubbed, from the outbox), and a signed test message sent now, outside the
//! outbox.

use serde::Serialize;
use stockade_core::Actor;
use stockade_egress::Gateway;
use stockade_store::{
    AuditDetails, AuditEntry, Change, Columns, FromRow, Result as StoreResult, Store, sql_params,
};
use stockade_vault::Vault;

use super::sender::{outbox_rows, release_held};
use super::{AlertsError, Result, now_ms};
use crate::channel::{ChannelClient, Outcome};
use crate::config::ChannelConfig;
use crate::model::{Alert, Severity, StoredAlert};

/// A channel's state as the dashboard and `stockade alert status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelStatus {
    pub name: String,
    pub kind: String,
    /// ok | failing | misconfigured | rate_limited
    pub status: String,
    pub last_error: Option<String>,
    pub last_ok_ms: Option<i64>,
    pub pending: i64,
    pub held: i64,
    pub sent: i64,
}

impl FromRow for ChannelStatus {
    fn from_row(c: &mut Columns<'_>) -> StoreResult<Self> {
        Ok(ChannelStatus {
            name: c.get()?,
            kind: c.get()?,
            status: c.get()?,
            last_error: c.get()?,
            last_ok_ms: c.get()?,
            pending: c.get()?,
            held: c.get()?,
            sent: c.get()?,
        })
    }
}

/// Every known channel's state.
pub async fn channel_statuses(store: &Store) -> StoreResult<Vec<ChannelStatus>> {
    store
        .query_as(
            "SELECT c.name, c.kind, c.status, c.last_error, c.last_ok_ms,
                    (SELECT COUNT(*) FROM alert_outbox o WHERE o.channel = c.name AND o.state = 'pending'),
                    (SELECT COUNT(*) FROM alert_outbox o WHERE o.channel = c.name AND o.state = 'held'),
                    (SELECT COUNT(*) FROM alert_outbox o WHERE o.channel = c.name AND o.state = 'sent')
               FROM alert_channels c ORDER BY c.name",
            vec![],
        )
        .await
}

/// One recent alert as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentAlert {
    pub id: i64,
    pub channel: String,
    pub state: String,
    pub attempts: i64,
    pub events: i64,
    pub created_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub alert: Alert,
}

/// An outbox row as [`recent_alerts`] selects it; `None` when its alert does not decode.
struct RecentRow(Option<RecentAlert>);

impl FromRow for RecentRow {
    fn from_row(c: &mut Columns<'_>) -> StoreResult<Self> {
        let (id, channel, state, attempts, events) = FromRow::from_row(c)?;
        let (created_at_ms, sent_at_ms, last_error, StoredAlert(alert)) = FromRow::from_row(c)?;
        Ok(RecentRow(alert.map(|alert| RecentAlert {
            id,
            channel,
            state,
            attempts,
            events,
            created_at_ms,
            sent_at_ms,
            last_error,
            alert,
        })))
    }
}

/// The newest outbox rows (scrubbed alerts only), `limit` clamped to 1 to 1,000.
pub async fn recent_alerts(store: &Store, limit: i64) -> StoreResult<Vec<RecentAlert>> {
    let rows: Vec<RecentRow> = store
        .query_as(
            "SELECT id, channel, state, attempts, events, created_at_ms, sent_at_ms, last_error, alert
               FROM alert_outbox ORDER BY id DESC LIMIT $1",
            sql_params![limit.clamp(1, 1000)],
        )
        .await?;
    Ok(rows.into_iter().filter_map(|r| r.0).collect())
}

/// Send a signed test message to one channel now (not through the outbox) and report
/// the platform's answer. Audited as `alert.test`.
pub async fn test_channel(
    store: &Store,
    vault: &Vault,
    gateway: &Gateway,
    channel: &ChannelConfig,
    dashboard: Option<String>,
    actor: &Actor,
) -> Result<Outcome> {
    channel.validate().map_err(AlertsError::Config)?;
    let env = store.environment().as_str();
    let client = ChannelClient::new(gateway, channel.clone(), env, dashboard);
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
        hint: Some("Sent by `stockade alert test`; nothing failed.".into()),
        key: format!("test:{now}"),
        event_id: 0,
        at_ms: now,
        count: 1,
        since_ms: None,
        about_channel: None,
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
