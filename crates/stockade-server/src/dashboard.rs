//! What the alerts dashboard shows, read once for both `/alerts` (the page) and
//! `/api/v1/alerts` (JSON): each channel's state, the alert history, and the newest
//! deliveries, read through stockade-alerts (owner of those tables); only allow-listed,
//! already scrubbed fields leave here.

use serde_json::json;

/// Every alert, newest first, dated by its event's time, with where it went (each
/// channel's state, or "dashboard only" when no channel takes it).
pub async fn alert_history(
    store: &stockade_store::Store,
    limit: i64,
) -> Result<Vec<serde_json::Value>, stockade_store::StoreError> {
    let entries = stockade_alerts::alert_history(store, limit).await?;
    Ok(entries
        .iter()
        .map(|e| {
            let a = &e.alert;
            json!({
                "event_id": a.event_id, "at_ms": a.at_ms,
                "at": stockade_core::time::format_rfc3339_ms(a.at_ms),
                "severity": a.severity.to_string(), "source": a.source, "kind": a.kind,
                "title": a.title, "delivery": e.delivery_summary(),
            })
        })
        .collect())
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
