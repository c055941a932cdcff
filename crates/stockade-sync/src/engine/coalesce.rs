//! One version per order in an ingest batch. A webhook's fetch, a notification's summary
//! and a poll can bring the same order into one batch; on PostgreSQL the store would then
//! split the batch into waves (a key may appear once per statement), each locking its
//! SKUs and listings again, out of the one lock order the ingest and the pushers share
//! (`ingest_rows`), which deadlocks. The batch keeps the furthest version of each order
//! (status rank, then the marketplace's update time), with the buyer fields of another
//! version when it has none, and answers every caller that brought it.

use std::collections::HashMap;

use stockade_core::order::Order;

use super::IngestJob;
use crate::ingest::rank;

/// Whether `b` is a later version of the order than `a`.
fn later(a: &Order, b: &Order) -> bool {
    (rank(b.status), b.updated_at_ms) > (rank(a.status), a.updated_at_ms)
}

fn has_buyer(o: &Order) -> bool {
    let b = &o.buyer;
    b.name.is_some() || b.email.is_some() || b.phone.is_some() || b.address.is_some()
}

/// Keep the later of two versions of one order in `kept` (true: `other` was later),
/// with the other's buyer fields when the kept one has none.
fn merge_order(kept: &mut Order, mut other: Order) -> bool {
    let swapped = later(kept, &other);
    if swapped {
        std::mem::swap(kept, &mut other);
    }
    if !has_buyer(kept) && has_buyer(&other) {
        kept.buyer = other.buyer;
    }
    swapped
}

/// Merge `other` (the same order) into `kept`.
fn merge(kept: &mut IngestJob, mut other: IngestJob) {
    if merge_order(&mut kept.order, other.order) {
        kept.source = other.source;
    }
    kept.arrival = kept.arrival.min(other.arrival);
    kept.timed |= other.timed;
    kept.replies.append(&mut other.replies);
}

/// `items` with each key once, in first-seen order, later ones merged into the first.
fn coalesce_by<T, K: std::hash::Hash + Eq>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    merge: impl Fn(&mut T, T),
) -> Vec<T> {
    let mut at: HashMap<K, usize> = HashMap::with_capacity(items.len());
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        match at.get(&key(&item)) {
            Some(&i) => merge(&mut out[i], item),
            None => {
                at.insert(key(&item), out.len());
                out.push(item);
            }
        }
    }
    out
}

/// The batch with each (connection, order) once, in first-seen order.
pub(super) fn coalesce(jobs: Vec<IngestJob>) -> Vec<IngestJob> {
    coalesce_by(jobs, |j| (j.live.id, j.order.external_id.clone()), merge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_core::Pii;
    use stockade_core::order::{Buyer, Marketplace, OrderStatus};

    fn order(status: OrderStatus, at: i64, buyer: bool) -> Order {
        Order {
            marketplace: Marketplace::Amazon,
            external_id: "A-1".into(),
            status,
            marketplace_status: String::new(),
            created_at_ms: 1,
            updated_at_ms: at,
            lines: vec![],
            buyer: Buyer {
                name: buyer.then(|| Pii::new("n".to_owned())),
                ..Buyer::default()
            },
        }
    }

    #[test]
    fn the_later_version_wins_and_keeps_a_buyer() {
        assert!(later(
            &order(OrderStatus::Placed, 5, true),
            &order(OrderStatus::Shipped, 1, false)
        ));
        assert!(later(
            &order(OrderStatus::Placed, 1, true),
            &order(OrderStatus::Placed, 2, false)
        ));
        assert!(!later(
            &order(OrderStatus::Cancelled, 1, true),
            &order(OrderStatus::Placed, 9, false)
        ));
        assert!(has_buyer(&order(OrderStatus::Placed, 1, true)));
        assert!(!has_buyer(&order(OrderStatus::Placed, 1, false)));
        // A summary (no buyer) that is further along keeps the fetched buyer.
        let mut kept = order(OrderStatus::Placed, 1, true);
        assert!(merge_order(
            &mut kept,
            order(OrderStatus::Shipped, 2, false)
        ));
        assert_eq!(
            (kept.status, has_buyer(&kept)),
            (OrderStatus::Shipped, true)
        );
        let mut kept = order(OrderStatus::Shipped, 2, false);
        assert!(!merge_order(&mut kept, order(OrderStatus::Placed, 1, true)));
        assert_eq!(
            (kept.status, has_buyer(&kept)),
            (OrderStatus::Shipped, true)
        );
    }

    #[test]
    fn each_key_once_in_first_seen_order() {
        let items = vec![("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        let out = coalesce_by(items, |i| i.0, |k, o| k.1 += o.1);
        assert_eq!(out, vec![("a", 4), ("b", 7), ("c", 4)]);
    }
}
