//! One round of quantity changes against the simulators (Amazon, TikTok, eBay): the
//! calls overlap (the simulator counts how many were in flight at once) within the
//! connection's bound, acknowledgements come back in the order given, a revocation
//! mid-round stops the round, and Amazon's 5 patches a second still hold.

use std::time::Duration;

use stockade_marketplaces::{
    AmazonConnector, Connector, ErrorKind, ListingRef, PUSH_CONCURRENCY, QuantityAck,
    QuantityUpdate,
};
use stockade_sandbox::{Faults, Marketplace, SandboxConfig};

use crate::contract::{Harness, config};

const AMAZON_PATCH: &str = "PATCH /listings/2021-08-01/items/{seller_id}/{sku}";
const TIKTOK_UPDATE: &str = "POST /product/202309/products/{product_id}/inventory/update";

/// Every listing starts with this many (the sandbox's default).
const INITIAL: u32 = 100;

/// Injected on every simulator request so that calls sent together surely overlap.
const LATENCY_MS: u64 = 25;

fn started(h: &Harness, m: Marketplace, op: &str) -> u64 {
    h.sb.in_flight(m).get(op).map_or(0, |c| c.started)
}

fn peak(h: &Harness, m: Marketplace, op: &str) -> u64 {
    h.sb.in_flight(m).get(op).map_or(0, |c| c.peak)
}

/// Amazon with feeds off: every update is one patchListingsItem.
fn amazon_patching(h: &Harness) -> AmazonConnector {
    let (mut cfg, creds) = h.amazon_parts();
    cfg.feed_threshold = usize::MAX;
    h.amazon_with(cfg, creds)
}

/// The same, with the gateway's patch bucket lifted (as benchmarks of the server alone
/// do), so only the connection's own bound limits the overlap.
fn amazon_patching_unpaced(h: &Harness) -> AmazonConnector {
    let c = amazon_patching(h);
    h.gateway
        .define_limit("amazon.patchListingsItem", 10_000.0, 10_000);
    c
}

/// TikTok with the gateway's inventory bucket lifted.
fn tiktok_unpaced(h: &Harness) -> stockade_marketplaces::AnyConnector {
    let c = h.connector(Marketplace::TikTok);
    h.gateway
        .define_limit("tiktok.inventory.update", 10_000.0, 10_000);
    c
}

fn amazon_updates(n: usize) -> Vec<QuantityUpdate> {
    (1..=n)
        .map(|i| QuantityUpdate {
            sku: format!("SKU-{i:04}"),
            // Zero first, as the pusher orders them; never the initial 100.
            quantity: (i as u32 - 1) * 3,
            listing: ListingRef::sku(format!("SKU-{i:04}")),
        })
        .collect()
}

/// Every TikTok listing of the first shop (two SKUs per product).
fn tiktok_updates(h: &Harness) -> Vec<QuantityUpdate> {
    let shop = h.seller(Marketplace::TikTok);
    h.sb.listings(Marketplace::TikTok)
        .into_iter()
        .filter(|l| l.seller_id == shop)
        .enumerate()
        .map(|(i, l)| QuantityUpdate {
            sku: l.sku.clone(),
            quantity: i as u32 * 3,
            listing: ListingRef {
                sku: l.sku.clone(),
                product_id: Some(l.product_id.clone()),
                variant_id: Some(l.sku_id.clone()),
                warehouse_ids: vec![l.warehouse_id.clone()],
                ..ListingRef::default()
            },
        })
        .collect()
}

fn assert_in_input_order(acks: &[QuantityAck], updates: &[QuantityUpdate]) {
    assert_eq!(acks.len(), updates.len());
    for (a, u) in acks.iter().zip(updates) {
        assert_eq!((&a.sku, a.quantity), (&u.sku, u.quantity), "{acks:?}");
    }
}

/// Each listing holds its update's quantity if and only if the update was accepted.
fn assert_simulator_holds(h: &Harness, m: Marketplace, acks: &[QuantityAck]) {
    let seller = h.seller(m);
    for a in acks {
        let l = h.sb.listing(m, &seller, &a.sku).unwrap();
        let want = if a.accepted { a.quantity } else { INITIAL };
        assert_eq!(l.quantity, want, "{a:?}");
    }
}

/// The simulators with 40 SKUs per marketplace.
async fn forty_skus() -> Harness {
    Harness::start(
        SandboxConfig {
            skus: 40,
            ..config()
        },
        &[],
    )
    .await
}

fn with_latency(h: &Harness, m: Marketplace) {
    h.sb.set_faults(
        m,
        Faults {
            latency_ms: LATENCY_MS,
            ..Faults::none()
        },
    );
}

