//! Every change of a listing's displayed quantity, with when and why it changed: a
//! buyer's order, the seller's per-listing call (Amazon patchListingsItem, TikTok
//! inventory update), a bulk call (Amazon JSON_LISTINGS_FEED, eBay
//! bulkUpdatePriceQuantity), a cancellation, or the seller's own edit. The benchmark
//! reads it to measure how long a listing kept showing stock that was already gone.

use serde::{Deserialize, Serialize};
use stockade_core::order::Marketplace;

/// What changed a listing's quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QtySource {
    /// A buyer's order took units (the quantity shown drops by what was bought).
    Buyer,
    /// A cancelled order gave its units back.
    Cancel,
    /// The seller's per-listing call: Amazon patchListingsItem, TikTok inventory update.
    PerListing,
    /// A bulk call: Amazon JSON_LISTINGS_FEED, eBay bulkUpdatePriceQuantity.
    Bulk,
    /// Set directly (the seller's UI, the admin API, the initial catalog).
    Direct,
}

impl QtySource {
    /// Whether the seller's software sent this change (a push).
    pub fn is_push(self) -> bool {
        matches!(self, QtySource::PerListing | QtySource::Bulk)
    }
}

/// One change of one listing's displayed quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QtyChange {
    pub marketplace: Marketplace,
    pub seller_id: String,
    pub sku: String,
    /// When the simulator applied it (Unix ms, the clock order times use).
    pub at_ms: i64,
    /// The quantity shown from then on.
    pub quantity: u32,
    pub source: QtySource,
}

/// Most changes kept per simulator (about 24 bytes each); later ones are counted, not kept.
pub(crate) const MAX_CHANGES: usize = 4_000_000;

/// The recorded changes of one simulator, in the order they were applied.
#[derive(Debug, Default)]
pub(crate) struct QtyHistory {
    changes: Vec<(u32, i64, u32, QtySource)>,
    dropped: u64,
}

impl QtyHistory {
    /// Record that listing `listing` shows `quantity` from `at_ms` on.
    pub fn record(&mut self, listing: usize, at_ms: i64, quantity: u32, source: QtySource) {
        match u32::try_from(listing) {
            Ok(li) if self.changes.len() < MAX_CHANGES => {
                self.changes.push((li, at_ms, quantity, source));
            }
            _ => self.dropped += 1,
        }
    }

    /// Changes not kept because the history was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The changes as (listing index, at, quantity, source).
    pub fn iter(&self) -> impl Iterator<Item = (usize, i64, u32, QtySource)> + '_ {
        self.changes
            .iter()
            .map(|&(li, at, q, s)| (li as usize, at, q, s))
    }
}

impl crate::sim::Sim {
    /// The recorded quantity changes of every listing, in the order they were applied,
    /// and how many were not kept.
    pub(crate) fn qty_history(&self) -> (Vec<QtyChange>, u64) {
        let m = self.lock();
        let changes = m
            .qty_history
            .iter()
            .filter_map(|(li, at_ms, quantity, source)| {
                let l = m.listings.get(li)?;
                Some(QtyChange {
                    marketplace: self.marketplace,
                    seller_id: m.sellers.get(l.seller).map(|s| s.id.clone())?,
                    sku: l.sku.clone(),
                    at_ms,
                    quantity,
                    source,
                })
            })
            .collect();
        (changes, m.qty_history.dropped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_and_counts_overflow() {
        let mut h = QtyHistory::default();
        h.record(3, 10, 5, QtySource::Bulk);
        h.record(3, 12, 4, QtySource::Buyer);
        let got: Vec<_> = h.iter().collect();
        assert_eq!(
            got,
            vec![(3, 10, 5, QtySource::Bulk), (3, 12, 4, QtySource::Buyer)]
        );
        assert_eq!(h.dropped(), 0);
        assert!(QtySource::PerListing.is_push() && !QtySource::Buyer.is_push());
    }
}
