//! Per-account throttle: a distributed attack on one account (many addresses, each under
//! the ban threshold) slows down instead of getting unlimited guesses.
//!
//! After `maxretry` failures for one account within `findtime`, attempts on it are
//! refused without checking anything for `delay`, which doubles with each block (capped
//! at `maxdelay`). Keyed by the normalised email, whether or not the account exists, so
//! the throttle does not reveal which accounts exist. NIST 800-63B limits consecutive
//! failures on one account to at most 100; the defaults allow 10 per 15 minutes.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub maxretry: u32,
    pub findtime: i64,
    pub delay: i64,
    pub maxdelay: i64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            maxretry: 10,
            findtime: 900,
            delay: 30,
            maxdelay: 900,
        }
    }
}

#[derive(Debug, Default)]
struct Account {
    failures: VecDeque<i64>,
    blocked_until: i64,
    level: u32,
}

#[derive(Debug, Default)]
pub struct AccountThrottle {
    policy: ThrottlePolicy,
    accounts: HashMap<String, Account>,
}

impl AccountThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        AccountThrottle {
            policy,
            accounts: HashMap::new(),
        }
    }

    /// Seconds until `account` may try again, if it is throttled now.
    pub fn retry_after(&self, account: &str, now: i64) -> Option<i64> {
        self.accounts
            .get(account)
            .filter(|a| a.blocked_until > now)
            .map(|a| a.blocked_until - now)
    }

    /// Count a failure. Returns the block length when this failure starts a block.
    pub fn record_failure(&mut self, account: &str, now: i64) -> Option<i64> {
        let p = self.policy;
        if self.accounts.len() > 100_000 {
            self.prune(now);
        }
        let a = self.accounts.entry(account.to_owned()).or_default();
        a.failures.retain(|t| now - *t < p.findtime);
        a.failures.push_back(now);
        if (a.failures.len() as u32) < p.maxretry {
            return None;
        }
        let delay = p
            .delay
            .saturating_mul(1i64 << a.level.min(20))
            .min(p.maxdelay);
        a.level += 1;
        a.failures.clear();
        a.blocked_until = now + delay;
        Some(delay)
    }

    /// A successful sign-in clears the account's record.
    pub fn record_success(&mut self, account: &str) {
        self.accounts.remove(account);
    }

    pub fn prune(&mut self, now: i64) {
        let p = self.policy;
        self.accounts.retain(|_, a| {
            a.blocked_until > now
                || a.failures
                    .back()
                    .is_some_and(|t| now - *t < p.findtime.max(p.maxdelay))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_maxretry_and_doubles() {
        let mut t = AccountThrottle::new(ThrottlePolicy::default());
        for i in 0..9 {
            assert_eq!(t.record_failure("a@x", 100 + i), None);
        }
        assert_eq!(t.record_failure("a@x", 110), Some(30));
        assert_eq!(t.retry_after("a@x", 111), Some(29));
        assert_eq!(t.retry_after("b@x", 111), None);
        assert_eq!(t.retry_after("a@x", 140), None);
        for i in 0..10 {
            t.record_failure("a@x", 200 + i);
        }
        assert_eq!(t.retry_after("a@x", 209), Some(60));
        t.record_success("a@x");
        assert_eq!(t.retry_after("a@x", 210), None);
    }

    #[test]
    fn old_failures_fall_out_of_the_window() {
        let mut t = AccountThrottle::new(ThrottlePolicy::default());
        for i in 0..9 {
            t.record_failure("a@x", i * 200);
        }
        assert_eq!(t.retry_after("a@x", 2000), None);
    }
}
