//! How a marketplace takes quantity pushes: which calls it has, how fast each may go and
//! what it caps per listing, so the pusher can send what matters most (zeros, low stock)
//! through the fastest path and the rest through the bulk one.

/// The paths a connector offers for quantity pushes ([`crate::Connector::push_paths`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PushPaths {
    /// A per-listing call distinct from the bulk one, with its rate budget (requests/s,
    /// burst): Amazon `patchListingsItem`, 5/s, burst 5.
    pub per_listing: Option<(f64, u32)>,
    /// The bulk path confirms late (Amazon JSON_LISTINGS_FEED: processed in minutes,
    /// polled every 30 s): run it beside the per-listing path, never before a zero.
    pub slow_bulk: bool,
    /// Calls per second the usual path may make (its client-side rate).
    pub calls_per_s: f64,
    /// Listings one call of the usual path carries: 25 for eBay's
    /// bulkUpdatePriceQuantity, 1 where a call may hold only one listing (Amazon's
    /// patch; TikTok's call holds one product).
    pub listings_per_call: usize,
    /// Revisions per listing per UTC day (eBay: 250).
    pub daily_revisions: Option<u32>,
}

impl Default for PushPaths {
    fn default() -> Self {
        PushPaths {
            per_listing: None,
            slow_bulk: false,
            calls_per_s: f64::INFINITY,
            listings_per_call: 1,
            daily_revisions: None,
        }
    }
}

/// Which path a push takes ([`crate::Connector::set_quantities_via`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityPath {
    /// The per-listing call (Amazon `patchListingsItem`); the usual path where there is
    /// none.
    PerListing,
    /// The bulk call (Amazon JSON_LISTINGS_FEED, eBay bulkUpdatePriceQuantity).
    Bulk,
}
