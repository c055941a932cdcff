//! The NocoDB-mirror clause's evidence: is the audit mirror configured, how far behind is
//! each sink (rows and seconds, from `audit_mirror_state` and the chain), and its last
//! error while it is failing.
//!
//! Verdict: pass when a NocoDB sink is configured, has run, is not failing and is behind
//! by less than the alert threshold; fail when none is configured or it is failing or
//! that far behind. Evidence holds the sink's name, counts, times and the mirror's own
//! error text (which never holds a token).

use stockade_mirror::{MirrorConfig, SINK_NOCODB};
use stockade_server::compliance::{Arg, Check, Verdict};
use stockade_store::Store;

use super::{check, ev};

const POLICY: &str = "000 §3, 001 §3";

pub(super) async fn mirror(store: &Store, cfg: &MirrorConfig) -> Result<Check, String> {
    if cfg.nocodb.is_none() {
        return Ok(check(
            "mirror",
            POLICY,
            Verdict::Fail,
            vec![ev("mirror_off", vec![])],
        ));
    }
    let sinks = stockade_mirror::status(store)
        .await
        .map_err(|e| e.to_string())?;
    let Some(s) = sinks.iter().find(|s| s.state.sink == SINK_NOCODB) else {
        let evidence = vec![ev("mirror_never", vec![Arg::Text(SINK_NOCODB.into())])];
        return Ok(check("mirror", POLICY, Verdict::Fail, evidence));
    };
    let alert_after = i64::try_from(cfg.alert_after.as_secs()).unwrap_or(i64::MAX);
    let mut evidence = vec![ev(
        "mirror_lag",
        vec![
            Arg::Text(SINK_NOCODB.into()),
            Arg::Count(s.lag_rows),
            Arg::Count(s.lag_seconds),
            s.state.acked_at_ms.map_or(Arg::Text("—".into()), Arg::Time),
        ],
    )];
    let failing = s.state.failing_since_ms;
    if let (Some(since), Some(err)) = (failing, &s.state.last_error) {
        evidence.push(ev(
            "mirror_error",
            vec![Arg::Time(since), Arg::Text(err.chars().take(300).collect())],
        ));
    }
    let ok = failing.is_none() && s.lag_seconds < alert_after;
    let verdict = if ok { Verdict::Pass } else { Verdict::Fail };
    Ok(check("mirror", POLICY, verdict, evidence))
}
