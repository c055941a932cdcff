//! The `[retention]` section of stockade.toml: how long each kind of data is kept, how
//! often the job runs and how many rows each of its transactions removes, resolved onto
//! `stockade_retention::Rules` and checked.
//!
//! Invariants: one setting per kind. The older keys `[workflows] retention`,
//! `[egress] log_retention` and `[sync] pii_retention` still work as the names of
//! `retention.workflow_executions`, `retention.egress_log` and all three
//! `retention.buyer_pii.*`; setting both names of one thing is refused. `retention.audit`
//! under a year is refused (audit rows are never deleted); Amazon's buyer PII over 30 days
//! is refused (its Data Protection Policy's limit). Every choice is recorded for
//! `stockade config` with its source.

use serde::Deserialize;
use stockade_core::time::parse_duration_secs;
use stockade_retention::{Rules, check_audit, show_period};

use crate::AppError;

/// `[retention]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetentionFileConfig {
    every: Option<String>,
    batch: Option<i64>,
    #[serde(default)]
    buyer_pii: PiiFileConfig,
    workflow_executions: Option<String>,
    jobs: Option<String>,
    egress_log: Option<String>,
    events: Option<String>,
    alert_deliveries: Option<String>,
    sessions: Option<String>,
    bans: Option<String>,
    audit: Option<String>,
}

/// `[retention.buyer_pii]`: per marketplace, after delivery.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PiiFileConfig {
    amazon: Option<String>,
    ebay: Option<String>,
    tiktok: Option<String>,
    undelivered: Option<String>,
}

/// The older keys that now name retention settings.
pub(super) struct Legacy<'a> {
    pub workflows_retention: &'a Option<String>,
    pub egress_log_retention: &'a Option<String>,
    pub sync_pii_retention: &'a Option<String>,
}

/// Amazon's Data Protection Policy: buyer PII at most 30 days after delivery.
const AMAZON_MAX_S: i64 = 30 * 86_400;

type Provenance = Vec<(&'static str, String, &'static str)>;

/// A positive period `name = text`, or the default; refuses "never".
fn period(name: &str, text: Option<&str>, default: i64) -> Result<i64, AppError> {
    match text {
        None => Ok(default),
        Some(t) => match parse_duration_secs(t) {
            Ok(Some(s)) => Ok(s),
            _ => Err(AppError::config(format!(
                "{name} must be a duration such as 30d, 12h or 2w (not never)"
            ))),
        },
    }
}

/// One setting that may also be set under its older name.
fn aliased<'a>(
    name: &str,
    new: &'a Option<String>,
    old_name: &str,
    old: &'a Option<String>,
) -> Result<(Option<&'a str>, &'static str), AppError> {
    match (new, old) {
        (Some(_), Some(_)) => Err(AppError::config(format!(
            "{name} and {old_name} set the same thing: keep {name} and remove {old_name}"
        ))),
        (Some(t), None) => Ok((Some(t.as_str()), "config file")),
        (None, Some(t)) => Ok((Some(t.as_str()), "config file (older name)")),
        (None, None) => Ok((None, "default")),
    }
}

