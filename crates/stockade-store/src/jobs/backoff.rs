//! Retry delays for jobs and steps: exponential backoff with jitter, so retries after a
//! shared failure (a marketplace outage) spread out instead of arriving together.
//! Pure arithmetic: never panics, saturates instead of overflowing.

/// Exponential backoff with jitter: attempt `n` (from 1) waits `base × factor^(n−1)`,
/// capped at `max`, less a random share of up to `jitter_percent` of it (so concurrent
/// retries spread out instead of arriving together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: i64,
    pub factor: i64,
    pub max_ms: i64,
    pub jitter_percent: i64,
}

impl Default for Backoff {
    /// 1 s, doubling, at most 5 min, up to 20 % jitter.
    fn default() -> Self {
        Backoff {
            base_ms: 1000,
            factor: 2,
            max_ms: 300_000,
            jitter_percent: 20,
        }
    }
}

impl Backoff {
    /// The delay after failed attempt `attempt` (from 1), with `random` choosing the
    /// jitter (any value; the same value gives the same delay).
    pub fn delay_ms_with(&self, attempt: i64, random: u64) -> i64 {
        let base = self.base_ms.max(0);
        let cap = self.max_ms.max(base);
        let mut delay = base;
        for _ in 1..attempt.clamp(1, 64) {
            delay = delay.saturating_mul(self.factor.max(1));
            if delay >= cap {
                break;
            }
        }
        let delay = delay.min(cap);
        let spread = delay.saturating_mul(self.jitter_percent.clamp(0, 100)) / 100;
        if spread == 0 {
            return delay;
        }
        let spread_u = u64::try_from(spread).unwrap_or(0);
        let cut = i64::try_from(random % (spread_u + 1)).unwrap_or(0);
        delay - cut
    }

    /// [`Backoff::delay_ms_with`] with fresh randomness.
    pub fn delay_ms(&self, attempt: i64) -> i64 {
        let mut bytes = [0u8; 8];
        // Without randomness the delay is still correct, only not spread.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        self.delay_ms_with(attempt, u64::from_le_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters_within_its_share() {
        let b = Backoff {
            base_ms: 100,
            factor: 2,
            max_ms: 1000,
            jitter_percent: 0,
        };
        let plain: Vec<i64> = (1..=6).map(|n| b.delay_ms_with(n, 7)).collect();
        assert_eq!(plain, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay_ms_with(i64::MAX, 1), 1000);
        assert_eq!(b.delay_ms_with(-3, 1), 100);
        let j = Backoff {
            jitter_percent: 50,
            ..b
        };
        let delays: std::collections::BTreeSet<i64> =
            (0..200u64).map(|r| j.delay_ms_with(3, r * 7919)).collect();
        assert!(delays.iter().all(|d| (200..=400).contains(d)), "{delays:?}");
        assert!(delays.len() > 20, "jitter spreads delays: {delays:?}");
        let d = Backoff::default().delay_ms(2);
        assert!((1600..=2000).contains(&d), "{d}");
    }
}
