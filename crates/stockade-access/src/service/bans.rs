//! Bans and failure recording: the persisted side of the ban guard ([`crate::ban`]) and
//! the account throttle ([`crate::throttle`]).
//!
//! Every authentication failure writes one stable log line (the one host-level Fail2Ban
//! matches), an audit row, and counts in its jail and against the account. A ban is
//! persisted and audited before the call that triggered it returns; bans added or lifted
//! elsewhere take effect on [`Access::refresh_bans`] (a server calls it periodically and,
//! on PostgreSQL, as soon as another process wakes `Topic::Bans` after a ban changed). An automatic ban blocks the routes
//! of its jail (`reason` = `auto:<jail>`), a ban by hand blocks every route.

use std::net::IpAddr;

use stockade_core::event::{BanRaised, Event};
use stockade_core::{Actor, clock::now_ms};
use stockade_store::{
    AuditDetails, AuditEntry, Change, Columns, Expect, FromRow, Mutation, sql_params,
};

use super::{Access, AccessError, Result, lock, random_hex, security_event};
use crate::ban::{Ban, FailureOutcome, Jail};

/// What failed, for the ban guard, the failure log line and the audit row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Password,
    Totp,
    RecoveryCode,
    ApiKey,
    WebhookSignature,
}

impl FailureKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::Password => "password",
            FailureKind::Totp => "totp",
            FailureKind::RecoveryCode => "recovery_code",
            FailureKind::ApiKey => "api_key",
            FailureKind::WebhookSignature => "webhook_signature",
        }
    }

    /// The jail this kind of failure is counted in.
    pub fn jail(&self) -> Jail {
        match self {
            FailureKind::WebhookSignature => Jail::Webhook,
            _ => Jail::Interactive,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanInfo {
    pub id: String,
    pub ip: IpAddr,
    pub since_s: i64,
    pub until_s: Option<i64>,
    pub count: u32,
    pub recidive: bool,
    pub reason: String,
    pub lifted_at_s: Option<i64>,
}

impl BanInfo {
    /// The jail whose routes this ban blocks; `None` for every route (a ban by hand, or
    /// one from before jails existed). Stored in `reason` as `auto:<jail>`.
    pub fn jail(&self) -> Option<Jail> {
        self.reason.strip_prefix("auto:").and_then(Jail::parse)
    }

    pub fn active_at(&self, now_s: i64) -> bool {
        self.lifted_at_s.is_none() && self.until_s.is_none_or(|u| now_s < u)
    }
}

/// Columns `id, ip, since_s, until_s, ban_count, recidive, reason, lifted_at_s` of `bans`.
impl FromRow for BanInfo {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(BanInfo {
            id: c.get()?,
            ip: c.parse("ban address")?,
            since_s: c.get()?,
            until_s: c.get()?,
            count: u32::try_from(c.get::<i64>()?).unwrap_or(u32::MAX),
            recidive: c.get()?,
            reason: c.get()?,
            lifted_at_s: c.get()?,
        })
    }
}

impl Access {
    /// The active ban of `ip` in `jail`, from memory (no I/O): the first check on every
    /// request (the jail of its route: [`Jail::for_path`]).
    pub fn banned(&self, ip: IpAddr, jail: Jail) -> Option<Ban> {
        lock(&self.guard).banned(ip, jail, now_ms() / 1000).cloned()
    }

    /// Record an authentication failure from `ip` (and against `account`, if known):
    /// one stable log line, an audit row, the ban guard and the account throttle. A ban
    /// it triggers is persisted and audited before this returns.
    pub async fn record_failure(
        &self,
        ip: IpAddr,
        kind: FailureKind,
        account: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<FailureOutcome> {
        let now_s = now_ms() / 1000;
        let jail = kind.jail();
        // The line host-level Fail2Ban matches (deploy/fail2ban/filter.d/stockade.conf).
        tracing::warn!(target: "stockade::auth", "authentication failure jail={} kind={} ip={}", jail, kind.as_str(), ip);
        let outcome = lock(&self.guard).get_mut(jail).record_failure(ip, now_s);
        if let Some(account) = account {
            lock(&self.throttle).record_failure(account, now_s);
        }
        let mut details = AuditDetails::new()
            .str("jail", jail.as_str())
            .str("kind", kind.as_str())
            .str("ip", &ip.to_string());
        if let FailureOutcome::Counted { retries } = outcome {
            details = details.int("retries", i64::from(retries));
        }
        let resource = user_id.map_or_else(|| "auth".to_owned(), |u| format!("user:{u}"));
        let mut changes = vec![Change::event(AuditEntry::new(
            "auth.failure",
            resource,
            details,
        ))];
        if let FailureOutcome::Banned(ban) = &outcome {
            changes.push(self.ban_change(ban, &format!("auto:{jail}"))?);
            tracing::warn!(
                target: "stockade::ban",
                "ban jail={} ip={} count={} recidive={} until={}",
                jail,
                ban.ip,
                ban.count,
                ban.recidive,
                ban.until.map_or_else(|| "never".to_owned(), |u| u.to_string())
            );
        }
        self.store.commit(&Actor::System("access"), changes).await?;
        if matches!(outcome, FailureOutcome::Banned(_)) {
            // The other processes refresh their bans now, not at their next period.
            self.store.wake(stockade_store::Topic::Bans).await;
            self.ban_telemetry
                .added
                .get_or_create(&super::JailLabels {
                    jail: jail.as_str(),
                })
                .inc();
        }
        Ok(outcome)
    }

    fn ban_change(&self, ban: &Ban, reason: &str) -> Result<Change> {
        let id = format!("ban_{}", random_hex(8)?);
        let mut details = AuditDetails::new()
            .str("ip", &ban.ip.to_string())
            .int("count", i64::from(ban.count))
            .bool("recidive", ban.recidive)
            .str("reason", reason);
        details = match ban.until {
            Some(u) => details.int("until_s", u),
            None => details.bool("permanent", true),
        };
        let event = Event::Ban(BanRaised {
            count: Some(i64::from(ban.count)),
            ip: Some(ban.ip.to_string()),
            permanent: ban.until.is_none().then_some(true),
            reason: Some(reason.to_owned()),
            recidive: ban.recidive,
            until_s: ban.until,
        });
        Ok(Change::new(
            Mutation::Many {
                steps: vec![
                    Mutation::Sql {
                        statement: "INSERT INTO bans (id, ip, since_s, until_s, ban_count, recidive, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        params: sql_params![
                            id.clone(),
                            ban.ip.to_string(),
                            ban.since,
                            ban.until,
                            i64::from(ban.count),
                            ban.recidive,
                            reason
                        ],
                        expect: Expect::One("ban insert"),
                    },
                    security_event(event),
                ],
                guard: false,
            },
            AuditEntry::new("ban.add", format!("ban:{id}"), details),
        ))
    }

    /// Reload bans from the database: bans other processes (or `stockade ban`) added or
    /// lifted take effect here.
    pub async fn refresh_bans(&self) -> Result<()> {
        let now_s = now_ms() / 1000;
        let horizon = [&self.config.ban, &self.config.webhook_ban]
            .iter()
            .map(|p| now_s - p.recidive_findtime.max(p.maxtime).max(p.bantime))
            .min()
            .unwrap_or(now_s);
        let rows: Vec<BanInfo> = self
            .store
            .query_as(
                "SELECT id, ip, since_s, until_s, ban_count, recidive, reason, lifted_at_s FROM bans
                 WHERE since_s >= $1 OR (lifted_at_s IS NULL AND (until_s IS NULL OR until_s > $2))
                 ORDER BY since_s, id",
                sql_params![horizon, now_s],
            )
            .await?;
        let mut history: [Vec<(Ban, bool)>; 2] = [Vec::new(), Vec::new()];
        for b in rows {
            let active = b.active_at(now_s);
            let ban = Ban {
                ip: b.ip,
                since: b.since_s,
                until: b.until_s,
                count: b.count,
                recidive: b.recidive,
            };
            for (i, jail) in Jail::ALL.into_iter().enumerate() {
                if b.jail().is_none_or(|j| j == jail) {
                    history[i].push((ban.clone(), active));
                }
            }
        }
        let mut jails = lock(&self.guard);
        for (jail, history) in Jail::ALL.into_iter().zip(history) {
            let guard = jails.get_mut(jail);
            guard.load_bans(history, now_s, 10);
            guard.prune(now_s);
        }
        drop(jails);
        lock(&self.throttle).prune(now_s);
        Ok(())
    }

    /// Bans, newest first; only those in force unless `all`.
    pub async fn bans(&self, all: bool) -> Result<Vec<BanInfo>> {
        let now_s = now_ms() / 1000;
        let rows: Vec<BanInfo> = self
            .store
            .query_as(
                "SELECT id, ip, since_s, until_s, ban_count, recidive, reason, lifted_at_s FROM bans ORDER BY since_s DESC, id",
                vec![],
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter(|b| all || b.active_at(now_s))
            .collect())
    }

    /// Ban an address by hand; `None` = permanent.
    pub async fn add_ban(
        &self,
        ip: IpAddr,
        duration_s: Option<i64>,
        actor: &Actor,
    ) -> Result<BanInfo> {
        let now_s = now_ms() / 1000;
        let previous = self
            .store
            .count(
                "SELECT COUNT(*) FROM bans WHERE ip = $1",
                sql_params![ip.to_string()],
            )
            .await?;
        let ban = Ban {
            ip,
            since: now_s,
            until: duration_s.map(|d| now_s + d),
            count: u32::try_from(previous + 1).unwrap_or(u32::MAX),
            recidive: false,
        };
        let change = self.ban_change(&ban, "manual")?;
        self.store.commit(actor, vec![change]).await?;
        self.store.wake(stockade_store::Topic::Bans).await;
        self.ban_telemetry
            .added
            .get_or_create(&super::JailLabels { jail: "all" })
            .inc();
        {
            let mut jails = lock(&self.guard);
            for jail in Jail::ALL {
                jails.get_mut(jail).ban(ip, now_s, duration_s);
            }
        }
        // Info, not warn: the command prints the ban itself; servers log their own bans.
        tracing::info!(target: "stockade::ban", "ban jail=all ip={} count={} recidive=false until={} reason=manual", ip, ban.count,
            ban.until.map_or_else(|| "never".to_owned(), |u| u.to_string()));
        Ok(self
            .bans(false)
            .await?
            .into_iter()
            .find(|b| b.ip == ip)
            .unwrap_or(BanInfo {
                id: String::new(),
                ip,
                since_s: now_s,
                until_s: ban.until,
                count: ban.count,
                recidive: false,
                reason: "manual".into(),
                lifted_at_s: None,
            }))
    }

    /// Lift every ban in force on `ip`.
    pub async fn remove_ban(&self, ip: IpAddr, actor: &Actor) -> Result<()> {
        let now_s = now_ms() / 1000;
        let active: Vec<BanInfo> = self
            .bans(false)
            .await?
            .into_iter()
            .filter(|b| b.ip == ip)
            .collect();
        if active.is_empty() && Jail::ALL.into_iter().all(|j| self.banned(ip, j).is_none()) {
            return Err(AccessError::NotBanned(ip));
        }
        let changes: Vec<Change> = active
            .iter()
            .map(|b| {
                Change::new(
                    Mutation::Sql {
                        statement: "UPDATE bans SET lifted_at_s = $2 WHERE id = $1 AND lifted_at_s IS NULL",
                        params: sql_params![b.id.clone(), now_s],
                        expect: Expect::One("active ban"),
                    },
                    AuditEntry::new(
                        "ban.remove",
                        format!("ban:{}", b.id),
                        AuditDetails::new().str("ip", &ip.to_string()),
                    ),
                )
            })
            .collect();
        if !changes.is_empty() {
            self.store.commit(actor, changes).await?;
            self.store.wake(stockade_store::Topic::Bans).await;
        }
        let mut jails = lock(&self.guard);
        for jail in Jail::ALL {
            jails.get_mut(jail).unban(ip);
        }
        Ok(())
    }
}