#[tokio::test]
async fn amazon_patches_of_one_round_overlap_within_the_bound() {
    let h = forty_skus().await;
    let c = amazon_patching_unpaced(&h);
    with_latency(&h, Marketplace::Amazon);
    let updates = amazon_updates(40);
    let acks = c.set_quantities(&updates).await.unwrap();
    assert_in_input_order(&acks, &updates);
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    assert_simulator_holds(&h, Marketplace::Amazon, &acks);
    assert_eq!(started(&h, Marketplace::Amazon, AMAZON_PATCH), 40);
    let peak = peak(&h, Marketplace::Amazon, AMAZON_PATCH);
    assert!(
        peak > 1 && peak <= PUSH_CONCURRENCY as u64,
        "{peak} patches in flight at once"
    );

    // One SKU three times in a round: its patches never overlap, so the last one wins.
    let mut repeated = amazon_updates(6);
    for (i, q) in [(1, 11), (3, 12), (5, 13)] {
        repeated[i] = QuantityUpdate {
            quantity: q,
            ..updates[0].clone()
        };
    }
    let acks = c.set_quantities(&repeated).await.unwrap();
    assert_in_input_order(&acks, &repeated);
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    let seller = h.seller(Marketplace::Amazon);
    let l =
        h.sb.listing(Marketplace::Amazon, &seller, "SKU-0001")
            .unwrap();
    assert_eq!(l.quantity, 13);
    h.finish().await;
}

/// The gateway's cap (set by the sync engine while deliveries queue) bounds a round's
/// calls in flight on every marketplace; lifted, the rounds overlap up to the bound again.
#[tokio::test]
async fn a_round_cap_on_the_gateway_bounds_the_calls_in_flight() {
    let h = forty_skus().await;
    let amazon = amazon_patching_unpaced(&h);
    let tiktok = tiktok_unpaced(&h);
    with_latency(&h, Marketplace::Amazon);
    with_latency(&h, Marketplace::TikTok);
    let tiktok_round = tiktok_updates(&h);
    for cap in [Some(2), None] {
        h.gateway.cap_round_calls(cap);
        h.sb.reset_in_flight(Marketplace::Amazon);
        h.sb.reset_in_flight(Marketplace::TikTok);
        let mut updates = amazon_updates(24);
        if cap.is_none() {
            updates.iter_mut().for_each(|u| u.quantity += 1);
        }
        let acks = amazon.set_quantities(&updates).await.unwrap();
        assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
        let acks = tiktok.set_quantities(&tiktok_round).await.unwrap();
        assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
        let peaks = (
            peak(&h, Marketplace::Amazon, AMAZON_PATCH),
            peak(&h, Marketplace::TikTok, TIKTOK_UPDATE),
        );
        match cap {
            Some(c) => assert_eq!(peaks, (c as u64, c as u64), "capped at {c}"),
            None => assert!(
                peaks.0 > 2 && peaks.1 > 2,
                "lifted, still {peaks:?} in flight"
            ),
        }
    }
    h.finish().await;
}

