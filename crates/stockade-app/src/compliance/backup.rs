//! The backups clause: evidence from the database — the last successful encrypted
//! backup (time and age), the schedule this instance runs (`[backup]`, recorded in
//! `stockade_meta` by the server), and the last successful restore drill.
//!
//! Verdict: pass when a schedule is on, the last backup is no older than twice its
//! interval (at least 2 days), and a restore drill has passed; fail otherwise, naming
//! what is missing. Evidence holds times and counts only.

use stockade_server::compliance::{Arg, Check, Verdict};
use stockade_store::Store;

use super::{check, count, ev};

const POLICY: &str = "000 §4";
const DAY_MS: i64 = 86_400_000;

/// The backups clause, gathered now.
pub async fn backups(store: &Store, now: i64) -> Result<Check, String> {
    let last = stockade_backup::record::last_ok(store, "create")
        .await
        .map_err(|e| e.to_string())?;
    let drill = stockade_backup::record::last_ok(store, "drill")
        .await
        .map_err(|e| e.to_string())?;
    let schedule = store
        .meta(stockade_backup::schedule::SCHEDULE_META)
        .await
        .map_err(|e| e.to_string())?
        .as_deref()
        .and_then(stockade_backup::schedule::parse_schedule);
    let mut evidence = Vec::new();
    let mut ok = true;
    let max_age_ms = schedule
        .map(|(every, _)| (every.as_millis() as i64).saturating_mul(2))
        .unwrap_or(0)
        .max(2 * DAY_MS);
    match &last {
        Some(b) => {
            let age_h = (now - b.created_at_ms).max(0) / 3_600_000;
            evidence.push(ev(
                "backup_last",
                vec![Arg::Time(b.created_at_ms), count(age_h)],
            ));
            if now - b.created_at_ms > max_age_ms {
                ok = false;
                evidence.push(ev("backup_stale", vec![count(max_age_ms / 3_600_000)]));
            }
        }
        None => {
            ok = false;
            evidence.push(ev("backup_none", vec![]));
        }
    }
    match schedule {
        Some((every, keep)) => evidence.push(ev(
            "backup_schedule",
            vec![count(every.as_secs() / 3600), count(keep)],
        )),
        None => {
            ok = false;
            evidence.push(ev("backup_unscheduled", vec![]));
        }
    }
    match &drill {
        Some(d) => evidence.push(ev("backup_drill", vec![Arg::Time(d.created_at_ms)])),
        None => {
            ok = false;
            evidence.push(ev("backup_no_drill", vec![]));
        }
    }
    let verdict = if ok { Verdict::Pass } else { Verdict::Fail };
    Ok(check("backups", POLICY, verdict, evidence))
}
