//! Webhooks answered 503 because the sync could not finish them in time (the database
//! away, a marketplace slow to answer the fetch): one warning a second for the whole
//! process, saying how many more were refused meanwhile, rather than a line per
//! delivery, which an outage under load would turn into a flood. The marketplaces
//! deliver those again; the store and the engine say why once.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// At most one line per second; counts what it held back.
#[derive(Debug, Default)]
pub struct Throttle {
    last_s: AtomicI64,
    held: AtomicU64,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            last_s: AtomicI64::new(i64::MIN),
            held: AtomicU64::new(0),
        }
    }

    /// At `now_ms`: `Some(n)` when a line may be written now (`n` held back since the
    /// last one), `None` when this one is held back.
    pub fn admit(&self, now_ms: i64) -> Option<u64> {
        let s = now_ms.div_euclid(1000);
        let last = self.last_s.load(Ordering::Relaxed);
        if s > last
            && self
                .last_s
                .compare_exchange(last, s, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::AcqRel));
        }
        self.held.fetch_add(1, Ordering::AcqRel);
        None
    }
}

/// The webhooks refused as unavailable, all connections together.
pub static UNAVAILABLE: Throttle = Throttle::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count_held_back() {
        let t = Throttle::new();
        assert_eq!(t.admit(10_000), Some(0));
        assert_eq!(t.admit(10_100), None);
        assert_eq!(t.admit(10_999), None);
        assert_eq!(t.admit(11_000), Some(2));
        assert_eq!(t.admit(11_500), None);
        assert_eq!(t.admit(15_000), Some(1));
    }
}
