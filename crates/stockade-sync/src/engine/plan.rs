//! Push scheduling: which pending listings go out now, through which of the
//! marketplace's paths, and which wait. What matters most goes first through the fastest
//! path: a listing that must drop to zero, then low stock, then other decreases, then
//! increases. Each round sends about a quarter of a second of the per-listing budget
//! (at least one call), so a zero that arrives mid-backlog waits at most that round, not
//! behind the whole backlog. (Rounds of a second kept TikTok, at 10 calls a second and
//! one call per product, showing a sold-out SKU for up to 1.8 s at 10 orders a second.)
//!
//! - Amazon: zeros and low stock through `patchListingsItem` (5/s, burst 5); the rest
//!   through JSON_LISTINGS_FEED, one feed at a time beside the per-listing path (a feed
//!   takes minutes on Amazon; nothing urgent ever waits behind one). A listing patched
//!   while a feed holding it is still in flight is patched again once the feed is done,
//!   so a late feed cannot bring back a quantity that is gone.
//! - eBay: bulkUpdatePriceQuantity; each listing's 250 revisions per UTC day are
//!   budgeted so a decrease to zero never runs out: increases stop while
//!   [`INCREASE_RESERVE`] or fewer are left, other decreases while one is left.
//! - TikTok: one call per product, a quarter of a second of calls per round.
//!
//! With rate limits lifted (benchmarks of the server alone) every pending listing goes
//! out at once, zeros first, as before.

use std::collections::HashMap;
use std::sync::Arc;

use stockade_marketplaces::{MarketError, PushPaths, QuantityPath};
use tokio::task::JoinHandle;

use super::pusher::{Pending, push_chunk};
use super::{Inner, Live};

/// A positive quantity at or below this is low stock: pushed with the zeros.
pub(crate) const LOW_STOCK: u32 = 5;

/// eBay: revisions a listing keeps for decreases (to zero above all) once increases stop.
pub(crate) const INCREASE_RESERVE: u32 = 10;

/// How long one round's share of the per-listing budget lasts, in seconds.
const ROUND_S: f64 = 0.25;

/// What a pending push does to the listing, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    /// The channel shows stock that is gone (or nothing was confirmed yet): zero it.
    Zero,
    /// A decrease to low stock (1..=LOW_STOCK).
    Low,
    Decrease,
    /// An increase, or a first push of a positive quantity.
    Increase,
}

/// Classify a push of `qty` to a listing whose confirmed quantity is `acked`.
pub(crate) fn classify(qty: u32, acked: Option<u32>) -> Class {
    match (qty, acked) {
        (0, _) => Class::Zero,
        (q, Some(a)) if q < a && q <= LOW_STOCK => Class::Low,
        (q, Some(a)) if q < a => Class::Decrease,
        _ => Class::Increase,
    }
}

/// One pending listing as the planner sees it.
#[derive(Debug, Clone)]
pub(crate) struct Candidate<'a> {
    pub sku: &'a str,
    pub qty: u32,
    pub acked: Option<u32>,
    /// Already in a bulk call still in flight.
    pub in_flight: bool,
}

/// One round's plan: indices into the candidates.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Send now through the per-listing (or usual) path, in this order.
    pub now: Vec<usize>,
    /// Send through the slow bulk path, beside the per-listing path.
    pub bulk: Vec<usize>,
    /// Not sent today: the listing's daily revisions are kept for zeros.
    pub held: Vec<usize>,
    /// Left for the next round (this round's budget is spent); not a failure.
    pub later: usize,
}

/// Each listing's revisions today (UTC), for marketplaces that cap them.
#[derive(Debug, Default)]
pub(crate) struct RevisionBudget {
    day: i64,
    used: HashMap<String, u32>,
}

impl RevisionBudget {
    fn roll(&mut self, day: i64) {
        if day != self.day {
            self.day = day;
            self.used.clear();
        }
    }

    /// Revisions `sku` has used on `day`.
    pub fn used(&mut self, sku: &str, day: i64) -> u32 {
        self.roll(day);
        self.used.get(sku).copied().unwrap_or(0)
    }

