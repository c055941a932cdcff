//! The ban guard: Fail2Ban's semantics over authentication failures.
//!
//! - `maxretry` failures from one address within `findtime` ban it for `bantime`
//!   (negative `bantime` = permanent). The window is an exact sliding window; Fail2Ban
//!   rescales its counter by rate instead, which bans at the same point for bursts.
//! - Growing bans (`bantime.increment`): the n-th ban of an address lasts
//!   `bantime × multipliers[n-1]` (the last multiplier repeats), or by default
//!   `bantime × 2^(n-1) × factor`, never below `bantime` and capped at `maxtime`.
//! - A known offender's failures count more: `(2^bans)/2 + 1` each, capped at `maxretry`,
//!   so it is banned again sooner (Fail2Ban's observer does the same).
//! - Recidive: `recidive_maxretry` bans within `recidive_findtime` give a long ban
//!   (`recidive_bantime`, default one week).
//! - Addresses in `ignoreip` (single addresses or CIDR ranges) are never counted.
//! - Jails ([`Jail`], [`Jails`]): as in Fail2Ban, failures of different kinds are counted
//!   in separate jails, each with its own policy, and a jail's ban blocks only what that
//!   jail guards. Staff sign-in failures (passwords, codes, API keys) fill the
//!   `interactive` jail, which guards everything but the webhook routes; bad webhook
//!   signatures fill the `webhook` jail, which guards only the webhook routes. A ban by
//!   hand blocks everything.
//!
//! The guard is pure state over explicit times (Unix seconds), so callers persist its
//! bans and tests need no clock.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use stockade_core::codec::Ipv4Net;
/// An address or CIDR range, e.g. `10.0.0.0/8`, `::1`, `127.0.0.1/8`: parse one with
/// [`parse_ip_net`] (a bare address is its one-address network).
pub use stockade_core::codec::{IpNet, parse_ip_net};

/// A Fail2Ban jail: which failures count together, and which routes its bans block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Jail {
    /// Passwords, TOTP and recovery codes, API keys; blocks every route but the webhooks.
    Interactive,
    /// Webhook signatures; blocks only the webhook routes.
    Webhook,
}

impl Jail {
    pub const ALL: [Jail; 2] = [Jail::Interactive, Jail::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Jail::Interactive => "interactive",
            Jail::Webhook => "webhook",
        }
    }

    pub fn parse(text: &str) -> Option<Jail> {
        Jail::ALL.into_iter().find(|j| j.as_str() == text)
    }

    /// The jail guarding a request path: the webhook routes, or everything else.
    pub fn for_path(path: &str) -> Jail {
        if path.starts_with("/hooks/") {
            Jail::Webhook
        } else {
            Jail::Interactive
        }
    }
}

impl std::fmt::Display for Jail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fail2Ban's `ignoreip` example and `ignoreself`: the loopback addresses.
pub fn loopback_nets() -> Vec<IpNet> {
    vec![
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 1), 8)),
        IpNet::from(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]
}

/// Ban policy, with Fail2Ban's option names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct BanPolicy {
    pub maxretry: u32,
    pub findtime: i64,
    pub bantime: i64,
    pub increment: bool,
    pub factor: f64,
    pub multipliers: Vec<i64>,
    pub maxtime: i64,
    pub ignoreip: Vec<IpNet>,
    pub recidive_maxretry: u32,
    pub recidive_findtime: i64,
    pub recidive_bantime: i64,
}

impl Default for BanPolicy {
    fn default() -> Self {
        BanPolicy {
            maxretry: 5,
            findtime: 600,
            bantime: 600,
            increment: true,
            factor: 1.0,
            multipliers: Vec::new(),
            maxtime: 7 * 86_400,
            ignoreip: Vec::new(),
            recidive_maxretry: 5,
            recidive_findtime: 86_400,
            recidive_bantime: 7 * 86_400,
        }
    }
}

impl BanPolicy {
    /// The webhook jail's defaults: marketplaces retry a delivery several times, so a
    /// little more room than Fail2Ban's 5 before a ban.
    pub fn webhook_default() -> Self {
        BanPolicy {
            maxretry: 10,
            ..BanPolicy::default()
        }
    }
}

/// A ban the guard imposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub ip: IpAddr,
    pub since: i64,
    /// `None` for a permanent ban.
    pub until: Option<i64>,
    /// How many times this address has been banned, this one included.
    pub count: u32,
    pub recidive: bool,
}

