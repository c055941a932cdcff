//! The alert history: every alert, whether or not a channel is configured.
//!
//! Alerts are classified from the events table (the pipeline's input, written in the
//! same transaction as each failure), so an alert is listed as soon as it happened, dated
//! by its event's time, even with no channel configured and before the router has run.
//! Each entry carries its deliveries (the outbox rows that report it), if any.

use std::collections::HashMap;

use serde::Serialize;
use stockade_store::{Store, StoreError, sql_params};

use crate::classify::classify;
use crate::model::Alert;

/// Events read per query while looking for alerts.
const PAGE: i64 = 500;
/// At most this many events are looked at for one listing.
const SCAN_MAX: usize = 20_000;
/// Outbox rows looked at for the deliveries of one listing.
const DELIVERIES_MAX: i64 = 5_000;

/// One alert as `stockade alert list` and `/alerts` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertEntry {
    /// The alert (allow-listed, scrubbed); `alert.at_ms` is when the event happened.
    pub alert: Alert,
    /// Whether the router has taken the event (sent, folded into a window or, with no
    /// channel that takes it, kept on the dashboard).
    pub routed: bool,
    /// The outbox rows that report this alert, newest first.
    pub deliveries: Vec<Delivery>,
}

impl AlertEntry {
    /// One word for the CLI and the page: each channel's state, or where it is kept.
    pub fn delivery_summary(&self) -> String {
        if !self.deliveries.is_empty() {
            return self
                .deliveries
                .iter()
                .map(|d| format!("{}:{}", d.channel, d.state))
                .collect::<Vec<_>>()
                .join(", ");
        }
        if self.routed {
            "dashboard only".into()
        } else {
            "not routed yet".into()
        }
    }
}

/// One channel's delivery of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub channel: String,
    /// pending | sent | held
    pub state: String,
    pub sent_at_ms: Option<i64>,
}

/// The newest `limit` alerts (1 to 1,000), newest first.
pub async fn alert_history(store: &Store, limit: i64) -> Result<Vec<AlertEntry>, StoreError> {
    let limit = usize::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
    let mut out: Vec<AlertEntry> = Vec::new();
    let mut before = i64::MAX;
    let mut scanned = 0usize;
    while out.len() < limit && scanned < SCAN_MAX {
        let rows = store.events_before(before, PAGE).await?;
        let n = rows.len();
        for (ev, routed) in rows {
            before = ev.id;
            if let Some(alert) = classify(&ev)
                && out.len() < limit
            {
                out.push(AlertEntry {
                    alert,
                    routed,
                    deliveries: Vec::new(),
                });
            }
        }
        scanned += n;
        if i64::try_from(n).unwrap_or(0) < PAGE {
            break;
        }
    }
    attach_deliveries(store, &mut out).await?;
    Ok(out)
}

async fn attach_deliveries(store: &Store, entries: &mut [AlertEntry]) -> Result<(), StoreError> {
    let Some(oldest) = entries.iter().map(|e| e.alert.at_ms).min() else {
        return Ok(());
    };
    let rows = store
        .query(
            "SELECT channel, state, sent_at_ms, alert FROM alert_outbox
              WHERE created_at_ms >= $1 ORDER BY id DESC LIMIT $2",
            sql_params![oldest, DELIVERIES_MAX],
        )
        .await?;
    let mut by_event: HashMap<i64, Vec<Delivery>> = HashMap::new();
    for r in rows {
        let Ok(alert) = serde_json::from_str::<Alert>(&r.text(3)?) else {
            continue;
        };
        // A follow-up reports the repeats of a window, not its first event.
        if alert.since_ms.is_some() {
            continue;
        }
        by_event.entry(alert.event_id).or_default().push(Delivery {
            channel: r.text(0)?,
            state: r.text(1)?,
            sent_at_ms: r.opt_int(2)?,
        });
    }
    for e in entries {
        if let Some(d) = by_event.remove(&e.alert.event_id) {
            e.deliveries = d;
        }
    }
    Ok(())
}
