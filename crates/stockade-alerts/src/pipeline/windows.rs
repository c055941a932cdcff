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
use crate::model::Alert;

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
    let rows = store
        .query(
            "SELECT key, opened_at_ms, closes_at_ms, folded, alert FROM alert_windows",
            vec![],
        )
        .await?;
    let mut map = HashMap::with_capacity(rows.len());
    for r in rows {
        let Ok(alert) = serde_json::from_str::<Alert>(&r.text(4)?) else {
            continue;
        };
        map.insert(
            r.text(0)?,
            Window {
                opened_at_ms: r.int(1)?,
                closes_at_ms: r.int(2)?,
                folded: r.int(3)?,
                alert,
                dirty: false,
            },
        );
    }
    Ok(map)
}

pub(super) const UPSERT_WINDOW: &str = "INSERT INTO alert_windows (key, opened_at_ms, closes_at_ms, folded, alert) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (key) DO UPDATE SET opened_at_ms = excluded.opened_at_ms, closes_at_ms = excluded.closes_at_ms,
        folded = excluded.folded, alert = excluded.alert";

/// Close due windows: a follow-up for those that folded repeats (and reopen them), a
/// quiet end for the others. Returns when the next window closes.
pub(super) async fn flush_windows(inner: &Inner) -> Result<Option<i64>> {
    let now = now_ms();
    let due = inner
        .store
        .query(
            "SELECT key, opened_at_ms, closes_at_ms, folded, alert FROM alert_windows WHERE closes_at_ms <= $1 ORDER BY closes_at_ms LIMIT 200",
            sql_params![now],
        )
        .await?;
    if !due.is_empty() {
        let window_ms = ms(inner.config.window);
        let mut steps = Vec::new();
        let mut followups = 0u64;
        for r in &due {
            let key = r.text(0)?;
            let closes = r.int(2)?;
            let folded = r.int(3)?;
            let alert = serde_json::from_str::<Alert>(&r.text(4)?).ok();
            match alert {
                Some(alert) if folded > 0 => {
                    let w = Window {
                        opened_at_ms: r.int(1)?,
                        closes_at_ms: closes,
                        folded,
                        alert,
                        dirty: false,
                    };
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
                            .int("windows", i64::try_from(due.len()).unwrap_or(0))
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
        .query_one("SELECT MIN(closes_at_ms) FROM alert_windows", vec![])
        .await?;
    Ok(next.and_then(|r| r.opt_int(0).ok().flatten()))
}