    /// Count one revision of `sku` on `day`.
    pub fn spend(&mut self, sku: &str, day: i64) {
        self.roll(day);
        *self.used.entry(sku.to_owned()).or_insert(0) += 1;
    }

    /// Counts of `day` kept elsewhere (the database: revisions spent by an earlier owner
    /// of the connection, or by this process before a restart): each listing's count is
    /// at least its stored one.
    pub fn load(&mut self, day: i64, used: &[(String, u32)]) {
        self.roll(day);
        for (sku, n) in used {
            let c = self.used.entry(sku.clone()).or_insert(0);
            *c = (*c).max(*n);
        }
    }

    /// The marketplace refused `sku` for today: nothing left.
    pub fn exhaust(&mut self, sku: &str, day: i64, limit: u32) {
        self.roll(day);
        self.used.insert(sku.to_owned(), limit);
    }
}

/// Whether a push of class `class` may spend one of the `left` revisions.
pub(crate) fn may_spend(class: Class, left: u32) -> bool {
    match class {
        Class::Zero => left >= 1,
        Class::Low | Class::Decrease => left >= 2,
        Class::Increase => left > INCREASE_RESERVE,
    }
}

/// The planner of one connection's pusher.
#[derive(Debug)]
pub(crate) struct Planner {
    paths: PushPaths,
    lifted: bool,
    batch: usize,
    pub budget: RevisionBudget,
}

impl Planner {
    pub fn new(paths: PushPaths, lifted: bool, batch: usize) -> Planner {
        Planner {
            paths,
            lifted,
            batch: batch.max(1),
            budget: RevisionBudget::default(),
        }
    }

    /// Listings the per-listing (or usual) path takes in one round.
    pub fn round_capacity(&self) -> usize {
        if self.lifted {
            return usize::MAX;
        }
        let (rate, _burst) = self
            .paths
            .per_listing
            .unwrap_or((self.paths.calls_per_s, 1));
        if !rate.is_finite() || rate <= 0.0 {
            return usize::MAX;
        }
        let per_call = self.paths.listings_per_call.max(1);
        // Not the burst: a round as long as the burst would be a second of calls once
        // the bucket is empty, which is the steady state of a backlog.
        let calls = ((rate * ROUND_S).ceil() as usize).max(1);
        calls.saturating_mul(per_call).max(1)
    }

