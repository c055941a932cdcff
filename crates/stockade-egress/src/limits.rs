//! Token buckets, the per-host circuit breaker and daily quotas. All state is in memory
//! and per process.

use std::time::{Duration, Instant};

/// The longest a caller is made to wait for one token.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A token bucket that lends tokens ahead: a caller that finds it empty reserves the
/// next token and is told how long to wait for it, so waiting callers are served in order.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

/// A usable (rate per second, burst), or `None` when the rate is not a positive number.
pub(crate) fn valid_rate(rate: f64, burst: u32) -> Option<(f64, f64)> {
    (rate.is_finite() && rate > 0.0).then(|| (rate, f64::from(burst.max(1))))
}

impl Bucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Apply a changed definition, keeping the tokens already earned.
    pub fn redefine(&mut self, rate: f64, burst: f64) {
        if self.rate != rate || self.burst != burst {
            self.rate = rate;
            self.burst = burst;
            self.tokens = self.tokens.min(burst);
        }
    }

    /// The tokens there would be at `now` (negative: reserved ahead by waiting
    /// callers) and the burst, without taking one.
    pub fn peek(&self, now: Instant) -> (f64, f64) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (
            (self.tokens + elapsed * self.rate).min(self.burst),
            self.burst,
        )
    }

    /// Take one token; the time to wait before using it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(-self.tokens / self.rate)
            .unwrap_or(MAX_WAIT)
            .min(MAX_WAIT)
    }
}

/// Consecutive failures open the breaker for a cool-down; then one probe request is let
/// through, and its result closes or re-opens it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    probe_since: Option<Instant>,
}

impl Breaker {
    /// Whether a request may go now.
    pub fn admit(&mut self, now: Instant, cooldown: Duration) -> bool {
        match self.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) => match self.probe_since {
                // A probe is in flight; a probe that never reported back (its caller gave
                // up) stops blocking after another cool-down.
                Some(since) if now.saturating_duration_since(since) < cooldown => false,
                _ => {
                    self.probe_since = Some(now);
                    true
                }
            },
        }
    }

    /// Record a request's result: `true` when the host answered (any status but 5xx).
    pub fn record(&mut self, ok: bool, now: Instant, threshold: u32, cooldown: Duration) {
        if ok {
            *self = Breaker::default();
            return;
        }
        self.failures = self.failures.saturating_add(1);
        if self.probe_since.is_some() || self.failures >= threshold.max(1) {
            self.open_until = Some(now + cooldown);
            self.probe_since = None;
        }
    }

    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    /// Whether requests are held off at `now` (open and cooling down).
    pub fn blocking(&self, now: Instant) -> bool {
        self.open_until.is_some_and(|until| now < until)
    }
}

/// Counters that reset at midnight UTC.
#[derive(Debug, Default)]
pub(crate) struct Daily {
    day: i64,
    counts: std::collections::HashMap<(&'static str, String), u32>,
}

impl Daily {
    fn roll(&mut self, now_ms: i64) {
        let day = now_ms.div_euclid(86_400_000);
        if day != self.day {
            self.day = day;
            self.counts.clear();
        }
    }

    pub fn take(&mut self, now_ms: i64, quota: &'static str, key: &str, limit: u32) -> bool {
        self.roll(now_ms);
        let count = self.counts.entry((quota, key.to_owned())).or_insert(0);
        if *count < limit {
            *count += 1;
            true
        } else {
            false
        }
    }

    /// Today's count of `key` is at least `used`.
    pub fn seed(&mut self, now_ms: i64, quota: &'static str, key: &str, used: u32) {
        self.roll(now_ms);
        let count = self.counts.entry((quota, key.to_owned())).or_insert(0);
        *count = (*count).max(used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_spacing() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 2.0, t0);
        assert_eq!(b.reserve(t0), Duration::ZERO);
        assert_eq!(b.reserve(t0), Duration::ZERO);
        let w = b.reserve(t0);
        assert!((w.as_secs_f64() - 0.1).abs() < 1e-6, "{w:?}");
        let w = b.reserve(t0);
        assert!((w.as_secs_f64() - 0.2).abs() < 1e-6, "{w:?}");
        // After a long idle time the bucket refills to its burst, not beyond.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.reserve(later), Duration::ZERO);
        assert_eq!(b.reserve(later), Duration::ZERO);
        assert!(b.reserve(later) > Duration::ZERO);
        assert!(valid_rate(0.0, 1).is_none());
        assert!(valid_rate(f64::NAN, 1).is_none());
        assert_eq!(valid_rate(0.5, 0), Some((0.5, 1.0)));
        let mut slow = Bucket::new(1e-300, 1.0, t0);
        slow.reserve(t0);
        assert_eq!(slow.reserve(t0), MAX_WAIT);
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let cd = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..2 {
            assert!(b.admit(t0, cd));
            b.record(false, t0, 3, cd);
        }
        assert!(!b.is_open());
        b.record(false, t0, 3, cd);
        assert!(b.is_open());
        assert!(!b.admit(t0 + Duration::from_secs(29), cd));
        let t1 = t0 + Duration::from_secs(31);
        assert!(b.admit(t1, cd), "one probe");
        assert!(!b.admit(t1, cd), "only one probe");
        b.record(false, t1, 3, cd);
        assert!(
            !b.admit(t1 + Duration::from_secs(1), cd),
            "failed probe re-opens"
        );
        let t2 = t1 + Duration::from_secs(31);
        assert!(b.admit(t2, cd));
        b.record(true, t2, 3, cd);
        assert!(!b.is_open());
        assert!(b.admit(t2, cd));
    }

    #[test]
    fn daily_quota_resets_at_utc_midnight() {
        let mut d = Daily::default();
        let day = 20_000 * 86_400_000_i64;
        assert!(d.take(day, "q", "a", 2));
        assert!(d.take(day + 1, "q", "a", 2));
        assert!(!d.take(day + 2, "q", "a", 2));
        assert!(d.take(day + 2, "q", "b", 2), "keys are separate");
        assert!(d.take(day + 2, "other", "a", 2), "quotas are separate");
        assert!(d.take(day + 86_400_000, "q", "a", 2), "next UTC day");
    }

    #[test]
    fn a_seeded_count_is_spent_already() {
        let mut d = Daily::default();
        let day = 20_000 * 86_400_000_i64;
        assert!(d.take(day, "q", "a", 3));
        // The seed is the whole day's count (this process's own takes included).
        d.seed(day, "q", "a", 2);
        assert!(d.take(day, "q", "a", 3));
        assert!(
            !d.take(day, "q", "a", 3),
            "2 counted before, 1 more: none left"
        );
        d.seed(day, "q", "b", 1);
        d.seed(day, "q", "b", 0);
        assert!(
            d.take(day, "q", "b", 2),
            "a lower seed keeps the higher count"
        );
        assert!(!d.take(day, "q", "b", 2));
        d.seed(day, "q", "c", 5);
        assert!(
            d.take(day + 86_400_000, "q", "c", 1),
            "next UTC day: from zero"
        );
    }
}
