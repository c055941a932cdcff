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
use crate::model::{Alert, StoredAlert};

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
    /// Attempts made so far (a pending row with attempts failed and is retried).
    pub attempts: i64,
}

impl Delivery {
    /// What became of it: `sent`, `held` (the channel is misconfigured), `retrying` (an
    /// attempt failed; it is retried with backoff) or `pending` (not tried yet).
    pub fn status(&self) -> &'static str {
        match self.state.as_str() {
            "sent" => "sent",
            "held" => "held",
            _ if self.attempts > 0 => "retrying",
            _ => "pending",
        }
    }
}

/// The newest `limit` alerts (1 to 1,000), newest first.
pub async fn alert_history(store: &Store, limit: i64) -> Result<Vec<AlertEntry>, StoreError> {
    Ok(alert_page(store, None, limit).await?.0)
}

/// One page of alerts, newest first: at most `limit` (1 to 1,000) of the events before
/// event id `before` (`None`: the newest), and the `before` of the next page (`None` on
/// the last). Keyset paging on the event id, so alerts raised meanwhile never shift a
/// page. A page that scanned its bound of events without filling up still hands out
/// where it stopped.
pub async fn alert_page(
    store: &Store,
    before: Option<i64>,
    limit: i64,
) -> Result<(Vec<AlertEntry>, Option<i64>), StoreError> {
    let limit = usize::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
    let mut out: Vec<AlertEntry> = Vec::new();
    let mut before = before.unwrap_or(i64::MAX);
    let mut scanned = 0usize;
    let mut more = false;
    'scan: while scanned < SCAN_MAX {
        let rows = store.events_before(before, PAGE).await?;
        let n = rows.len();
        for (ev, routed) in rows {
            if out.len() == limit {
                // Another alert may follow: the next page starts after the last one kept.
                more = true;
                break 'scan;
            }
            before = ev.id;
            scanned += 1;
            if let Some(alert) = classify(&ev) {
                out.push(AlertEntry {
                    alert,
                    routed,
                    deliveries: Vec::new(),
                });
            }
        }
        if i64::try_from(n).unwrap_or(0) < PAGE {
            break;
        }
        more = true;
    }
    let next = if out.len() == limit || (more && scanned >= SCAN_MAX) {
        more.then_some(before)
    } else {
        None
    };
    attach_deliveries(store, &mut out).await?;
    Ok((out, next))
}

async fn attach_deliveries(store: &Store, entries: &mut [AlertEntry]) -> Result<(), StoreError> {
    let Some(oldest) = entries.iter().map(|e| e.alert.at_ms).min() else {
        return Ok(());
    };
    let rows: Vec<(String, String, Option<i64>, i64, StoredAlert)> = store
        .query_as(
            "SELECT channel, state, sent_at_ms, attempts, alert FROM alert_outbox
              WHERE created_at_ms >= $1 ORDER BY id DESC LIMIT $2",
            sql_params![oldest, DELIVERIES_MAX],
        )
        .await?;
    let mut by_event: HashMap<i64, Vec<Delivery>> = HashMap::new();
    for (channel, state, sent_at_ms, attempts, StoredAlert(alert)) in rows {
        // A follow-up reports the repeats of a window, not its first event.
        let Some(alert) = alert.filter(|a| a.since_ms.is_none()) else {
            continue;
        };
        by_event.entry(alert.event_id).or_default().push(Delivery {
            channel,
            state,
            sent_at_ms,
            attempts,
        });
    }
    for e in entries {
        if let Some(d) = by_event.remove(&e.alert.event_id) {
            e.deliveries = d;
        }
    }
    Ok(())
}
