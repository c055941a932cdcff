//! Token buckets keyed by (operation, partition), and daily quotas.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

type DailyCounts = HashMap<(&'static str, String), (i64, u64)>;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per-(operation, partition) token buckets, off when `enabled` is false.
#[derive(Debug)]
pub(crate) struct Limiter {
    enabled: std::sync::atomic::AtomicBool,
    scale: f64,
    buckets: Mutex<HashMap<(&'static str, String), Bucket>>,
    daily: Mutex<DailyCounts>,
}

impl Limiter {
    pub fn new(enabled: bool, scale: f64) -> Self {
        Limiter {
            enabled: std::sync::atomic::AtomicBool::new(enabled),
            scale: if scale.is_finite() && scale > 0.0 {
                scale
            } else {
                1.0
            },
            buckets: Mutex::new(HashMap::new()),
            daily: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut b) = self.buckets.lock() {
            b.clear();
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Take one token; `Err(seconds until one is available)` when the bucket is empty.
    pub fn take(
        &self,
        op: &'static str,
        partition: &str,
        rate: f64,
        burst: u32,
    ) -> Result<(), f64> {
        if !self.enabled() {
            return Ok(());
        }
        let rate = rate * self.scale;
        let burst = f64::from(burst.max(1));
        let now = Instant::now();
        let Ok(mut map) = self.buckets.lock() else {
            return Ok(());
        };
        let bucket = map.entry((op, partition.to_owned())).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if rate > 0.0 {
            Err((1.0 - bucket.tokens) / rate)
        } else {
            Err(86_400.0)
        }
    }

    /// Count one call against a daily (UTC) quota; false when `limit` is reached.
    pub fn take_daily(&self, quota: &'static str, key: &str, limit: u64, day: i64) -> bool {
        if !self.enabled() {
            return true;
        }
        let Ok(mut map) = self.daily.lock() else {
            return true;
        };
        let entry = map.entry((quota, key.to_owned())).or_insert((day, 0));
        if entry.0 != day {
            *entry = (day, 0);
        }
        if entry.1 >= limit {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse() {
        let l = Limiter::new(true, 1.0);
        for _ in 0..5 {
            assert!(l.take("op", "s", 5.0, 5).is_ok());
        }
        let wait = l.take("op", "s", 5.0, 5).err();
        assert!(wait.is_some_and(|w| w > 0.0 && w <= 0.2));
        assert!(l.take("op", "other", 5.0, 5).is_ok());
        l.set_enabled(false);
        for _ in 0..100 {
            assert!(l.take("op", "s", 5.0, 5).is_ok());
        }
    }

    #[test]
    fn daily_quota() {
        let l = Limiter::new(true, 1.0);
        assert!(l.take_daily("q", "k", 2, 1));
        assert!(l.take_daily("q", "k", 2, 1));
        assert!(!l.take_daily("q", "k", 2, 1));
        assert!(l.take_daily("q", "k", 2, 2));
    }
}
