//! What the dashboard and the CLI read of the channels: each channel's state and the
//! recent alerts (scrubbed, from the outbox). Plain reads of the store, so they are
//! available without the `pipeline` feature (the server's pages have no outbound
//! client).

use serde::Serialize;
use stockade_store::{Columns, FromRow, Result as StoreResult, Store, sql_params};

use crate::model::{Alert, StoredAlert};

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
