//! The retention rules: per kind of data, how long it is kept and from which clock, with
//! the defaults and where each comes from; and the plan of one run (each rule's cutoff
//! at a given moment).
//!
//! Invariants: every period is positive; audit rows are never planned for deletion
//! ([`AuditRule`] has one value, and [`check_audit`] refuses a configured period under
//! a year with the reason); a plan is computed from one `now`, so a dry run and the run
//! that follows it at the same moment select the same rows.

use stockade_store::retention::Target;

/// Seconds in a day.
pub const DAY_S: i64 = 86_400;

/// Audit rows are kept at least this long (the policy's floor).
pub const AUDIT_MIN_S: i64 = 365 * DAY_S;

/// The job kind of workflow executions (`stockade-workflows`' `JOB_KIND`).
pub const WORKFLOW_JOB_KIND: &str = "workflow";

/// Buyer PII per marketplace, in seconds after the order's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiiRules {
    /// Amazon: the Data Protection Policy allows at most 30 days after delivery.
    pub amazon_s: i64,
    /// eBay: eBay itself withholds the email after 14 days, name/phone/street after 90.
    pub ebay_s: i64,
    /// TikTok Shop: no published period; the strictest of the other two (14 days).
    pub tiktok_s: i64,
    /// Orders never reported delivered (nor cancelled, nor returned): this long after
    /// their last status change.
    pub undelivered_s: i64,
}

impl Default for PiiRules {
    fn default() -> Self {
        PiiRules {
            amazon_s: 30 * DAY_S,
            ebay_s: 14 * DAY_S,
            tiktok_s: 14 * DAY_S,
            undelivered_s: 60 * DAY_S,
        }
    }
}

/// What happens to audit rows: kept for good (see [`check_audit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditRule {
    #[default]
    Never,
}

/// The rules in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// How often the job runs (default 1 hour).
    pub every_s: i64,
    /// Rows per deletion, each its own transaction (default 1000).
    pub batch: i64,
    pub buyer_pii: PiiRules,
    /// Finished workflow executions with their journal (default 14 days after finish).
    pub workflow_executions_s: i64,
    /// Other finished jobs (backups, mirror) and old schedule ticks (default 30 days).
    pub jobs_s: i64,
    /// The outbound request log (default 90 days: the DPP's log floor).
    pub egress_log_s: i64,
    /// Routed events (default 90 days; unrouted ones twice as long).
    pub events_s: i64,
    /// Finished alert deliveries (default 30 days).
    pub alert_deliveries_s: i64,
    /// Sessions after their expiry (default 1 day).
    pub sessions_s: i64,
    /// Bans after they ended (default 90 days).
    pub bans_s: i64,
    pub audit: AuditRule,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            every_s: 3_600,
            batch: 1_000,
            buyer_pii: PiiRules::default(),
            workflow_executions_s: 14 * DAY_S,
            jobs_s: 30 * DAY_S,
            egress_log_s: 90 * DAY_S,
            events_s: 90 * DAY_S,
            alert_deliveries_s: 30 * DAY_S,
            sessions_s: DAY_S,
            bans_s: 90 * DAY_S,
            audit: AuditRule::Never,
        }
    }
}

/// A configured audit period that is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditRefusal {
    #[error(
        "retention.audit: audit rows are kept at least a year (365d); remove the setting or set \"never\""
    )]
    UnderAYear,
    #[error(
        "retention.audit: audit rows are never deleted (the chain is verified from its first row, so removing the oldest would break verification); remove the setting or set \"never\""
    )]
    NotSupported,
}

/// Check a configured `retention.audit` period (`None` = "never").
pub fn check_audit(period_s: Option<i64>) -> Result<AuditRule, AuditRefusal> {
    match period_s {
        None => Ok(AuditRule::Never),
        Some(s) if s < AUDIT_MIN_S => Err(AuditRefusal::UnderAYear),
        Some(_) => Err(AuditRefusal::NotSupported),
    }
}

/// One rule's place in a run: its kind, its rule in words, its cutoff, its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Stable name (`buyer_pii.amazon`, `egress_log`, …): the audit row's key.
    pub kind: &'static str,
    pub rule: String,
    /// The moment before which rows go (ms since the epoch).
    pub cutoff_ms: i64,
    pub target: Target,
}

