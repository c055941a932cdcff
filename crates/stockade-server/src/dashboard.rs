//! What the alerts dashboard shows, read once for both `/alerts` (the page) and
//! `/api/v1/alerts` (JSON): each channel's state, the alert history, and the newest
//! deliveries, read through stockade-alerts (owner of those tables); only allow-listed,
//! already scrubbed fields leave here. Also the alert history's cursor and the channels'
//! test-send, shared by the alerts API and the Alerts page.

use axum::http::StatusCode;
use serde_json::json;

use crate::api_types::{bad_cursor, decode_cursor, encode_cursor};
use crate::error::AppError;
use crate::extract::Caller;
use crate::state::{AlertTestOutcome, AppState};

/// Every alert, newest first, dated by its event's time, with where it went (each
/// channel's state, or "dashboard only" when no channel takes it).
pub async fn alert_history(
    store: &stockade_store::Store,
    limit: i64,
) -> Result<Vec<serde_json::Value>, stockade_store::StoreError> {
    Ok(alert_history_page(store, None, limit).await?.0)
}

/// One page of [`alert_history`] before event id `before`, and the next page's `before`.
pub async fn alert_history_page(
    store: &stockade_store::Store,
    before: Option<i64>,
    limit: i64,
) -> Result<(Vec<serde_json::Value>, Option<i64>), stockade_store::StoreError> {
    let (entries, next) = stockade_alerts::alert_page(store, before, limit).await?;
    Ok((entries.iter().map(history_json).collect(), next))
}

fn history_json(e: &stockade_alerts::AlertEntry) -> serde_json::Value {
    let a = &e.alert;
    let deliveries: Vec<serde_json::Value> = e
        .deliveries
        .iter()
        .map(|d| {
            json!({
                "channel": d.channel, "state": d.state, "status": d.status(),
                "attempts": d.attempts,
                "sent_at": d.sent_at_ms.map(stockade_core::time::format_rfc3339_ms),
            })
        })
        .collect();
    json!({
        "event_id": a.event_id, "at_ms": a.at_ms,
        "at": stockade_core::time::format_rfc3339_ms(a.at_ms),
        "severity": a.severity.to_string(), "source": a.source, "kind": a.kind,
        "title": a.title, "delivery": e.delivery_summary(),
        "routed": e.routed, "deliveries": deliveries,
    })
}

/// Each channel's state and the newest deliveries, as stockade-alerts reads them from
/// its tables.
pub async fn alerts_view(
    store: &stockade_store::Store,
    limit: i64,
) -> Result<(Vec<serde_json::Value>, Vec<serde_json::Value>), stockade_store::StoreError> {
    let channels = stockade_alerts::channel_statuses(store).await?;
    let channels = channels.iter().map(|c| {
        json!({
            "name": c.name, "kind": c.kind, "status": c.status,
            "last_error": c.last_error, "last_ok_ms": c.last_ok_ms,
            "pending": c.pending, "held": c.held,
        })
    });
    let recent = stockade_alerts::recent_alerts(store, limit).await?;
    let recent = recent.iter().map(|r| {
        let a = &r.alert;
        json!({
            "id": r.id, "channel": r.channel, "state": r.state,
            "attempts": r.attempts, "events": r.events,
            "created_at_ms": r.created_at_ms, "sent_at_ms": r.sent_at_ms,
            "event_id": a.event_id, "severity": a.severity, "source": a.source,
            "kind": a.kind, "title": a.title, "facts": a.facts,
            "message": a.message, "count": a.count,
        })
    });
    Ok((channels.collect(), recent.collect()))
}

const ALERT_CURSOR: &str = "a1";
/// Alerts per page without `limit` (what the list held before it was paged).
pub const DEFAULT_ALERTS: i64 = 100;

/// The event id before which an alerts cursor continues.
pub fn alert_before(cursor: &str) -> Result<i64, AppError> {
    decode_cursor(ALERT_CURSOR, cursor)?
        .parse()
        .map_err(|_| bad_cursor())
}

pub fn alert_cursor(before: i64) -> String {
    encode_cursor(ALERT_CURSOR, &before.to_string())
}

/// The test-send both the API and the page use.
pub async fn send_test(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<AlertTestOutcome, AppError> {
    let not_found = || {
        AppError::refused(
            StatusCode::NOT_FOUND,
            "not_found",
            "no alert channel of that name is configured ([[alerts.channel]] in stockade.toml)",
        )
    };
    let tester = state.alert_test.as_ref().ok_or_else(not_found)?;
    tester
        .test(name, caller.actor())
        .await
        .map_err(|_| not_found())
}