    /// Plan one round. `bulk_busy`: a bulk call is in flight (no second one starts).
    pub fn plan(&mut self, items: &[Candidate<'_>], bulk_busy: bool, day: i64) -> Plan {
        let mut order: Vec<(Class, u32, usize)> = items
            .iter()
            .enumerate()
            .map(|(i, c)| (classify(c.qty, c.acked), c.qty, i))
            .collect();
        // Most urgent first; among decreases the lowest quantity first.
        order.sort_by_key(|&(class, qty, i)| {
            let key = if class == Class::Increase { 0 } else { qty };
            (class, key, i)
        });
        let mut plan = Plan::default();
        if self.lifted {
            plan.now = order.into_iter().map(|(_, _, i)| i).collect();
            return plan;
        }
        let capacity = self.round_capacity();
        let slow_bulk = self.paths.slow_bulk && self.paths.per_listing.is_some();
        for (class, _, i) in order {
            let Some(c) = items.get(i) else { continue };
            if let Some(limit) = self.paths.daily_revisions {
                let left = limit.saturating_sub(self.budget.used(c.sku, day));
                if !may_spend(class, left) {
                    plan.held.push(i);
                    continue;
                }
            }
            let urgent = matches!(class, Class::Zero | Class::Low);
            if c.in_flight && !urgent {
                // The feed in flight carries it; it is looked at again once done.
                continue;
            }
            if slow_bulk && !urgent {
                // Everything else rides the feed, keeping the per-listing budget whole
                // for the next zero; while a feed is in flight it waits for that one.
                if !bulk_busy {
                    plan.bulk.push(i);
                }
            } else if plan.now.len() < capacity {
                plan.now.push(i);
            } else {
                plan.later += 1;
            }
        }
        plan
    }

    /// Whether revisions are counted (and stored): the marketplace caps them and the
    /// rate limits are not lifted.
    pub fn counts_revisions(&self) -> bool {
        !self.lifted && self.paths.daily_revisions.is_some()
    }

    /// Chunk size of the usual path.
    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn paths(&self) -> &PushPaths {
        &self.paths
    }
}

/// The bulk call in flight (Amazon: one feed at a time) and what the per-listing path
/// sent over it meanwhile.
#[derive(Default)]
pub(crate) struct BulkLane {
    task: Option<JoinHandle<(Vec<String>, Option<MarketError>)>>,
    in_flight: std::collections::HashSet<String>,
    /// Listings patched while a feed holding them was in flight: patched again once the
    /// feed is done (its older quantity may have landed after the patch).
    overtaken: HashMap<String, Pending>,
}

/// Whether `e` is the marketplace refusing a listing's revision for today (eBay 25019, or
/// the connector's own daily count).
fn revisions_spent(e: &MarketError) -> bool {
    e.code
        .as_deref()
        .is_some_and(|c| c == "25019" || c == "daily_revision_limit")
}

/// Today as a UTC day number.
pub(super) fn utc_day() -> i64 {
    crate::now_ms().div_euclid(86_400_000)
}

/// One planned round: collect a finished bulk call, send what the plan says now, start
/// the bulk call. Adds the confirmed SKUs to `confirmed`; returns the last error, the
/// listings attempted this round and whether work is left for another round at once.
pub(super) async fn push_round(
    inner: &Arc<Inner>,
    live: &Arc<Live>,
    pending: &[Pending],
    planner: &mut Planner,
    lane: &mut BulkLane,
    confirmed: &mut std::collections::HashSet<String>,
) -> (Option<MarketError>, usize, bool) {
    let mut failed: Option<MarketError> = None;
    let mut attempted = 0usize;
    let mut redo: Vec<Pending> = Vec::new();
    if lane.task.as_ref().is_some_and(JoinHandle::is_finished)
        && let Some(task) = lane.task.take()
    {
        if let Ok((ok, err)) = task.await {
            confirmed.extend(ok);
            if err.is_some() {
                failed = err;
            }
        }
        lane.in_flight.clear();
        redo = lane.overtaken.drain().map(|(_, p)| p).collect();
    }
    let busy = lane.task.is_some();
    let items: Vec<Candidate<'_>> = pending
        .iter()
        .map(|p| Candidate {
            sku: &p.sku,
            qty: p.qty,
            acked: p.acked,
            in_flight: lane.in_flight.contains(&p.sku),
        })
        .collect();
    let day = utc_day();
    let plan = planner.plan(&items, busy, day);
    let per_listing = planner.paths().per_listing.is_some() && !planner.lifted;
    let path = per_listing.then_some(QuantityPath::PerListing);
    // Forced re-pushes whose listing has no newer target pending.
    redo.retain(|r| !pending.iter().any(|p| p.sku == r.sku));
    let mut now: Vec<&Pending> = redo.iter().collect();
    now.extend(plan.now.iter().filter_map(|&i| pending.get(i)));
    if planner.counts_revisions() && !now.is_empty() {
        // Counted in the database before the calls go out (see `revisions`): not counted,
        // not sent.
        let skus: Vec<&str> = now.iter().map(|p| p.sku.as_str()).collect();
        if !super::revisions::spend(inner, live, day, &skus).await {
            for r in redo {
                lane.overtaken.insert(r.sku.clone(), r);
            }
            return (failed, attempted, false);
        }
    }
    if planner.paths().daily_revisions.is_some() {
        for p in &now {
            planner.budget.spend(&p.sku, day);
        }
    }
    for p in &now {
        if lane.in_flight.contains(&p.sku) {
            lane.overtaken.insert(p.sku.clone(), (*p).clone());
        }
    }
    for chunk in now.chunks(planner.batch()) {
        attempted += chunk.len();
        match push_chunk(inner, live, chunk, path).await {
            Ok((ok, err)) => {
                if let (Some(e), Some(limit)) = (&err, planner.paths().daily_revisions)
                    && revisions_spent(e)
                {
                    // The marketplace counted more than this process did: the listings
                    // it refused have nothing left today (stored for later owners too).
                    let refused: Vec<&str> = chunk
                        .iter()
                        .filter(|p| !ok.contains(&p.sku))
                        .map(|p| p.sku.as_str())
                        .collect();
                    for sku in &refused {
                        planner.budget.exhaust(sku, day, limit);
                    }
                    if planner.counts_revisions() {
                        super::revisions::exhaust(inner, live, day, &refused, limit).await;
                    }
                }
                confirmed.extend(ok);
                if err.is_some() {
                    failed = err;
                }
            }
            Err(e) => failed = Some(e),
        }
    }
    if !plan.bulk.is_empty() {
        let items: Vec<Pending> = plan
            .bulk
            .iter()
            .filter_map(|&i| pending.get(i).cloned())
            .collect();
        lane.in_flight = items.iter().map(|p| p.sku.clone()).collect();
        let (inner, live) = (inner.clone(), live.clone());
        lane.task = Some(tokio::spawn(async move {
            let refs: Vec<&Pending> = items.iter().collect();
            let out = match push_chunk(&inner, &live, &refs, Some(QuantityPath::Bulk)).await {
                Ok(r) => r,
                Err(e) => (Vec::new(), Some(e)),
            };
            live.wake.notify_one();
            out
        }));
    }
    (failed, attempted, plan.later > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amazon() -> PushPaths {
        PushPaths {
            per_listing: Some((5.0, 5)),
            slow_bulk: true,
            calls_per_s: 5.0,
            listings_per_call: 1,
            daily_revisions: None,
        }
    }

    fn ebay() -> PushPaths {
        PushPaths {
            per_listing: None,
            slow_bulk: false,
            calls_per_s: 25.0,
            listings_per_call: 25,
            daily_revisions: Some(250),
        }
    }

    fn cand(sku: &str, qty: u32, acked: Option<u32>) -> Candidate<'_> {
        Candidate {
            sku,
            qty,
            acked,
            in_flight: false,
        }
    }

    #[test]
    fn classes_follow_the_confirmed_quantity() {
        assert_eq!(classify(0, Some(4)), Class::Zero);
        assert_eq!(classify(0, None), Class::Zero);
        assert_eq!(classify(3, Some(9)), Class::Low);
        assert_eq!(classify(30, Some(90)), Class::Decrease);
        assert_eq!(classify(30, Some(10)), Class::Increase);
        assert_eq!(classify(3, None), Class::Increase);
    }

    #[test]
    fn amazon_zeros_and_low_stock_go_first_through_the_per_listing_path() {
        let mut p = Planner::new(amazon(), false, 200);
        assert_eq!(p.round_capacity(), 2);
        let mut items: Vec<Candidate<'_>> = Vec::new();
        // 300 increases (opening listings), then a zero and a low-stock decrease last.
        let skus: Vec<String> = (0..300).map(|i| format!("S{i:03}")).collect();
        for s in &skus {
            items.push(cand(s, 50, Some(20)));
        }
        items.push(cand("Z", 0, Some(3)));
        items.push(cand("L", 2, Some(7)));
        items.push(cand("D", 40, Some(60)));
        let plan = p.plan(&items, false, 1);
        assert_eq!(
            plan.now,
            vec![300, 301],
            "the zero, then low stock, per listing"
        );
        // The increases and the other decrease go through the feed, all in one.
        assert_eq!(plan.bulk.len(), 301);
        assert_eq!(plan.bulk.first(), Some(&302), "the decrease leads the feed");
        // While that feed is in flight no second one starts: they wait for it, and
        // nothing is left to send at once.
        let busy = p.plan(&items, true, 1);
        assert!(busy.bulk.is_empty());
        assert_eq!((busy.now.len(), busy.later), (2, 0));
        // More urgent listings than a round of patches: the rest wait for the next.
        let zeros: Vec<String> = (0..8).map(|i| format!("Z{i}")).collect();
        let many: Vec<Candidate<'_>> = zeros.iter().map(|s| cand(s, 0, Some(1))).collect();
        let plan = p.plan(&many, false, 1);
        assert_eq!((plan.now.len(), plan.later), (2, 6));
    }

    #[test]
    fn amazon_urgent_work_never_waits_for_a_feed_in_flight() {
        let mut p = Planner::new(amazon(), false, 200);
        let mut z = cand("A", 0, Some(5));
        z.in_flight = true;
        let mut inc = cand("B", 9, Some(5));
        inc.in_flight = true;
        let plan = p.plan(&[z, inc], true, 1);
        assert_eq!(
            plan.now,
            vec![0],
            "the zero goes now even though a feed holds it"
        );
        assert!(plan.bulk.is_empty());
    }

    #[test]
    fn lifted_limits_send_everything_at_once_zeros_first() {
        let mut p = Planner::new(amazon(), true, 200);
        let items = vec![
            cand("A", 9, None),
            cand("B", 0, Some(1)),
            cand("C", 8, None),
        ];
        let plan = p.plan(&items, false, 1);
        assert_eq!(plan.now, vec![1, 0, 2]);
        assert!(plan.bulk.is_empty());
    }

    #[test]
    fn ebay_keeps_revisions_for_the_zero() {
        let mut p = Planner::new(ebay(), false, 200);
        let day = 20_000;
        for _ in 0..(250 - INCREASE_RESERVE) {
            p.budget.spend("A", day);
        }
        let up = [cand("A", 9, Some(5))];
        let plan = p.plan(&up, false, day);
        assert_eq!(
            plan.held,
            vec![0],
            "no increase once only the reserve is left"
        );
        let down = [cand("A", 4, Some(5))];
        assert_eq!(p.plan(&down, false, day).now, vec![0], "decreases still go");
        for _ in 0..(INCREASE_RESERVE - 1) {
            p.budget.spend("A", day);
        }
        assert_eq!(
            p.plan(&down, false, day).held,
            vec![0],
            "the last one is the zero's"
        );
        let zero = [cand("A", 0, Some(4))];
        assert_eq!(
            p.plan(&zero, false, day).now,
            vec![0],
            "the zero never runs out"
        );
        p.budget.spend("A", day);
        assert_eq!(
            p.plan(&zero, false, day).held,
            vec![0],
            "250 used: nothing left"
        );
        // A new UTC day starts again; another listing has its own budget.
        assert_eq!(p.plan(&up, false, day + 1).now, vec![0]);
        assert_eq!(p.plan(&[cand("B", 9, Some(5))], false, day).now, vec![0]);
        p.budget.exhaust("C", day, 250);
        assert_eq!(p.plan(&[cand("C", 0, Some(1))], false, day).held, vec![0]);
    }

    #[test]
    fn counts_loaded_from_an_earlier_owner_are_spent_already() {
        let mut p = Planner::new(ebay(), false, 200);
        assert!(p.counts_revisions());
        let day = 20_000;
        p.budget.spend("A", day);
        // The stored count includes this process's own revision: the higher one wins.
        p.budget.load(
            day,
            &[("A".into(), 250 - INCREASE_RESERVE), ("B".into(), 0)],
        );
        assert_eq!(p.budget.used("A", day), 250 - INCREASE_RESERVE);
        p.budget.load(day, &[("A".into(), 3)]);
        assert_eq!(p.budget.used("A", day), 250 - INCREASE_RESERVE);
        assert_eq!(p.plan(&[cand("A", 9, Some(5))], false, day).held, vec![0]);
        assert_eq!(p.plan(&[cand("B", 9, Some(5))], false, day).now, vec![0]);
        // Lifted limits count nothing.
        assert!(!Planner::new(ebay(), true, 200).counts_revisions());
    }

    #[test]
    fn a_round_holds_a_quarter_second_of_calls() {
        let tiktok = PushPaths {
            calls_per_s: 10.0,
            ..PushPaths::default()
        };
        let p = Planner::new(tiktok, false, 200);
        assert_eq!(p.round_capacity(), 3);
        assert_eq!(Planner::new(ebay(), false, 200).round_capacity(), 7 * 25);
        assert_eq!(Planner::new(ebay(), true, 200).round_capacity(), usize::MAX);
    }
}
