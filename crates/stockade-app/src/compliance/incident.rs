//! The incident-response clause (policies 000 §5, 001 §5, 002 §III): evidence that the
//! plan is exercised — the last drill or real incident closed with every step of the
//! plan (open, revoke, isolate, lockdown, release, close) on its timeline — plus the
//! incidents still open and the notification rule applied.
//!
//! Verdict: pass when such an exercise closed within the last six months (Amazon's Data
//! Protection Policy reviews the plan every six months); fail otherwise, naming what is
//! missing. Evidence holds times, ids, counts and step names only.

use stockade_server::compliance::{Arg, Check, Verdict};
use stockade_store::Store;

use super::{check, count, ev};

const POLICY: &str = "000 §5, 001 §5, 002 §III";

/// The incident-response clause, gathered now. The integrator's entry point:
/// `incident::incident(store, now).await?` in the clause list.
pub async fn incident(store: &Store, now: i64) -> Result<Check, String> {
    let last = stockade_incident::last_exercise(store)
        .await
        .map_err(|e| e.to_string())?;
    let open = store
        .count(
            "SELECT COUNT(*) FROM incidents WHERE closed_at_ms IS NULL AND drill = 0",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut evidence = Vec::new();
    let ok = match &last {
        Some(e) => {
            let kind = if e.drill { "drill" } else { "incident" };
            evidence.push(ev(
                "incident_last",
                vec![
                    Arg::Text(kind.into()),
                    count(e.incident_id),
                    Arg::Time(e.closed_at_ms),
                    Arg::Text(e.steps.join(", ")),
                ],
            ));
            if !e.passed {
                evidence.push(ev(
                    "incident_incomplete",
                    vec![Arg::Text(e.missing.join(", "))],
                ));
            }
            let stale = e.stale(now);
            if stale {
                evidence.push(ev(
                    "incident_stale",
                    vec![count((now - e.closed_at_ms).max(0) / 86_400_000)],
                ));
            }
            e.passed && !stale
        }
        None => {
            evidence.push(ev("incident_none", vec![]));
            false
        }
    };
    if open > 0 {
        evidence.push(ev("incident_open", vec![count(open)]));
    }
    evidence.push(ev("incident_rule", vec![]));
    let verdict = if ok { Verdict::Pass } else { Verdict::Fail };
    Ok(check("incident", POLICY, verdict, evidence))
}