/// What a recorded failure led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureOutcome {
    /// The address is on the ignore list.
    Ignored,
    /// Counted; `retries` of `maxretry` within `findtime`.
    Counted { retries: u32 },
    /// The address is now banned.
    Banned(Ban),
    /// The address was already banned; nothing changed.
    AlreadyBanned,
}

#[derive(Debug, Default)]
struct Record {
    failures: VecDeque<(i64, u32)>,
    ban_times: Vec<i64>,
    active: Option<Ban>,
}

/// The ban state of all addresses.
#[derive(Debug, Default)]
pub struct BanGuard {
    policy: BanPolicy,
    records: HashMap<IpAddr, Record>,
}

impl BanGuard {
    pub fn new(policy: BanPolicy) -> Self {
        BanGuard {
            policy,
            records: HashMap::new(),
        }
    }

    pub fn policy(&self) -> &BanPolicy {
        &self.policy
    }

    /// The active ban of `ip` at `now`, if any. Cheap: one hash lookup.
    pub fn banned(&self, ip: IpAddr, now: i64) -> Option<&Ban> {
        self.records
            .get(&ip)?
            .active
            .as_ref()
            .filter(|b| b.until.is_none_or(|u| now < u))
    }

    fn ignored(&self, ip: IpAddr) -> bool {
        self.policy.ignoreip.iter().any(|n| n.contains(&ip))
    }

    fn ban_duration(&self, previous_bans: u32) -> Option<i64> {
        let p = &self.policy;
        if p.bantime < 0 {
            return None;
        }
        if !p.increment || previous_bans == 0 {
            return Some(p.bantime);
        }
        let scaled = if p.multipliers.is_empty() {
            let m = 1i64 << previous_bans.min(20);
            (p.bantime as f64 * m as f64 * p.factor) as i64
        } else {
            let i = (previous_bans as usize).min(p.multipliers.len()) - 1;
            p.bantime.saturating_mul(p.multipliers[i])
        };
        Some(scaled.max(p.bantime).min(p.maxtime.max(p.bantime)))
    }

    /// Record one failure (wrong password, wrong code, bad key, bad signature) at `now`.
    pub fn record_failure(&mut self, ip: IpAddr, now: i64) -> FailureOutcome {
        if self.ignored(ip) {
            return FailureOutcome::Ignored;
        }
        if self.banned(ip, now).is_some() {
            return FailureOutcome::AlreadyBanned;
        }
        let policy = self.policy.clone();
        let record = self.records.entry(ip).or_default();
        record
            .ban_times
            .retain(|t| now - *t < policy.recidive_findtime.max(policy.maxtime));
        record.failures.retain(|(t, _)| now - *t < policy.findtime);
        let bans = record.ban_times.len() as u32;
        let weight = if bans == 0 {
            1
        } else {
            ((1u32 << bans.min(20)) / 2 + 1).min(policy.maxretry)
        };
        record.failures.push_back((now, weight));
        let retries: u32 = record.failures.iter().map(|(_, w)| *w).sum();
        if retries < policy.maxretry {
            return FailureOutcome::Counted { retries };
        }
        let recent_bans = record
            .ban_times
            .iter()
            .filter(|t| now - **t < policy.recidive_findtime)
            .count() as u32;
        let recidive = recent_bans + 1 >= policy.recidive_maxretry;
        let previous = bans;
        let duration = if recidive {
            Some(policy.recidive_bantime)
        } else {
            self.ban_duration(previous)
        };
        let record = self.records.entry(ip).or_default();
        record.failures.clear();
        record.ban_times.push(now);
        let ban = Ban {
            ip,
            since: now,
            until: duration.map(|d| now + d),
            count: previous + 1,
            recidive,
        };
        record.active = Some(ban.clone());
        FailureOutcome::Banned(ban)
    }

    /// Ban an address by hand (`stockade ban add`).
    pub fn ban(&mut self, ip: IpAddr, now: i64, duration: Option<i64>) -> Ban {
        let record = self.records.entry(ip).or_default();
        record.ban_times.push(now);
        let ban = Ban {
            ip,
            since: now,
            until: duration.map(|d| now + d),
            count: record.ban_times.len() as u32,
            recidive: false,
        };
        record.active = Some(ban.clone());
        ban
    }

