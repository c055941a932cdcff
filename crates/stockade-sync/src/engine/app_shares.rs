//! eBay's rate limit across processes.
//!
//! eBay counts calls per application, across its APIs and every seller authorized
//! through it; each process's egress gateway has its own bucket for the application
//! (`ebay.app`, partitioned by the app's id). With several processes on one database the
//! connections of one application may be owned by different processes, and each bucket
//! alone would let them spend the application's rate once each. So each process spends
//! its share: the application's connections it owns (at least one: a process that owns
//! none still verifies and, when the owner is slow, fetches) over all the application's
//! connections. The shares follow ownership; they are set after every ownership round.
//! A lone process (SQLite, or ownership off) keeps the whole rate.

use std::collections::BTreeMap;

use stockade_core::order::Marketplace;

use super::Inner;

/// Each application's share for this process, from its connections: `(app, owned)`.
/// `None`: the whole rate (it owns them all).
pub(super) fn shares<'a>(
    connections: impl IntoIterator<Item = (&'a str, bool)>,
) -> BTreeMap<String, Option<f64>> {
    let mut count: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for (app, owned) in connections {
        let c = count.entry(app).or_default();
        c.0 += 1;
        c.1 += u32::from(owned);
    }
    count
        .into_iter()
        .map(|(app, (all, owned))| {
            let share = (owned < all).then(|| f64::from(owned.max(1)) / f64::from(all));
            (app.to_owned(), share)
        })
        .collect()
}

/// Set this process's share of each eBay application's bucket on the gateway.
pub(super) fn apply(inner: &Inner) {
    let Ok(live) = inner.live.read() else {
        return;
    };
    let ebay = live
        .values()
        .filter(|l| l.marketplace == Marketplace::Ebay)
        .map(|l| (l.app.as_str(), inner.owned.may_act(l.id)));
    for (app, share) in shares(ebay) {
        inner
            .gateway
            .share_bucket(stockade_marketplaces::ebay::APP_BUCKET, &app, share);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_application_is_shared_by_the_connections_owned() {
        let s = shares([
            ("app-1", true),
            ("app-1", false),
            ("app-1", false),
            ("app-1", true),
            ("app-2", false),
            ("app-2", false),
            ("app-3", true),
        ]);
        assert_eq!(s["app-1"], Some(0.5));
        assert_eq!(s["app-2"], Some(0.5), "owning none: one connection's share");
        assert_eq!(s["app-3"], None, "owning all: the whole rate");
        assert_eq!(s.len(), 3);
    }
}
