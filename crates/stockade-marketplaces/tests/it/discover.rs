//! Listing discovery against the simulators: every listing of the seller, over several
//! pages, with the ids a quantity push needs and the marketplace's quantity, paced by the
//! published rate limits.

use std::collections::BTreeMap;
use std::time::Duration;

use stockade_marketplaces::{Connector, DiscoveredListing, QuantityUpdate};
use stockade_sandbox::{Marketplace, SandboxConfig};

use crate::contract::{Harness, config};

/// More than one page everywhere: TikTok 100 products (2 SKUs each) a page, Amazon 20
/// items, eBay 200 inventory items.
const SKUS: usize = 250;

fn by_sku(found: &[DiscoveredListing]) -> BTreeMap<String, &DiscoveredListing> {
    found.iter().map(|d| (d.listing.sku.clone(), d)).collect()
}

async fn discovers_every_listing(m: Marketplace, op: &str, pages: usize) {
    let h = Harness::start(
        SandboxConfig {
            skus: SKUS,
            rate_limits: true,
            ..config()
        },
        &[],
    )
    .await;
    let seller = h.seller(m);
    // One listing with a quantity of its own, to see it read back.
    h.sb.set_quantity(m, &seller, "SKU-0007", 7).unwrap();
    let c = h.connector(m);
    let found = c.discover_listings().await.unwrap();
    assert_eq!(found.len(), SKUS, "{m:?}");
    let found = by_sku(&found);
    for l in h.sb.listings(m) {
        let d = found
            .get(&l.sku)
            .unwrap_or_else(|| panic!("{m:?}: {} not discovered", l.sku));
        assert_eq!(d.quantity, Some(l.quantity), "{m:?} {}", l.sku);
        let r = &d.listing;
        match m {
            Marketplace::TikTok => {
                assert_eq!(r.product_id.as_deref(), Some(l.product_id.as_str()));
                assert_eq!(r.variant_id.as_deref(), Some(l.sku_id.as_str()));
            }
            Marketplace::Amazon => {
                assert_eq!(r.product_id.as_deref(), Some(l.asin.as_str()));
                assert_eq!(r.product_type.as_deref(), Some(l.product_type.as_str()));
            }
            Marketplace::Ebay => assert_eq!(r.offer_ids, vec![l.offer_id.clone()]),
        }
    }
    assert_eq!(found["SKU-0007"].quantity, Some(7));
    let rows = h.log_since(0).await;
    let calls: Vec<_> = rows.iter().filter(|r| r.operation == op).collect();
    assert_eq!(
        calls.iter().filter(|r| r.status == Some(200)).count(),
        pages,
        "{m:?}: {calls:?}"
    );
    // The discovered ids push quantities.
    let d = found["SKU-0003"];
    let acks = c
        .set_quantities(&[QuantityUpdate {
            sku: "SKU-0003".into(),
            quantity: 42,
            listing: d.listing.clone(),
        }])
        .await
        .unwrap();
    assert!(acks[0].accepted, "{m:?}: {acks:?}");
    h.sb.flush_deliveries().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.sb.listing(m, &seller, "SKU-0003").unwrap().quantity != 42 {
        assert!(std::time::Instant::now() < deadline, "{m:?}: not pushed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.finish().await;
}

#[tokio::test]
async fn tiktok_discovers_every_product_sku_over_pages() {
    discovers_every_listing(Marketplace::TikTok, "tiktok.products.search", 2).await;
}

#[tokio::test]
async fn amazon_discovers_every_listing_over_pages_within_the_rate_limit() {
    discovers_every_listing(Marketplace::Amazon, "amazon.searchListingsItems", 13).await;
}

#[tokio::test]
async fn ebay_discovers_every_inventory_item_and_its_offer_over_pages() {
    discovers_every_listing(Marketplace::Ebay, "ebay.inventory.items", 2).await;
}

/// searchListingsItems allows 5 requests a second (burst 5) per selling partner: the
/// thirteen pages of 250 listings take at least (13 − 5) / 5 s, and the simulator (which
/// enforces the same plan) never has to refuse one.
#[tokio::test]
async fn amazon_discovery_keeps_to_the_search_usage_plan() {
    let h = Harness::start(
        SandboxConfig {
            skus: SKUS,
            rate_limits: true,
            ..config()
        },
        &[],
    )
    .await;
    let c = h.connector(Marketplace::Amazon);
    assert_eq!(c.discover_listings().await.unwrap().len(), SKUS);
    let rows = h.log_since(0).await;
    let calls: Vec<_> = rows
        .iter()
        .filter(|r| r.operation == "amazon.searchListingsItems")
        .collect();
    let ok: Vec<_> = calls.iter().filter(|r| r.status == Some(200)).collect();
    assert_eq!(ok.len(), 13, "{calls:?}");
    let span = ok.last().unwrap().at_ms - ok.first().unwrap().at_ms;
    assert!(span >= 1_400, "13 pages in {span} ms: {calls:?}");
    let refused = calls.iter().filter(|r| r.status == Some(429)).count();
    assert!(refused <= 1, "{refused} refused: {calls:?}");
    h.finish().await;
}
