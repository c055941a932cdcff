//! The Amazon Data Protection Policy items that apply to a self-hosted seller (the
//! reference's §4.1 table): each row cites the policy clauses whose evidence it rests on
//! (their verdicts, not a second copy of their code) and adds its own facts — the
//! buyer-data role, reveals, the access review, the purge of revoked sellers, the PII
//! retention period and the log retention.
//!
//! Verdict of a row: fail if its own facts or a cited clause fail; else cannot check if a
//! cited clause cannot be checked; else pass (not applicable only when everything cited
//! is). Evidence holds counts, periods, times and role names.

use stockade_access::{PERMISSIONS, Permission, Role};
use stockade_retention::{Rules, show_period};
use stockade_server::compliance::{Arg, Check, Evidence, Verdict};
use stockade_store::{Store, sql_params};

use super::{count, ev};

const DAY_S: i64 = 86_400;
/// The DPP's log retention minimum.
pub const LOG_MIN_DAYS: i64 = 90;
/// The DPP's PII retention maximum after delivery.
pub const PII_MAX_DAYS: i64 = 30;
/// An access review is due every quarter (with a week's grace).
const REVIEW_DAYS: i64 = 92 + 7;

const REVEALS: &str =
    "SELECT COUNT(*) FROM audit WHERE action = 'order.reveal_buyer' AND ts_ms >= $1";
const LAST_SIGNED: &str = "SELECT MAX(ts_ms) FROM audit WHERE action = 'compliance.report_signed'";
const REVOKED_HOLDING: &str = "SELECT COUNT(*) FROM orders o JOIN connections c ON c.id = o.connection_id
     WHERE c.revoked_at_ms IS NOT NULL AND o.pii_deleted_at_ms IS NULL
       AND (o.buyer_name IS NOT NULL OR o.buyer_email IS NOT NULL OR o.buyer_phone IS NOT NULL OR o.buyer_address IS NOT NULL)";
const REVOKED: &str = "SELECT COUNT(*) FROM connections WHERE revoked_at_ms IS NOT NULL";
const SHREDDED: &str = "SELECT COUNT(*) FROM keyring_data_keys WHERE destroyed_at_ms IS NOT NULL";

/// What the DPP rows need beyond the clause checks.
#[derive(Debug)]
pub(super) struct Facts<'a> {
    pub store: &'a Store,
    pub rules: &'a Rules,
    /// Active users' roles.
    pub roles: Vec<Role>,
    pub now: i64,
}

/// A row being built: its own facts' verdict and evidence.
struct Row {
    id: &'static str,
    policy: &'static str,
    rests_on: &'static [&'static str],
    own_fail: bool,
    evidence: Vec<Evidence>,
}

