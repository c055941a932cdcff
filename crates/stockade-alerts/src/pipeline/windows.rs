//! Aggregation windows: repeats of one alert key fold into its open window.
//!
//! When a window closes with folded repeats, one follow-up per channel says how many and
//! since when; the window reopens, so a failure that goes on produces one message per
//! window, not one per event. A window that closed without repeats ends quietly. Windows
//! live in `alert_windows`, so a restart neither loses a count nor repeats a message.

use std::collections::HashMap;

use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, Store, sql_params};

use super::router::outbox_steps;
use super::{ACTOR, Inner, Result, lock, ms, now_ms};
use crate::model::{Alert, StoredAlert};

pub(super) struct Window {
    pub(super) opened_at_ms: i64,
    pub(super) closes_at_ms: i64,
    pub(super) folded: i64,
    pub(super) alert: Alert,
    pub(super) dirty: bool,
}

/// The follow-up of a window that folded repeats.
pub(super) fn follow_up(w: &Window) -> Alert {
    let mut a = w.alert.clone();
    a.count = w.folded;
    a.since_ms = Some(w.opened_at_ms);
    a
}

pub(super) async fn load_windows(store: &Store) -> Result<HashMap<String, Window>> {
    let rows: Vec<WindowRow> = store
        .query_as(
            "SELECT key, opened_at_ms, closes_at_ms, folded, alert FROM alert_windows",
            vec![],
        )
        .await?;
    let windows = rows
        .into_iter()
        .filter_map(|(key, opened, closes, folded, alert)| {
            Some((key, Window::new(opened, closes, folded, alert.0?)))
        });
    Ok(windows.collect())
}

/// A stored window: key, opened_at_ms, closes_at_ms, folded, alert.
type WindowRow = (String, i64, i64, i64, StoredAlert);

impl Window {
    fn new(opened_at_ms: i64, closes_at_ms: i64, folded: i64, alert: Alert) -> Window {
        Window {
            opened_at_ms,
            closes_at_ms,
            folded,
            alert,
            dirty: false,
        }
    }
}

pub(super) const UPSERT_WINDOW: &str = "INSERT INTO alert_windows (key, opened_at_ms, closes_at_ms, folded, alert) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (key) DO UPDATE SET opened_at_ms = excluded.opened_at_ms, closes_at_ms = excluded.closes_at_ms,
        folded = excluded.folded, alert = excluded.alert";

/// Close due windows: a follow-up for those that folded repeats (and reopen them), a
/// quiet end for the others. Returns when the next window closes. Under `grant` (the
/// router's lease), the commit is refused whole if another process took routing over.
pub(super) async fn flush_windows(
    inner: &Inner,
    grant: Option<&stockade_store::Grant>,
) -> Result<Option<i64>> {
    let now = now_ms();
    let due: Vec<WindowRow> = inner
        .store
        .query_as(
            "SELECT key, opened_at_ms, closes_at_ms, folded, alert FROM alert_windows WHERE closes_at_ms <= $1 ORDER BY closes_at_ms LIMIT 200",
            sql_params![now],
        )
        .await?;
    if !due.is_empty() {
        let window_ms = ms(inner.config.window);
        let mut steps: Vec<Mutation> = grant
            .map(stockade_store::Grant::fence)
            .into_iter()
            .collect();
        let mut followups = 0u64;
        let windows = i64::try_from(due.len()).unwrap_or(0);
        for (key, opened, closes, folded, StoredAlert(alert)) in due {
            match alert {
                Some(alert) if folded > 0 => {
                    let w = Window::new(opened, closes, folded, alert);
                    followups += outbox_steps(&inner.config, &follow_up(&w), now, &mut steps);
                    steps.push(Mutation::Sql {
                        statement: "UPDATE alert_windows SET opened_at_ms = $2, closes_at_ms = $3, folded = 0 WHERE key = $1 AND closes_at_ms = $4",
                        params: sql_params![key, now, now + window_ms, closes],
                        expect: Expect::One("alert window"),
                    });
                }
                _ => steps.push(Mutation::Sql {
                    statement: "DELETE FROM alert_windows WHERE key = $1 AND closes_at_ms = $2",
                    params: sql_params![key, closes],
                    expect: Expect::One("alert window"),
                }),
            }
        }
        inner
            .store
            .commit(
                &ACTOR,
                vec![Change::new(
                    Mutation::Many {
                        steps,
                        guard: false,
                    },
                    AuditEntry::new(
                        "alert.windows.close",
                        "alerts",
                        AuditDetails::new()
                            .int("windows", windows)
                            .int("outbox", i64::try_from(followups).unwrap_or(0)),
                    ),
                )],
            )
            .await?;
        lock(&inner.stats).outbox_rows += followups;
        if followups > 0 {
            for ch in &inner.channels {
                ch.wake.notify_one();
            }
        }
    }
    let next = inner
        .store
        .query_one_as("SELECT MIN(closes_at_ms) FROM alert_windows", vec![])
        .await?;
    Ok(next.flatten())
}
