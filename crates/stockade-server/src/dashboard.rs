//! What the alerts dashboard shows, read once for both `/alerts` (the page) and
//! `/api/v1/alerts` (JSON): each channel's state, the alert history, and the newest
//! deliveries. Read-only over the tables the alert pipeline writes; only allow-listed,
//! already scrubbed fields leave here.

use serde::Serialize;
use serde_json::{Map, Value};
use stockade_store::{Store, StoreError};

/// An alert channel and its queue.
#[derive(Debug, Serialize)]
pub struct Channel {
    pub name: String,
    pub kind: String,
    pub status: String,
    pub last_error: Option<String>,
    pub last_ok_ms: Option<i64>,
    pub pending: i64,
    pub held: i64,
}

/// One alert, dated by its event's time, with where it went (each channel's state, or
/// "dashboard only" when no channel takes it).
#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    pub event_id: i64,
    pub at_ms: i64,
    pub at: String,
    pub severity: String,
    pub source: String,
    pub kind: String,
    pub title: String,
    pub delivery: String,
}

/// One queued or sent delivery of an alert to a channel, with the alert's own
/// [`ALERT_FIELDS`] as stored (`null` when absent).
#[derive(Debug, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub channel: String,
    pub state: String,
    pub attempts: i64,
    pub events: i64,
    pub created_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    #[serde(flatten)]
    pub alert: Map<String, Value>,
}

/// The fields of a stored alert a delivery shows.
pub const ALERT_FIELDS: [&str; 8] = [
    "event_id", "severity", "source", "kind", "title", "facts", "message", "count",
];

impl Delivery {
    /// The event number the page anchors the row on (0 if the alert has none).
    pub fn event_no(&self) -> i64 {
        self.alert
            .get("event_id")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }
    /// An alert field as text ("" if absent or not text).
    pub fn text(&self, field: &str) -> &str {
        self.alert.get(field).and_then(Value::as_str).unwrap_or("")
    }
    pub fn queued(&self) -> String {
        stockade_core::time::format_rfc3339_ms(self.created_at_ms)
    }
}

/// Every alert, newest first, at most `limit`.
pub async fn alert_history(store: &Store, limit: i64) -> Result<Vec<HistoryEntry>, StoreError> {
    let entries = stockade_alerts::alert_history(store, limit).await?;
    Ok(entries
        .iter()
        .map(|e| {
            let a = &e.alert;
            HistoryEntry {
                event_id: a.event_id,
                at_ms: a.at_ms,
                at: stockade_core::time::format_rfc3339_ms(a.at_ms),
                severity: a.severity.to_string(),
                source: a.source.clone(),
                kind: a.kind.clone(),
                title: a.title.clone(),
                delivery: e.delivery_summary(),
            }
        })
        .collect())
}

/// The channels, and the newest `limit` deliveries.
pub async fn channels_and_deliveries(
    store: &Store,
    limit: i64,
) -> Result<(Vec<Channel>, Vec<Delivery>), StoreError> {
    let rows = store
        .query(
            "SELECT c.name, c.kind, c.status, c.last_error, c.last_ok_ms,
                    (SELECT COUNT(*) FROM alert_outbox o WHERE o.channel = c.name AND o.state = 'pending'),
                    (SELECT COUNT(*) FROM alert_outbox o WHERE o.channel = c.name AND o.state = 'held')
               FROM alert_channels c ORDER BY c.name",
            vec![],
        )
        .await?;
    let mut channels = Vec::with_capacity(rows.len());
    for r in rows {
        channels.push(Channel {
            name: r.text(0)?,
            kind: r.text(1)?,
            status: r.text(2)?,
            last_error: r.opt_text(3)?,
            last_ok_ms: r.opt_int(4)?,
            pending: r.int(5)?,
            held: r.int(6)?,
        });
    }
    let rows = store
        .query(
            "SELECT id, channel, state, attempts, events, created_at_ms, sent_at_ms, alert
               FROM alert_outbox ORDER BY id DESC LIMIT $1",
            stockade_store::sql_params![limit],
        )
        .await?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for r in rows {
        let alert: Value = serde_json::from_str(&r.text(7)?).unwrap_or_default();
        deliveries.push(Delivery {
            id: r.int(0)?,
            channel: r.text(1)?,
            state: r.text(2)?,
            attempts: r.int(3)?,
            events: r.int(4)?,
            created_at_ms: r.int(5)?,
            sent_at_ms: r.opt_int(6)?,
            alert: ALERT_FIELDS
                .iter()
                .map(|k| (k.to_string(), alert.get(*k).cloned().unwrap_or_default()))
                .collect(),
        });
    }
    Ok((channels, deliveries))
}