pub(super) fn retention_settings(
    f: &RetentionFileConfig,
    legacy: Legacy<'_>,
    provenance: &mut Provenance,
) -> Result<Rules, AppError> {
    let d = Rules::default();
    let mut r = Rules::default();
    let src = |set: bool| if set { "config file" } else { "default" };
    let mut push = |key: &'static str, s: i64, from: &'static str| {
        provenance.push((key, show_period(s), from));
    };
    r.every_s = period("retention.every", f.every.as_deref(), d.every_s)?;
    if !(60..=86_400).contains(&r.every_s) {
        return Err(AppError::config(
            "retention.every must be from 1m to 1d (e.g. \"1h\")",
        ));
    }
    push("retention.every", r.every_s, src(f.every.is_some()));
    r.batch = f.batch.unwrap_or(d.batch);
    if !(1..=stockade_store::jobs::MAX_BATCH).contains(&r.batch) {
        return Err(AppError::config(format!(
            "retention.batch must be a number of rows from 1 to {}",
            stockade_store::jobs::MAX_BATCH
        )));
    }
    provenance.push((
        "retention.batch",
        r.batch.to_string(),
        src(f.batch.is_some()),
    ));
    pii(&f.buyer_pii, legacy.sync_pii_retention, &mut r, provenance)?;
    let (text, from) = aliased(
        "retention.workflow_executions",
        &f.workflow_executions,
        "workflows.retention",
        legacy.workflows_retention,
    )?;
    r.workflow_executions_s = period(
        "retention.workflow_executions",
        text,
        d.workflow_executions_s,
    )?;
    let (log_text, log_from) = aliased(
        "retention.egress_log",
        &f.egress_log,
        "egress.log_retention",
        legacy.egress_log_retention,
    )?;
    r.egress_log_s = period("retention.egress_log", log_text, d.egress_log_s)?;
    r.jobs_s = period("retention.jobs", f.jobs.as_deref(), d.jobs_s)?;
    r.events_s = period("retention.events", f.events.as_deref(), d.events_s)?;
    r.alert_deliveries_s = period(
        "retention.alert_deliveries",
        f.alert_deliveries.as_deref(),
        d.alert_deliveries_s,
    )?;
    r.sessions_s = period("retention.sessions", f.sessions.as_deref(), d.sessions_s)?;
    r.bans_s = period("retention.bans", f.bans.as_deref(), d.bans_s)?;
    let mut push = |key: &'static str, s: i64, from: &'static str| {
        provenance.push((key, show_period(s), from));
    };
    push(
        "retention.workflow_executions",
        r.workflow_executions_s,
        from,
    );
    push("retention.jobs", r.jobs_s, src(f.jobs.is_some()));
    push("retention.egress_log", r.egress_log_s, log_from);
    push("retention.events", r.events_s, src(f.events.is_some()));
    push(
        "retention.alert_deliveries",
        r.alert_deliveries_s,
        src(f.alert_deliveries.is_some()),
    );
    push(
        "retention.sessions",
        r.sessions_s,
        src(f.sessions.is_some()),
    );
    push("retention.bans", r.bans_s, src(f.bans.is_some()));
    let audit_s = match f.audit.as_deref() {
        None => None,
        Some(t) => parse_duration_secs(t).map_err(|_| {
            AppError::config("retention.audit must be \"never\" (audit rows are never deleted)")
        })?,
    };
    r.audit = check_audit(audit_s).map_err(|e| AppError::config(e.to_string()))?;
    provenance.push(("retention.audit", "never".into(), src(f.audit.is_some())));
    Ok(r)
}

/// Make the older settings' holders (the workflow engine's own prune, the egress log
/// writer's own prune) use the retention rules, and show each value once, under its
/// `retention.` name.
pub(super) fn unify(
    rules: &Rules,
    workflows: &mut super::WorkflowSettings,
    egress: &mut super::EgressSettings,
    provenance: &mut Provenance,
) {
    workflows.retention_s = rules.workflow_executions_s;
    egress.log_retention =
        std::time::Duration::from_secs(u64::try_from(rules.egress_log_s).unwrap_or(u64::MAX));
    provenance.retain(|(k, _, _)| *k != "workflows.retention" && *k != "egress.log_retention");
}

