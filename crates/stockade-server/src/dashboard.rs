//! What the alerts dashboard shows, read once for both `/alerts` (the page) and
//! `/api/v1/alerts` (JSON): each channel's state, the alert history, and the newest
//! deliveries. Read-only over the tables the alert pipeline writes; only allow-listed,
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

/// Read the alert tables (written by the alert pipeline) for the dashboard.
pub async fn alerts_view(
    store: &stockade_store::Store,
    limit: i64,
) -> Result<(Vec<serde_json::Value>, Vec<serde_json::Value>), stockade_store::StoreError> {
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
        channels.push(json!({
            "name": r.text(0)?, "kind": r.text(1)?, "status": r.text(2)?,
            "last_error": r.opt_text(3)?, "last_ok_ms": r.opt_int(4)?,
            "pending": r.int(5)?, "held": r.int(6)?,
        }));
    }
    let rows = store
        .query(
            "SELECT id, channel, state, attempts, events, created_at_ms, sent_at_ms, alert
               FROM alert_outbox ORDER BY id DESC LIMIT $1",
            stockade_store::sql_params![limit],
        )
        .await?;
    let mut recent = Vec::with_capacity(rows.len());
    for r in rows {
        let alert: serde_json::Value = serde_json::from_str(&r.text(7)?).unwrap_or_default();
        recent.push(json!({
            "id": r.int(0)?, "channel": r.text(1)?, "state": r.text(2)?,
            "attempts": r.int(3)?, "events": r.int(4)?,
            "created_at_ms": r.int(5)?, "sent_at_ms": r.opt_int(6)?,
            "event_id": alert.get("event_id"), "severity": alert.get("severity"),
            "source": alert.get("source"), "kind": alert.get("kind"),
            "title": alert.get("title"), "facts": alert.get("facts"),
            "message": alert.get("message"), "count": alert.get("count"),
        }));
    }
    Ok((channels, recent))
}
