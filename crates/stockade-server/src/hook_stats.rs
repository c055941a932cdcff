//! Webhook deliveries seen by this server process, per connection: how many were
//! accepted, how many refused, and when the last one came. The connections page shows
//! them next to what the database knows.
//!
//! Invariants: kept in memory only (counted since this process started; each process of
//! a scaled-out deployment counts its own), bounded to [`MAX_CONNECTIONS`] names; only
//! deliveries to a well-formed name the sink recognised (anything but 404) are counted, so
//! a stranger guessing names cannot grow it. Nothing of a delivery but its outcome is kept.

use std::collections::HashMap;
use std::sync::Mutex;

/// The most connection names counted.
pub const MAX_CONNECTIONS: usize = 1024;

/// One connection's deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookCount {
    pub accepted: u64,
    pub refused: u64,
    pub last_ms: Option<i64>,
}

impl HookCount {
    pub fn received(&self) -> u64 {
        self.accepted + self.refused
    }
}

/// The per-connection counters of one process.
#[derive(Debug)]
pub struct HookStats {
    counts: Mutex<HashMap<String, HookCount>>,
    /// When this process started counting.
    since_ms: i64,
}

impl Default for HookStats {
    fn default() -> Self {
        HookStats::new()
    }
}

impl HookStats {
    pub fn new() -> Self {
        HookStats {
            counts: Mutex::default(),
            since_ms: stockade_core::time::now_ms(),
        }
    }

    /// When counting began (this process's start).
    pub fn since_ms(&self) -> i64 {
        self.since_ms
    }

    /// Count one delivery to `connection`.
    pub fn record(&self, connection: &str, accepted: bool, at_ms: i64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if !counts.contains_key(connection) && counts.len() >= MAX_CONNECTIONS {
            return;
        }
        let c = counts.entry(connection.to_owned()).or_default();
        if accepted {
            c.accepted += 1;
        } else {
            c.refused += 1;
        }
        c.last_ms = Some(at_ms);
    }

    /// The deliveries counted for `connection`.
    pub fn get(&self, connection: &str) -> HookCount {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(connection).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_connection_and_stays_bounded() {
        let s = HookStats::new();
        s.record("shop", true, 10);
        s.record("shop", false, 20);
        assert_eq!(
            s.get("shop"),
            HookCount {
                accepted: 1,
                refused: 1,
                last_ms: Some(20)
            }
        );
        assert_eq!(s.get("other").received(), 0);
        for i in 0..MAX_CONNECTIONS + 10 {
            s.record(&format!("c{i}"), true, 1);
        }
        let counts = s.counts.lock().unwrap();
        assert_eq!(counts.len(), MAX_CONNECTIONS);
    }
}
