//! The retention clause's evidence (policy 002 §I: data kept only as long as needed): the
//! rules in force, and the last run recorded in this database with its counts per kind.
//!
//! Invariants: passes only when a run finished within twice the configured interval
//! (the job runs at a server's start and every `[retention] every`); no run, or an older
//! one, fails and says what to check. Evidence holds periods, a time and counts — never
//! row contents.

use stockade_retention::{Rules, show_period};
use stockade_server::compliance::{Arg, Check, Verdict};
use stockade_store::Store;

use super::{check, count, ev};

const POLICY: &str = "002 §I";

/// The rules in words: `kind period` pairs.
fn rules_text(r: &Rules) -> String {
    let p = r.buyer_pii;
    [
        ("buyer_pii.amazon", p.amazon_s),
        ("buyer_pii.ebay", p.ebay_s),
        ("buyer_pii.tiktok", p.tiktok_s),
        ("buyer_pii.undelivered", p.undelivered_s),
        ("workflow_executions", r.workflow_executions_s),
        ("jobs", r.jobs_s),
        ("egress_log", r.egress_log_s),
        ("events", r.events_s),
        ("alert_deliveries", r.alert_deliveries_s),
        ("sessions", r.sessions_s),
        ("bans", r.bans_s),
    ]
    .iter()
    .map(|(k, s)| format!("{k} {}", show_period(*s)))
    .collect::<Vec<_>>()
    .join(", ")
}

pub(super) async fn retention(store: &Store, rules: &Rules, now: i64) -> Result<Check, String> {
    let mut evidence = vec![ev("retention_rules", vec![Arg::Text(rules_text(rules))])];
    let last = store
        .last_retention_run()
        .await
        .map_err(|e| e.to_string())?;
    let every = Arg::Text(show_period(rules.every_s));
    let Some(run) = last else {
        evidence.push(ev("retention_none", vec![every]));
        return Ok(check("retention", POLICY, Verdict::Fail, evidence));
    };
    let counts = run
        .counts
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(", ");
    evidence.push(ev(
        "retention_last",
        vec![
            Arg::Time(run.finished_at_ms),
            count(run.removed),
            Arg::Text(counts),
        ],
    ));
    let fresh = now - run.finished_at_ms <= rules.every_s.saturating_mul(2000);
    if !fresh {
        evidence.push(ev("retention_stale", vec![every]));
    }
    let verdict = if fresh { Verdict::Pass } else { Verdict::Fail };
    Ok(check("retention", POLICY, verdict, evidence))
}