impl Row {
    fn new(id: &'static str, policy: &'static str, rests_on: &'static [&'static str]) -> Row {
        Row {
            id,
            policy,
            rests_on,
            own_fail: false,
            evidence: Vec::new(),
        }
    }
    fn fact(mut self, ok: bool, key: &'static str, args: Vec<Arg>) -> Row {
        self.own_fail |= !ok;
        self.evidence.push(ev(key, args));
        self
    }
    fn info(mut self, key: &'static str, args: Vec<Arg>) -> Row {
        self.evidence.push(ev(key, args));
        self
    }
    fn finish(self, clauses: &[Check]) -> Check {
        let cited: Vec<&Check> = self
            .rests_on
            .iter()
            .filter_map(|id| clauses.iter().find(|c| c.id == *id))
            .collect();
        let shown = cited
            .iter()
            .map(|c| format!("{} ({})", c.id, c.verdict.code()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut evidence = vec![ev("dpp_rests_on", vec![Arg::Text(shown)])];
        evidence.extend(self.evidence);
        let any = |v: Verdict| cited.iter().any(|c| c.verdict == v);
        let verdict = if self.own_fail || any(Verdict::Fail) {
            Verdict::Fail
        } else if any(Verdict::CannotCheck) {
            Verdict::CannotCheck
        } else if !cited.is_empty()
            && cited.iter().all(|c| c.verdict == Verdict::NotApplicable)
            && evidence.len() == 1
        {
            Verdict::NotApplicable
        } else {
            Verdict::Pass
        };
        Check {
            id: self.id,
            policy: self.policy,
            verdict,
            evidence,
        }
    }
}

/// The DPP rows, from the policy clauses' checks and the extra facts.
pub(super) async fn rows(clauses: &[Check], f: &Facts<'_>) -> Result<Vec<Check>, String> {
    let q = |sql: &'static str, params| async move {
        f.store.count(sql, params).await.map_err(|e| e.to_string())
    };
    let reveal_roles: Vec<&str> = PERMISSIONS
        .iter()
        .filter(|(p, _)| *p == Permission::RevealBuyer)
        .flat_map(|(_, roles)| roles.iter().map(|r| r.as_str()))
        .collect();
    let admins = f.roles.iter().filter(|r| **r == Role::Admin).count();
    let reveals = q(REVEALS, sql_params![f.now - LOG_MIN_DAYS * DAY_S * 1000]).await?;
    let last_signed: Option<i64> = f
        .store
        .query_one_as::<Option<i64>>(LAST_SIGNED, vec![])
        .await
        .map_err(|e| e.to_string())?
        .flatten();
    let revoked = q(REVOKED, vec![]).await?;
    let revoked_holding = q(REVOKED_HOLDING, vec![]).await?;
    let shredded = q(SHREDDED, vec![]).await?;
    let by_role = stockade_access::ROLES
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.as_str(),
                f.roles.iter().filter(|x| *x == r).count()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let p = f.rules.buyer_pii;
    let pii_max = [p.amazon_s, p.ebay_s, p.tiktok_s];
    let amazon_ok = p.amazon_s <= PII_MAX_DAYS * DAY_S;
    let logs_ok =
        f.rules.egress_log_s >= LOG_MIN_DAYS * DAY_S && f.rules.events_s >= LOG_MIN_DAYS * DAY_S;
    let review_ok = last_signed.is_some_and(|t| f.now - t <= REVIEW_DAYS * DAY_S * 1000);

    let rows = vec![
        Row::new(
            "dpp_network",
            "DPP network",
            &["host_firewall", "host_fail2ban", "bans", "egress"],
        ),
        Row::new(
            "dpp_access",
            "DPP access mgmt",
            &["mfa", "bans", "idle_lock"],
        )
        .info("dpp_users", vec![count(f.roles.len()), Arg::Text(by_role)])
        .fact(
            review_ok,
            match last_signed {
                Some(_) if review_ok => "dpp_review_last",
                Some(_) => "dpp_review_old",
                None => "dpp_review_none",
            },
            last_signed.map(Arg::Time).into_iter().collect(),
        ),
        Row::new(
            "dpp_least_privilege",
            "DPP least privilege",
            &["review", "egress", "isolation"],
        )
        .fact(
            reveal_roles == ["admin"],
            "dpp_reveal_role",
            vec![Arg::Text(reveal_roles.join(", ")), count(admins)],
        )
        .info(
            "dpp_reveals",
            vec![Arg::Count(reveals), count(LOG_MIN_DAYS)],
        ),
        Row::new(
            "dpp_credentials",
            "DPP credentials",
            &["password", "mfa", "review"],
        )
        .info("dpp_pw_rotation", vec![]),
        Row::new("dpp_transit", "DPP in transit", &["tls"]),
        Row::new(
            "dpp_incident",
            "DPP incident response",
            &["incident", "alerts"],
        ),
        Row::new("dpp_deletion", "DPP deletion on request", &["retention"]).fact(
            revoked_holding == 0,
            "dpp_revoked",
            vec![
                Arg::Count(revoked),
                Arg::Count(revoked_holding),
                Arg::Count(shredded),
            ],
        ),
        Row::new("dpp_retention", "DPP PII retention", &["retention"]).fact(
            amazon_ok,
            if amazon_ok {
                "dpp_pii_period"
            } else {
                "dpp_pii_period_long"
            },
            vec![
                Arg::Text(show_period(p.amazon_s)),
                count(PII_MAX_DAYS),
                Arg::Text(show_period(pii_max.into_iter().max().unwrap_or(0))),
                Arg::Text(show_period(p.undelivered_s)),
            ],
        ),
        Row::new(
            "dpp_at_rest",
            "DPP at rest",
            &["pii", "pii_scan", "backups"],
        ),
        Row::new(
            "dpp_logging",
            "DPP logging",
            &["audit", "mirror", "alerts", "pii_scan"],
        )
        .fact(
            logs_ok,
            if logs_ok {
                "dpp_log_retention"
            } else {
                "dpp_log_retention_short"
            },
            vec![
                Arg::Text(show_period(f.rules.egress_log_s)),
                Arg::Text(show_period(f.rules.events_s)),
                count(LOG_MIN_DAYS),
            ],
        ),
    ];
    Ok(rows.into_iter().map(|r| r.finish(clauses)).collect())
}