/// `30d`, `12h`, `90s`: a period in its largest whole unit.
pub fn show_period(s: i64) -> String {
    if s % DAY_S == 0 {
        format!("{}d", s / DAY_S)
    } else if s % 3_600 == 0 {
        format!("{}h", s / 3_600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

impl Rules {
    /// Every deleting rule with its cutoff at `now_ms`, in the order a run goes.
    pub fn plan(&self, now_ms: i64) -> Vec<Planned> {
        let at = |s: i64| now_ms.saturating_sub(s.saturating_mul(1000));
        let p = self.buyer_pii;
        let pii = |kind: &'static str, marketplace: &str, s: i64| Planned {
            kind,
            rule: format!(
                "buyer fields {} after delivery (undelivered: {} after the last status change)",
                show_period(s),
                show_period(p.undelivered_s)
            ),
            cutoff_ms: at(s),
            target: Target::BuyerPii {
                marketplace: marketplace.to_owned(),
                delivered_before_ms: at(s),
                undelivered_before_ms: at(p.undelivered_s),
            },
        };
        let simple = |kind: &'static str, what: &str, s: i64, target: Target| Planned {
            kind,
            rule: what.replace("{p}", &show_period(s)),
            cutoff_ms: at(s),
            target,
        };
        vec![
            pii("buyer_pii.amazon", "amazon", p.amazon_s),
            pii("buyer_pii.ebay", "ebay", p.ebay_s),
            pii("buyer_pii.tiktok", "tiktok", p.tiktok_s),
            simple(
                "workflow_executions",
                "finished executions and their journal, {p} after they finished",
                self.workflow_executions_s,
                Target::JobsOfKind {
                    kind: WORKFLOW_JOB_KIND.to_owned(),
                    before_ms: at(self.workflow_executions_s),
                },
            ),
            simple(
                "jobs",
                "other finished jobs and old schedule ticks, {p} after they finished",
                self.jobs_s,
                Target::OtherJobs {
                    except: WORKFLOW_JOB_KIND.to_owned(),
                    before_ms: at(self.jobs_s),
                },
            ),
            simple(
                "egress_log",
                "outbound request log rows, {p} after the request",
                self.egress_log_s,
                Target::EgressLog {
                    before_ms: at(self.egress_log_s),
                },
            ),
            simple(
                "events",
                "events {p} after they happened (not yet routed to alerts: twice as long)",
                self.events_s,
                Target::Events {
                    before_ms: at(self.events_s),
                    unrouted_before_ms: at(self.events_s.saturating_mul(2)),
                },
            ),
            simple(
                "alert_deliveries",
                "sent or held alert deliveries, {p} after they were created",
                self.alert_deliveries_s,
                Target::AlertDeliveries {
                    before_ms: at(self.alert_deliveries_s),
                },
            ),
            simple(
                "sessions",
                "sessions {p} after they expired",
                self.sessions_s,
                Target::Sessions {
                    before_ms: at(self.sessions_s),
                },
            ),
            simple(
                "bans",
                "bans {p} after they ended (permanent bans kept)",
                self.bans_s,
                Target::Bans {
                    before_s: at(self.bans_s) / 1000,
                },
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_under_a_year_is_refused_and_never_is_the_only_rule() {
        assert_eq!(check_audit(None), Ok(AuditRule::Never));
        assert_eq!(check_audit(Some(30 * DAY_S)), Err(AuditRefusal::UnderAYear));
        assert!(
            check_audit(Some(364 * DAY_S))
                .unwrap_err()
                .to_string()
                .contains("365d")
        );
        assert_eq!(
            check_audit(Some(400 * DAY_S)),
            Err(AuditRefusal::NotSupported)
        );
    }

    #[test]
    fn the_plan_takes_each_cutoff_from_one_moment() {
        let now = 1_000 * DAY_S * 1000;
        let plan = Rules::default().plan(now);
        let amazon = plan.iter().find(|p| p.kind == "buyer_pii.amazon").unwrap();
        assert_eq!(amazon.cutoff_ms, now - 30 * DAY_S * 1000);
        let egress = plan.iter().find(|p| p.kind == "egress_log").unwrap();
        assert_eq!(egress.cutoff_ms, now - 90 * DAY_S * 1000);
        assert_eq!(show_period(14 * DAY_S), "14d");
        assert_eq!(show_period(3_600), "1h");
    }
}
