//! Counters and latency figures for the live summary, benchmarks and `/metrics`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Latency samples in microseconds, kept up to a bound (the oldest are dropped).
#[derive(Debug, Default)]
pub struct Samples {
    inner: Mutex<VecDeque<u32>>,
}

const MAX_SAMPLES: usize = 4_000_000;

impl Samples {
    pub fn record(&self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        if let Ok(mut v) = self.inner.lock() {
            if v.len() >= MAX_SAMPLES {
                v.pop_front();
            }
            v.push_back(us);
        }
    }

    /// p50, p99 and max in milliseconds, and the count; None without samples.
    pub fn summary(&self) -> Option<Percentiles> {
        let mut v: Vec<u32> = self.inner.lock().ok()?.iter().copied().collect();
        summarise(&mut v)
    }

    /// Like [`Samples::summary`] over the samples recorded since the last call
    /// to `summary_recent` (for a live display).
    pub fn take_recent(&self, since: &mut usize) -> Option<Percentiles> {
        let v = self.inner.lock().ok()?;
        let start = (*since).min(v.len());
        let mut recent: Vec<u32> = v.iter().skip(start).copied().collect();
        *since = v.len();
        drop(v);
        summarise(&mut recent)
    }

    pub fn clear(&self) {
        if let Ok(mut v) = self.inner.lock() {
            v.clear();
        }
    }
}