/// `[retention.buyer_pii]`, or `[sync] pii_retention` for all three marketplaces.
fn pii(
    f: &PiiFileConfig,
    legacy: &Option<String>,
    r: &mut Rules,
    provenance: &mut Provenance,
) -> Result<(), AppError> {
    let any_new = f.amazon.is_some() || f.ebay.is_some() || f.tiktok.is_some();
    if any_new && legacy.is_some() {
        return Err(AppError::config(
            "retention.buyer_pii and sync.pii_retention set the same thing: keep [retention.buyer_pii] and remove sync.pii_retention",
        ));
    }
    let d = r.buyer_pii;
    let one = |name: &'static str, text: &Option<String>, default: i64| {
        let (text, from) = match (text, legacy) {
            (Some(t), _) => (Some(t.as_str()), "config file"),
            (None, Some(t)) => (Some(t.as_str()), "config file (sync.pii_retention)"),
            (None, None) => (None, "default"),
        };
        Ok::<_, AppError>((period(name, text, default)?, from))
    };
    let (amazon, a_from) = one("retention.buyer_pii.amazon", &f.amazon, d.amazon_s)?;
    if amazon > AMAZON_MAX_S {
        return Err(AppError::config(
            "retention.buyer_pii.amazon must be at most 30d: Amazon's Data Protection Policy allows buyer data for at most 30 days after delivery (keep archives the law requires outside Stockade)",
        ));
    }
    let (ebay, e_from) = one("retention.buyer_pii.ebay", &f.ebay, d.ebay_s)?;
    let (tiktok, t_from) = one("retention.buyer_pii.tiktok", &f.tiktok, d.tiktok_s)?;
    let undelivered = period(
        "retention.buyer_pii.undelivered",
        f.undelivered.as_deref(),
        d.undelivered_s,
    )?;
    r.buyer_pii = stockade_retention::PiiRules {
        amazon_s: amazon,
        ebay_s: ebay,
        tiktok_s: tiktok,
        undelivered_s: undelivered,
    };
    for (key, s, from) in [
        ("retention.buyer_pii.amazon", amazon, a_from),
        ("retention.buyer_pii.ebay", ebay, e_from),
        ("retention.buyer_pii.tiktok", tiktok, t_from),
        (
            "retention.buyer_pii.undelivered",
            undelivered,
            if f.undelivered.is_some() {
                "config file"
            } else {
                "default"
            },
        ),
    ] {
        provenance.push((key, show_period(s), from));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, legacy: Legacy<'_>) -> Result<Rules, AppError> {
        let f: RetentionFileConfig = toml::from_str(text).unwrap();
        retention_settings(&f, legacy, &mut Vec::new())
    }

    const NONE: Legacy<'static> = Legacy {
        workflows_retention: &None,
        egress_log_retention: &None,
        sync_pii_retention: &None,
    };

    #[test]
    fn defaults_are_the_documented_ones() {
        let r = parse("", NONE).unwrap();
        assert_eq!(r, Rules::default());
        assert_eq!(r.buyer_pii.amazon_s, 30 * 86_400);
        assert_eq!(r.workflow_executions_s, 14 * 86_400);
        assert_eq!(r.every_s, 3_600);
        assert_eq!(r.batch, 1_000);
    }

    #[test]
    fn audit_under_a_year_is_refused_naming_the_fix() {
        let e = parse("audit = \"90d\"", NONE).unwrap_err().to_string();
        assert!(e.contains("retention.audit") && e.contains("365d"), "{e}");
        assert!(parse("audit = \"never\"", NONE).is_ok());
    }

    #[test]
    fn older_keys_still_work_and_both_names_are_refused() {
        let old = Some("20d".to_owned());
        let legacy = Legacy {
            workflows_retention: &old,
            egress_log_retention: &old,
            sync_pii_retention: &old,
        };
        let r = parse("", legacy).unwrap();
        assert_eq!(r.workflow_executions_s, 20 * 86_400);
        assert_eq!(r.egress_log_s, 20 * 86_400);
        assert_eq!(r.buyer_pii.ebay_s, 20 * 86_400);
        let both = Legacy {
            workflows_retention: &old,
            ..NONE
        };
        let e = parse("workflow_executions = \"14d\"", both)
            .unwrap_err()
            .to_string();
        assert!(e.contains("remove workflows.retention"), "{e}");
    }

    #[test]
    fn amazon_over_thirty_days_is_refused() {
        let e = parse("[buyer_pii]\namazon = \"45d\"", NONE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 30d"), "{e}");
        let e = parse("batch = 0", NONE).unwrap_err().to_string();
        assert!(e.contains("retention.batch"), "{e}");
    }
}
