//! Revisions per listing per UTC day (eBay: 250), shared by a connection's owners
//! through the database (`listing_revisions`, `stockade_store::revisions`).
//!
//! Both the pusher's planner (which keeps the last revisions for decreases to zero) and
//! the egress gateway's daily count (which refuses a revision past the cap without a
//! call) live in the memory of the process that owns the connection. When the lease
//! moves (the owner died, a rebalance, a restart), the new owner would start the day at
//! zero and could spend a listing's revisions past the cap: eBay then refuses, maybe a
//! decrease to zero. So:
//! - each revision is counted in the database **before** its call goes out, fenced by
//!   the connection's lease ([`spend`]): a call that reached the marketplace is counted
//!   even if the process dies before it records the confirmed quantity (one too many is
//!   safe, one too few is not), and a process that lost the lease neither counts nor
//!   sends;
//! - whenever the pusher finds itself the owner under a lease it has not loaded for (a
//!   takeover; at start without ownership: SQLite's one process), it loads today's
//!   counts into the planner and into the connector's (gateway's) count ([`load`]) before
//!   it sends anything, and removes the connection's rows of past days.
//!
//! Only when the marketplace caps revisions and rate limits are not lifted.

use stockade_marketplaces::Connector;

use super::plan::Planner;
use super::{Inner, Live};

/// Which lease the counts were loaded under: the lease's token, `0` without ownership.
pub(super) type Loaded = Option<i64>;

/// The lease this process acts under now for `live` (`Some(0)` without ownership; `None`
/// when it does not hold it).
pub(super) fn current(live: &Live) -> Loaded {
    if live.owned.enabled() {
        live.owned.grant(live.id).map(|g| g.token)
    } else {
        Some(0)
    }
}

/// Load today's counts when the lease changed since the last load. False: they could
/// not be read (nothing may be sent this round).
pub(super) async fn ensure_loaded(
    inner: &Inner,
    live: &Live,
    planner: &mut Planner,
    loaded: &mut Loaded,
) -> bool {
    if !planner.counts_revisions() {
        return true;
    }
    let now = current(live);
    if now.is_none() || *loaded == now {
        return true;
    }
    let day = super::plan::utc_day();
    let used = match inner.store.revisions_used(live.id, day).await {
        Ok(u) => u,
        Err(e) => {
            if e.is_unavailable() {
                tracing::debug!(connection = %live.name, error = %e, "could not read today's listing revisions");
            } else {
                tracing::warn!(connection = %live.name, error = %e, "could not read today's listing revisions; nothing is pushed until they are read");
            }
            return false;
        }
    };
    planner.budget.load(day, &used);
    live.connector.seed_revisions(&used);
    if !used.is_empty() {
        tracing::info!(
            connection = %live.name,
            listings = used.len(),
            "loaded today's listing revisions of connection {} ({} listings revised today)",
            live.name,
            used.len()
        );
    }
    *loaded = now;
    true
}

/// Count one revision of each of `skus` on `day` before the calls go out. False: not
/// counted (the lease was lost, or the database is away): nothing may be sent.
pub(super) async fn spend(inner: &Inner, live: &Live, day: i64, skus: &[&str]) -> bool {
    let grant = live.owned.grant(live.id);
    if live.owned.enabled() && grant.is_none() {
        return false;
    }
    match inner
        .store
        .spend_revisions(live.id, day, skus, grant.as_ref())
        .await
    {
        Ok(()) => true,
        Err(e) => {
            if !super::owner::lost(inner, live, &e) && !e.is_unavailable() {
                tracing::warn!(connection = %live.name, error = %e, "could not count listing revisions; nothing is pushed this round");
            }
            false
        }
    }
}

/// The marketplace refused `skus` for today: stored as spent to the cap.
pub(super) async fn exhaust(inner: &Inner, live: &Live, day: i64, skus: &[&str], limit: u32) {
    if let Err(e) = inner
        .store
        .exhaust_revisions(live.id, day, skus, limit)
        .await
    {
        tracing::debug!(connection = %live.name, error = %e, "could not store refused listing revisions");
    }
}

/// The connection's rows of past days go: at the pusher's first round as owner and at
/// each UTC day's roll-over.
pub(super) async fn roll_over(inner: &Inner, live: &Live, planner: &Planner, pruned: &mut i64) {
    let day = super::plan::utc_day();
    if *pruned == day || !planner.counts_revisions() {
        return;
    }
    match inner.store.prune_revisions(live.id, day).await {
        Ok(_) => *pruned = day,
        Err(e) => {
            tracing::debug!(connection = %live.name, error = %e, "could not remove past days' listing revisions");
        }
    }
}