    /// Lift a ban (`stockade ban remove`). Returns whether there was one.
    pub fn unban(&mut self, ip: IpAddr) -> bool {
        self.records
            .get_mut(&ip)
            .and_then(|r| r.active.take())
            .is_some()
    }

    /// Restore a persisted ban after a restart.
    pub fn restore(&mut self, ban: Ban) {
        let record = self.records.entry(ban.ip).or_default();
        record.ban_times.push(ban.since);
        record.active = Some(ban);
    }

    /// Load the persisted ban history (sorted by time; `true` = still in force): after a
    /// restart, and periodically to pick up bans other processes added or lifted.
    /// Failure counters are kept; a ban imposed here within the last `grace` seconds that
    /// the history does not show yet (it is being written) stays in force.
    pub fn load_bans(&mut self, history: Vec<(Ban, bool)>, now: i64, grace: i64) {
        let mut fresh: Vec<Ban> = Vec::new();
        for r in self.records.values_mut() {
            if let Some(b) = r.active.take()
                && now - b.since <= grace
            {
                fresh.push(b);
            }
            r.ban_times.clear();
        }
        for (ban, active) in history {
            fresh.retain(|f| !(f.ip == ban.ip && f.since == ban.since));
            let r = self.records.entry(ban.ip).or_default();
            r.ban_times.push(ban.since);
            if active {
                r.active = Some(ban);
            }
        }
        for ban in fresh {
            let r = self.records.entry(ban.ip).or_default();
            r.ban_times.push(ban.since);
            r.active = Some(ban);
        }
        self.records
            .retain(|_, r| !r.failures.is_empty() || !r.ban_times.is_empty());
    }

    /// Forget failure counters older than `findtime` (housekeeping).
    pub fn prune(&mut self, now: i64) {
        let findtime = self.policy.findtime;
        for r in self.records.values_mut() {
            r.failures.retain(|(t, _)| now - *t < findtime);
        }
        self.records
            .retain(|_, r| !r.failures.is_empty() || !r.ban_times.is_empty());
    }

    /// Active bans at `now`.
    pub fn active(&self, now: i64) -> Vec<&Ban> {
        let mut bans: Vec<&Ban> = self
            .records
            .values()
            .filter_map(|r| r.active.as_ref())
            .filter(|b| b.until.is_none_or(|u| now < u))
            .collect();
        bans.sort_by_key(|b| b.since);
        bans
    }
}

/// One [`BanGuard`] per [`Jail`].
#[derive(Debug)]
pub struct Jails {
    interactive: BanGuard,
    webhook: BanGuard,
}

impl Jails {
    pub fn new(interactive: BanPolicy, webhook: BanPolicy) -> Self {
        Jails {
            interactive: BanGuard::new(interactive),
            webhook: BanGuard::new(webhook),
        }
    }

    pub fn get(&self, jail: Jail) -> &BanGuard {
        match jail {
            Jail::Interactive => &self.interactive,
            Jail::Webhook => &self.webhook,
        }
    }

    pub fn get_mut(&mut self, jail: Jail) -> &mut BanGuard {
        match jail {
            Jail::Interactive => &mut self.interactive,
            Jail::Webhook => &mut self.webhook,
        }
    }