fn summarise(v: &mut [u32]) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let at = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        f64::from(v.get(i).copied().unwrap_or(0)) / 1000.0
    };
    Some(Percentiles {
        count: v.len(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What the sync engine has done since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Order changes stored (new orders and status changes).
    pub changes_applied: AtomicU64,
    /// Deliveries and polled orders that changed nothing (duplicates, replays, stale).
    pub unchanged: AtomicU64,
    /// Orders received per source.
    pub webhooks_accepted: AtomicU64,
    pub webhooks_rejected: AtomicU64,
    pub polled: AtomicU64,
    /// Ingest transactions and the orders in them.
    pub batches: AtomicU64,
    pub batched_orders: AtomicU64,
    /// Listing quantities confirmed by a channel, and marketplace calls that carried them.
    pub pushes_confirmed: AtomicU64,
    pub push_calls: AtomicU64,
    /// Target versions that never went out because a newer one replaced them.
    pub pushes_coalesced: AtomicU64,
    pub push_failures: AtomicU64,
    /// Listings found showing something else than their target, and repaired.
    pub drift_repaired: AtomicU64,
    pub reconcile_runs: AtomicU64,
    /// Errors recorded as events (after retries).
    pub error_events: AtomicU64,
    /// From an order's arrival to the last channel's confirmation of every listing its
    /// ingest batch changed.
    pub order_to_confirmed: Samples,
    /// From arrival to the durable commit (what a webhook's answer waits for).
    pub arrival_to_commit: Samples,
    /// Per connection: from the arrival of the oldest change a push carries to the
    /// channel's confirmation (staleness of that channel).
    pub staleness: Mutex<HashMap<String, std::sync::Arc<Samples>>>,
    pub last_errors: Mutex<VecDeque<(Instant, String)>>,
    /// Every error line since the start, counted by kind (the line itself; lines start
    /// with the connection's name), so a summary's counts and its list agree.
    pub error_kinds: Mutex<ErrorKinds>,
}

/// Error lines counted by kind, the most recent `MAX_KINDS` kinds kept with their counts.
#[derive(Debug, Default)]
pub struct ErrorKinds {
    /// Per connection (the text before the first ": "), every error since the start.
    pub per_connection: std::collections::BTreeMap<String, u64>,
    /// Errors whose kind was dropped from `kinds` to keep it bounded.
    pub dropped: u64,
    kinds: HashMap<String, ErrorKind>,
}

/// One kind of error: how often and when it last happened.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorKind {
    pub line: String,
    pub count: u64,
    pub last: Instant,
}

const MAX_KINDS: usize = 50;

impl ErrorKinds {
    fn record(&mut self, line: &str) {
        let connection = line.split_once(": ").map_or("", |(c, _)| c);
        *self
            .per_connection
            .entry(connection.to_owned())
            .or_default() += 1;
        let now = Instant::now();
        if let Some(k) = self.kinds.get_mut(line) {
            k.count += 1;
            k.last = now;
            return;
        }
        if self.kinds.len() >= MAX_KINDS
            && let Some(oldest) = self
                .kinds
                .values()
                .min_by_key(|k| k.last)
                .map(|k| k.line.clone())
            && let Some(k) = self.kinds.remove(&oldest)
        {
            self.dropped += k.count;
        }
        self.kinds.insert(
            line.to_owned(),
            ErrorKind {
                line: line.to_owned(),
                count: 1,
                last: now,
            },
        );
    }

    /// Every error counted, over all connections.
    pub fn total(&self) -> u64 {
        self.per_connection.values().sum()
    }

    /// The kinds kept, most recent first.
    pub fn newest_first(&self) -> Vec<ErrorKind> {
        let mut v: Vec<ErrorKind> = self.kinds.values().cloned().collect();
        v.sort_by(|a, b| b.last.cmp(&a.last).then_with(|| a.line.cmp(&b.line)));
        v
    }
}

impl Metrics {
    pub fn inc(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn staleness_of(&self, connection: &str) -> std::sync::Arc<Samples> {
        match self.staleness.lock() {
            Ok(mut m) => m.entry(connection.to_owned()).or_default().clone(),
            Err(_) => std::sync::Arc::default(),
        }
    }

    /// Remember a (scrubbed, PII-free) error line for the live summary.
    pub fn error(&self, line: String) {
        if let Ok(mut k) = self.error_kinds.lock() {
            k.record(&line);
        }
        if let Ok(mut v) = self.last_errors.lock() {
            if v.len() >= 20 {
                v.pop_front();
            }
            v.push_back((Instant::now(), line));
        }
    }

    pub fn recent_errors(&self, n: usize) -> Vec<String> {
        self.last_errors
            .lock()
            .map(|v| v.iter().rev().take(n).map(|(_, s)| s.clone()).collect())
            .unwrap_or_default()
    }

    /// A copy of the error counts: per connection, and by kind (newest first).
    pub fn error_counts(&self) -> (std::collections::BTreeMap<String, u64>, Vec<ErrorKind>, u64) {
        self.error_kinds
            .lock()
            .map(|k| (k.per_connection.clone(), k.newest_first(), k.dropped))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s = Samples::default();
        for ms in 1..=100u64 {
            s.record(Duration::from_millis(ms));
        }
        let p = s.summary().unwrap();
        assert_eq!(p.count, 100);
        assert!((p.p50_ms - 50.0).abs() <= 1.0, "{p:?}");
        assert!((p.p99_ms - 99.0).abs() <= 1.0, "{p:?}");
        assert_eq!(p.max_ms, 100.0);
        let mut since = 0;
        assert_eq!(s.take_recent(&mut since).unwrap().count, 100);
        assert!(s.take_recent(&mut since).is_none());
    }

    // The demo's error counts disagreed with its list of last errors (counted apart).
    #[test]
    fn error_counts_agree_with_the_kinds_listed() {
        let m = Metrics::default();
        for _ in 0..3 {
            m.error("ebay: push failed: 429".into());
        }
        m.error("amazon: polling failed: timeout".into());
        m.error("ebay: push failed: 500".into());
        let (per, kinds, dropped) = m.error_counts();
        assert_eq!(per.get("ebay"), Some(&4));
        assert_eq!(per.get("amazon"), Some(&1));
        assert_eq!(dropped, 0);
        assert_eq!(kinds.len(), 3);
        assert_eq!(kinds.iter().map(|k| k.count).sum::<u64>(), 5);
        for (c, n) in &per {
            let listed: u64 = kinds
                .iter()
                .filter(|k| k.line.starts_with(&format!("{c}: ")))
                .map(|k| k.count)
                .sum();
            assert_eq!(listed, *n, "{c}");
        }
        // Bounded: old kinds are dropped but still counted.
        for i in 0..(MAX_KINDS + 5) {
            m.error(format!("tiktok: push failed: {i}"));
        }
        let (per, kinds, dropped) = m.error_counts();
        assert_eq!(kinds.len(), MAX_KINDS);
        assert_eq!(
            kinds.iter().map(|k| k.count).sum::<u64>() + dropped,
            per.values().sum::<u64>()
        );
    }
}
