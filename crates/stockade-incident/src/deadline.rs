//! Notification deadlines, counted from detection (the open time, or `--detected-at`).
//!
//! - Amazon: the Data Protection Policy requires notice within 24 hours of detecting an
//!   incident (published).
//! - TikTok Shop and eBay publish no deadline that could be confirmed: Amazon's 24 hours
//!   is applied to them as the strictest known, and marked as such.
//! - Clients: the company's policy promises timely notice; 24 hours is applied.
//!
//! A drill has no deadline (nothing is sent to anyone for a drill).

use serde::Serialize;

use crate::model::{Incident, Notice, Party};

/// Hours from detection to the notice, for every party.
pub const NOTIFY_WITHIN_H: i64 = 24;
const HOUR_MS: i64 = 3_600_000;

/// Where a party's deadline comes from.
pub fn basis(party: Party) -> &'static str {
    match party {
        Party::Amazon => "Amazon Data Protection Policy: notify within 24 h of detection",
        Party::TikTok | Party::Ebay => {
            "no published deadline: Amazon's 24 h applied as the strictest known"
        }
        Party::Clients => "company policy (timely notification): 24 h applied",
    }
}

/// Where one party's notice stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeadlineState {
    /// Not notified yet, time left.
    Pending { left_ms: i64 },
    /// Not notified, the deadline passed.
    Overdue { by_ms: i64 },
    /// Notified in time.
    Met { notified_at_ms: i64 },
    /// Notified after the deadline.
    Late { notified_at_ms: i64, by_ms: i64 },
    /// A drill: nothing is due.
    Drill,
}

/// One party's notification deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deadline {
    pub party: Party,
    pub due_at_ms: i64,
    pub within_h: i64,
    pub basis: &'static str,
    pub state: DeadlineState,
}

impl Deadline {
    /// Whether it was (or, still pending, can still be) met.
    pub fn met(&self) -> Option<bool> {
        match self.state {
            DeadlineState::Met { .. } => Some(true),
            DeadlineState::Late { .. } | DeadlineState::Overdue { .. } => Some(false),
            DeadlineState::Pending { .. } | DeadlineState::Drill => None,
        }
    }

    /// `Amazon: notify within 24 h — 23 h 12 m left` and the like (times in UTC).
    pub fn line(&self) -> String {
        let head = format!("{}: notify within {} h", self.party.label(), self.within_h);
        let tail = match self.state {
            DeadlineState::Pending { left_ms } => format!("{} left", span(left_ms)),
            DeadlineState::Overdue { by_ms } => format!("overdue by {}", span(by_ms)),
            DeadlineState::Met { notified_at_ms } => format!(
                "notified at {} (in time)",
                stockade_core::time::format_rfc3339_s(notified_at_ms)
            ),
            DeadlineState::Late {
                notified_at_ms,
                by_ms,
            } => format!(
                "notified at {} (late by {})",
                stockade_core::time::format_rfc3339_s(notified_at_ms),
                span(by_ms)
            ),
            DeadlineState::Drill => "drill: nothing is due".to_owned(),
        };
        let mark = match self.party {
            Party::TikTok | Party::Ebay => " [no published deadline; Amazon's 24 h applied]",
            _ => "",
        };
        format!("{head} — {tail}{mark}")
    }
}

/// `23 h 12 m`, `5 m`, `2 d 3 h`.
pub fn span(ms: i64) -> String {
    let m = ms.max(0) / 60_000;
    let (d, h, m) = (m / 1440, (m / 60) % 24, m % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} m")
    } else {
        format!("{m} m")
    }
}

/// Every party's deadline for `incident`, given the notices recorded, as of `now_ms`.
pub fn deadlines(incident: &Incident, notices: &[Notice], now_ms: i64) -> Vec<Deadline> {
    Party::ALL
        .into_iter()
        .map(|party| {
            let due = incident
                .detected_at_ms
                .saturating_add(NOTIFY_WITHIN_H * HOUR_MS);
            let notified = notices
                .iter()
                .find(|n| n.party == party.as_str())
                .map(|n| n.notified_at_ms);
            let state = match notified {
                _ if incident.drill => DeadlineState::Drill,
                Some(at) if at <= due => DeadlineState::Met { notified_at_ms: at },
                Some(at) => DeadlineState::Late {
                    notified_at_ms: at,
                    by_ms: at - due,
                },
                None if now_ms <= due => DeadlineState::Pending {
                    left_ms: due - now_ms,
                },
                None => DeadlineState::Overdue {
                    by_ms: now_ms - due,
                },
            };
            Deadline {
                party,
                due_at_ms: due,
                within_h: NOTIFY_WITHIN_H,
                basis: basis(party),
                state,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(detected: i64, drill: bool) -> Incident {
        Incident {
            id: 1,
            title: "t".into(),
            severity: "high".into(),
            drill,
            detected_at_ms: detected,
            opened_at_ms: detected,
            opened_by: "system:cli".into(),
            closed_at_ms: None,
            closed_by: None,
            root_cause: None,
        }
    }

    #[test]
    fn twenty_four_hours_from_detection_pending_overdue_met_late() {
        let t0 = 1_700_000_000_000;
        let inc = incident(t0, false);
        let at = t0 + 48 * 60_000; // 48 minutes later
        let d = deadlines(&inc, &[], at);
        assert_eq!(d[0].party, Party::Amazon);
        assert_eq!(d[0].due_at_ms, t0 + 24 * HOUR_MS);
        assert_eq!(d[0].line(), "Amazon: notify within 24 h — 23 h 12 m left");
        assert!(d[1].line().contains("no published deadline"));
        let late = deadlines(&inc, &[], t0 + 25 * HOUR_MS + 5 * 60_000);
        assert_eq!(
            late[0].state,
            DeadlineState::Overdue {
                by_ms: HOUR_MS + 300_000
            }
        );
        assert!(
            late[0].line().ends_with("overdue by 1 h 5 m"),
            "{}",
            late[0].line()
        );
        let n = Notice {
            party: "amazon".into(),
            notified_at_ms: t0 + 3 * HOUR_MS,
            actor: "system:cli".into(),
            note: "sent".into(),
        };
        let met = deadlines(&inc, std::slice::from_ref(&n), t0 + 30 * HOUR_MS);
        assert_eq!(met[0].met(), Some(true));
        assert!(met[0].line().contains("notified at"));
        assert_eq!(met[2].met(), Some(false), "eBay not notified: overdue");
        let drill = deadlines(&incident(t0, true), &[], t0 + 30 * HOUR_MS);
        assert!(drill.iter().all(|d| d.state == DeadlineState::Drill));
    }
}