    /// The active ban of `ip` in `jail` at `now`.
    pub fn banned(&self, ip: IpAddr, jail: Jail, now: i64) -> Option<&Ban> {
        self.get(jail).banned(ip, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn maxretry_within_findtime_bans_for_bantime() {
        let mut g = BanGuard::new(BanPolicy::default());
        let a = ip("203.0.113.7");
        for i in 0..4 {
            assert_eq!(
                g.record_failure(a, 100 + i),
                FailureOutcome::Counted {
                    retries: i as u32 + 1
                }
            );
        }
        let FailureOutcome::Banned(ban) = g.record_failure(a, 104) else {
            panic!("not banned")
        };
        assert_eq!((ban.since, ban.until, ban.count), (104, Some(704), 1));
        assert!(g.banned(a, 703).is_some());
        assert!(g.banned(a, 704).is_none(), "bans expire on time");
        assert!(
            g.banned(ip("203.0.113.8"), 300).is_none(),
            "other addresses are unaffected"
        );
        assert_eq!(g.record_failure(a, 200), FailureOutcome::AlreadyBanned);
    }

    #[test]
    fn failures_outside_findtime_do_not_count() {
        let mut g = BanGuard::new(BanPolicy::default());
        let a = ip("198.51.100.1");
        for i in 0..20 {
            // One failure every 200 s: never 5 within 600 s.
            assert!(
                matches!(g.record_failure(a, i * 200), FailureOutcome::Counted { retries } if retries <= 3)
            );
        }
    }

    #[test]
    fn repeat_offenders_get_growing_bans_and_count_faster() {
        let mut g = BanGuard::new(BanPolicy {
            maxtime: 3000,
            ..BanPolicy::default()
        });
        let a = ip("192.0.2.9");
        let mut now = 0;
        let mut durations = Vec::new();
        for _ in 0..4 {
            let mut attempts = 0;
            let ban = loop {
                attempts += 1;
                if let FailureOutcome::Banned(b) = g.record_failure(a, now) {
                    break b;
                }
                now += 1;
            };
            durations.push((ban.until.unwrap() - ban.since, attempts));
            now = ban.until.unwrap() + 1;
        }
        assert_eq!(
            durations.iter().map(|d| d.0).collect::<Vec<_>>(),
            vec![600, 1200, 2400, 3000]
        );
        assert_eq!(durations[0].1, 5);
        assert!(
            durations[1].1 < 5,
            "a known offender is re-banned sooner: {durations:?}"
        );
    }

    #[test]
    fn multipliers_replace_the_formula_and_negative_bantime_is_permanent() {
        let g = BanGuard::new(BanPolicy {
            multipliers: vec![1, 5, 30],
            ..BanPolicy::default()
        });
        assert_eq!(g.ban_duration(0), Some(600));
        assert_eq!(g.ban_duration(1), Some(600));
        assert_eq!(g.ban_duration(2), Some(3000));
        assert_eq!(g.ban_duration(9), Some(18000));
        let mut p = BanGuard::new(BanPolicy {
            bantime: -1,
            ..BanPolicy::default()
        });
        let a = ip("192.0.2.1");
        let ban = (0..5).find_map(|t| match p.record_failure(a, t) {
            FailureOutcome::Banned(b) => Some(b),
            _ => None,
        });
        assert_eq!(ban.unwrap().until, None);
        assert!(p.banned(a, i64::MAX - 1).is_some());
    }

    #[test]
    fn recidive_gives_the_long_ban() {
        let mut g = BanGuard::new(BanPolicy {
            increment: false,
            recidive_maxretry: 3,
            ..BanPolicy::default()
        });
        let a = ip("2001:db8::5");
        let mut now = 0;
        let mut last = None;
        for _ in 0..3 {
            let ban = loop {
                now += 1;
                if let FailureOutcome::Banned(b) = g.record_failure(a, now) {
                    break b;
                }
            };
            now = ban.until.unwrap();
            last = Some(ban);
        }
        let last = last.unwrap();
        assert!(last.recidive);
        assert_eq!(last.until.unwrap() - last.since, 7 * 86_400);
    }

    #[test]
    fn ignoreip_and_cidr() {
        let net = parse_ip_net("10.1.0.0/16").unwrap();
        assert!(
            net.contains(&ip("10.1.200.3"))
                && !net.contains(&ip("10.2.0.1"))
                && !net.contains(&ip("::1"))
        );
        assert!(
            parse_ip_net("127.0.0.1/8")
                .unwrap()
                .contains(&ip("127.9.9.9"))
        );
        assert!(parse_ip_net("::1").unwrap().contains(&ip("::1")));
        assert!(
            parse_ip_net("2001:db8::/32")
                .unwrap()
                .contains(&ip("2001:db8:ffff::1"))
        );
        assert!(parse_ip_net("10.0.0.0/33").is_none() && parse_ip_net("nope").is_none());
        let mut g = BanGuard::new(BanPolicy {
            ignoreip: vec![net],
            ..BanPolicy::default()
        });
        for t in 0..50 {
            assert_eq!(g.record_failure(ip("10.1.2.3"), t), FailureOutcome::Ignored);
        }
    }

    /// Regression: a marketplace posting bad signatures must not lock staff out, and staff
    /// typos must not stop deliveries: each jail counts and bans on its own.
    #[test]
    fn jails_count_and_ban_separately() {
        let mut jails = Jails::new(
            BanPolicy::default(),
            BanPolicy {
                maxretry: 3,
                ..BanPolicy::webhook_default()
            },
        );
        let a = ip("203.0.113.9");
        let mut banned_at = None;
        for t in 0..3 {
            if let FailureOutcome::Banned(_) = jails.get_mut(Jail::Webhook).record_failure(a, t) {
                banned_at = Some(t);
            }
        }
        assert_eq!(banned_at, Some(2), "the webhook jail's own maxretry");
        assert!(jails.banned(a, Jail::Webhook, 3).is_some());
        assert!(
            jails.banned(a, Jail::Interactive, 3).is_none(),
            "bad signatures do not lock staff out"
        );
        let b = ip("198.51.100.20");
        for t in 0..5 {
            jails.get_mut(Jail::Interactive).record_failure(b, t);
        }
        assert!(jails.banned(b, Jail::Interactive, 5).is_some());
        assert!(
            jails.banned(b, Jail::Webhook, 5).is_none(),
            "staff typos do not stop deliveries"
        );
        assert_eq!(Jail::for_path("/hooks/ebay/x"), Jail::Webhook);
        assert_eq!(Jail::for_path("/login"), Jail::Interactive);
        assert_eq!(Jail::for_path("/api/v1/whoami"), Jail::Interactive);
        assert_eq!(Jail::parse("webhook"), Some(Jail::Webhook));
        assert_eq!(BanPolicy::webhook_default().maxretry, 10);
    }

    #[test]
    fn loopback_is_the_default_ignore_list() {
        let mut g = BanGuard::new(BanPolicy {
            ignoreip: loopback_nets(),
            ..BanPolicy::default()
        });
        for t in 0..20 {
            for lo in ["127.0.0.1", "127.1.2.3", "::1"] {
                assert_eq!(g.record_failure(ip(lo), t), FailureOutcome::Ignored);
            }
        }
        assert!(matches!(
            g.record_failure(ip("192.0.2.77"), 0),
            FailureOutcome::Counted { retries: 1 }
        ));
    }

    #[test]
    fn manual_ban_unban_and_restore() {
        let mut g = BanGuard::new(BanPolicy::default());
        let a = ip("203.0.113.50");
        g.ban(a, 10, Some(100));
        assert_eq!(g.active(20).len(), 1);
        assert!(g.unban(a));
        assert!(g.banned(a, 20).is_none() && !g.unban(a));
        let mut restarted = BanGuard::new(BanPolicy::default());
        restarted.restore(Ban {
            ip: a,
            since: 10,
            until: Some(1000),
            count: 1,
            recidive: false,
        });
        assert!(restarted.banned(a, 500).is_some());
    }

    #[test]
    fn load_bans_follows_the_database_and_keeps_fresh_local_bans() {
        let mut g = BanGuard::new(BanPolicy::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        g.ban(a, 1000, Some(600));
        g.ban(c, 995, Some(600));
        let persisted_b = Ban {
            ip: b,
            since: 900,
            until: Some(2000),
            count: 1,
            recidive: false,
        };
        let persisted_a = Ban {
            ip: a,
            since: 1000,
            until: Some(1600),
            count: 1,
            recidive: false,
        };
        // a was lifted elsewhere; b was added elsewhere; c is local and 5 s old (being written).
        g.load_bans(vec![(persisted_b, true), (persisted_a, false)], 1000, 10);
        assert!(g.banned(a, 1001).is_none());
        assert!(g.banned(b, 1001).is_some());
        assert!(g.banned(c, 1001).is_some());
        // Past the grace period, a local ban the database does not know is dropped.
        g.load_bans(vec![], 1100, 10);
        assert!(g.banned(c, 1100).is_none());
        // History still counts towards growing bans: a's next ban is its second.
        let mut h = BanGuard::new(BanPolicy::default());
        h.load_bans(
            vec![(
                Ban {
                    ip: a,
                    since: 100,
                    until: Some(700),
                    count: 1,
                    recidive: false,
                },
                false,
            )],
            1000,
            10,
        );
        let mut outcome = FailureOutcome::Ignored;
        for t in 0..5 {
            outcome = h.record_failure(a, 1000 + t);
            if matches!(outcome, FailureOutcome::Banned(_)) {
                break;
            }
        }
        let FailureOutcome::Banned(ban) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(ban.count, 2);
        assert_eq!(
            ban.until.unwrap() - ban.since,
            1200,
            "second ban lasts twice bantime"
        );
    }
}