/// Revoke the seller once `after` calls of `op` reached the simulator.
async fn revoke_after(h: &Harness, m: Marketplace, op: &str, after: u64) {
    let seller = h.seller(m);
    while started(h, m, op) < after {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    h.sb.revoke(m, &seller).unwrap();
}

/// After a revocation mid-round: the calls that reached the simulator are the first ones
/// (they start in order), every later update failed with the fatal error without being
/// sent, and what was accepted is what the simulator holds.
fn assert_stopped(
    h: &Harness,
    m: Marketplace,
    acks: &[QuantityAck],
    reached: usize,
    per_call: usize,
) {
    let fatal = |a: &QuantityAck| {
        !a.accepted
            && a.error
                .as_ref()
                .is_some_and(|e| matches!(e.kind, ErrorKind::Revoked | ErrorKind::Auth))
    };
    let sent = reached * per_call;
    assert!(sent < acks.len(), "every call was sent ({reached})");
    assert!(acks[sent..].iter().all(fatal), "{acks:?}");
    assert!(acks.iter().all(|a| a.accepted || fatal(a)), "{acks:?}");
    // Only calls finished before the revocation made room for the later ones.
    assert!(
        acks.iter().filter(|a| a.accepted).count() >= per_call,
        "{acks:?}"
    );
    assert_simulator_holds(h, m, acks);
}

/// One round of `updates` (calls of `per_call` updates each, on operation `op`) with the
/// seller revoked once 10 calls reached the simulator: acks in order, every update after
/// the calls that reached it failed unsent, never more than the bound in flight.
async fn round_stops_at_revocation<C: Connector>(
    h: &Harness,
    c: &C,
    m: Marketplace,
    op: &str,
    updates: &[QuantityUpdate],
    per_call: usize,
) {
    with_latency(h, m);
    let (acks, ()) = tokio::join!(c.set_quantities(updates), revoke_after(h, m, op, 10));
    let acks = acks.unwrap();
    assert_in_input_order(&acks, updates);
    let reached = started(h, m, op);
    assert!(reached >= 10, "{reached}");
    assert_stopped(h, m, &acks, reached as usize, per_call);
    assert!(peak(h, m, op) <= PUSH_CONCURRENCY as u64);
}

#[tokio::test]
async fn amazon_round_stops_at_a_revocation_and_sends_nothing_more() {
    let h = forty_skus().await;
    let c = amazon_patching_unpaced(&h);
    c.refresh_token().await.unwrap();
    let updates = amazon_updates(40);
    round_stops_at_revocation(&h, &c, Marketplace::Amazon, AMAZON_PATCH, &updates, 1).await;
    h.finish().await;
}

#[tokio::test]
async fn tiktok_product_calls_of_one_round_overlap_within_the_bound() {
    let h = Harness::start(
        SandboxConfig {
            skus: 80,
            ..config()
        },
        &[],
    )
    .await;
    let c = tiktok_unpaced(&h);
    with_latency(&h, Marketplace::TikTok);
    let updates = tiktok_updates(&h);
    assert_eq!(updates.len(), 80);
    let acks = c.set_quantities(&updates).await.unwrap();
    assert_in_input_order(&acks, &updates);
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    assert_simulator_holds(&h, Marketplace::TikTok, &acks);
    // One call per product (two SKUs each).
    assert_eq!(started(&h, Marketplace::TikTok, TIKTOK_UPDATE), 40);
    let peak = peak(&h, Marketplace::TikTok, TIKTOK_UPDATE);
    assert!(
        peak > 1 && peak <= PUSH_CONCURRENCY as u64,
        "{peak} product calls in flight at once"
    );
    h.finish().await;
}

#[tokio::test]
async fn tiktok_round_stops_at_a_revocation_and_sends_nothing_more() {
    let h = Harness::start(
        SandboxConfig {
            skus: 80,
            ..config()
        },
        &[],
    )
    .await;
    let c = tiktok_unpaced(&h);
    c.refresh_token().await.unwrap();
    // Listed product by product, so the first calls carry the first updates.
    let updates = tiktok_updates(&h);
    for pair in updates.chunks(2) {
        assert_eq!(pair[0].listing.product_id, pair[1].listing.product_id);
    }
    round_stops_at_revocation(&h, &c, Marketplace::TikTok, TIKTOK_UPDATE, &updates, 2).await;
    h.finish().await;
}

#[tokio::test]
async fn amazon_patches_sent_together_still_keep_to_five_a_second() {
    let h = Harness::start(
        SandboxConfig {
            skus: 15,
            rate_limits: true,
            ..config()
        },
        &[],
    )
    .await;
    let c = amazon_patching(&h);
    c.refresh_token().await.unwrap();
    let updates = amazon_updates(15);
    let acks = c.set_quantities(&updates).await.unwrap();
    assert_in_input_order(&acks, &updates);
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    assert_simulator_holds(&h, Marketplace::Amazon, &acks);
    // The gateway's bucket (5 a second, burst 5) let the waiting patches out one by one,
    // in order and without spinning: 15 first attempts spanning at least two seconds.
    // (A patch let out exactly on its token's due time may reach the simulator's own
    // bucket a hair early and be answered 429; the gateway then retries it.)
    let first: Vec<i64> = h
        .log_since(0)
        .await
        .into_iter()
        .filter(|r| r.operation == "amazon.patchListingsItem" && r.attempt == 1)
        .map(|r| r.at_ms)
        .collect();
    assert_eq!(first.len(), 15, "{first:?}");
    let span = first.iter().max().unwrap() - first.iter().min().unwrap();
    assert!(span >= 1_900, "15 patches in {span} ms");
    h.finish().await;
}

#[tokio::test]
async fn ebay_bulk_calls_of_one_round_overlap_within_the_bound() {
    let h = Harness::start(
        SandboxConfig {
            skus: 100,
            ..config()
        },
        &[],
    )
    .await;
    let c = h.connector(Marketplace::Ebay);
    h.gateway.define_shared_limit(
        stockade_marketplaces::ebay::APP_BUCKET,
        &stockade_marketplaces::ebay::OPERATIONS,
        10_000.0,
        10_000,
    );
    with_latency(&h, Marketplace::Ebay);
    let seller = h.seller(Marketplace::Ebay);
    let updates: Vec<QuantityUpdate> =
        h.sb.listings(Marketplace::Ebay)
            .into_iter()
            .filter(|l| l.seller_id == seller)
            .enumerate()
            .map(|(i, l)| QuantityUpdate {
                sku: l.sku.clone(),
                quantity: i as u32 * 3,
                listing: ListingRef {
                    sku: l.sku.clone(),
                    offer_ids: vec![l.offer_id.clone()],
                    ..ListingRef::default()
                },
            })
            .collect();
    assert_eq!(updates.len(), 100);
    let acks = c.set_quantities(&updates).await.unwrap();
    assert_in_input_order(&acks, &updates);
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    assert_simulator_holds(&h, Marketplace::Ebay, &acks);
    // Four calls of 25.
    let bulk = "POST /sell/inventory/v1/bulk_update_price_quantity";
    assert_eq!(started(&h, Marketplace::Ebay, bulk), 4);
    let peak = peak(&h, Marketplace::Ebay, bulk);
    assert!(peak > 1, "{peak} bulk calls in flight at once");
    h.finish().await;
}
