//! Which orders the receiver acknowledged: an order event answered 2xx. A load driver
//! tells "lost" (acknowledged, then not stored: the receiver's fault) from "backlog"
//! (never acknowledged: still queued, given up on, or shed with 503 — the marketplace
//! still holds it and delivers or lists it again).

use std::collections::HashSet;
use std::sync::Mutex;

use stockade_core::order::Marketplace;

fn index_of(m: Marketplace) -> usize {
    Marketplace::ALL.iter().position(|x| *x == m).unwrap_or(0)
}

/// Order ids per marketplace whose announcing delivery was answered 2xx.
#[derive(Debug, Default)]
pub(crate) struct Acknowledged(Mutex<[HashSet<String>; 3]>);

impl Acknowledged {
    pub(crate) fn insert(&self, m: Marketplace, order: String) {
        if let Ok(mut sets) = self.0.lock()
            && let Some(set) = sets.get_mut(index_of(m))
        {
            set.insert(order);
        }
    }

    pub(crate) fn of(&self, m: Marketplace) -> HashSet<String> {
        self.0
            .lock()
            .ok()
            .and_then(|sets| sets.get(index_of(m)).cloned())
            .unwrap_or_default()
    }
}

/// Orders placed, split by what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderTally {
    /// Placed and stored.
    pub stored: u64,
    /// Acknowledged (answered 2xx) and not stored: lost by the receiver.
    pub lost: u64,
    /// Never acknowledged and not stored: still with the marketplace (queued, shed,
    /// given up on); a poll or a later delivery brings it in.
    pub backlog: u64,
}

impl OrderTally {
    /// Count `placed` against what the receiver `stored` and `acknowledged`.
    pub fn count<'a>(
        placed: impl IntoIterator<Item = &'a str>,
        stored: &HashSet<String>,
        acknowledged: &HashSet<String>,
    ) -> OrderTally {
        let mut t = OrderTally::default();
        for id in placed {
            if stored.contains(id) {
                t.stored += 1;
            } else if acknowledged.contains(id) {
                t.lost += 1;
            } else {
                t.backlog += 1;
            }
        }
        t
    }

    pub fn add(&mut self, other: OrderTally) {
        self.stored += other.stored;
        self.lost += other.lost;
        self.backlog += other.backlog;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn unacknowledged_orders_are_backlog_not_lost() {
        let placed = ["a", "b", "c", "d", "e"];
        let stored = set(&["a", "b"]);
        // c was answered 2xx and is missing: lost. d and e were never answered 2xx.
        let acked = set(&["a", "b", "c"]);
        let t = OrderTally::count(placed, &stored, &acked);
        assert_eq!(
            t,
            OrderTally {
                stored: 2,
                lost: 1,
                backlog: 2
            }
        );
    }

    #[test]
    fn an_order_stored_without_an_acknowledgement_is_stored() {
        // Stored by the poller, its webhook shed: neither lost nor backlog.
        let t = OrderTally::count(["a"], &set(&["a"]), &set(&[]));
        assert_eq!((t.stored, t.lost, t.backlog), (1, 0, 0));
    }

    #[test]
    fn acknowledgements_are_kept_per_marketplace() {
        let a = Acknowledged::default();
        a.insert(Marketplace::Amazon, "1".into());
        assert!(a.of(Marketplace::Amazon).contains("1"));
        assert!(a.of(Marketplace::Ebay).is_empty());
    }
}
