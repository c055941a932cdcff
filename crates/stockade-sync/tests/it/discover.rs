//! `sku discover` against the simulators: what the marketplace lists is merged into an
//! existing catalog without touching on hand, buffers or maximums; changed ids are
//! updated and pushed again; a dry run writes nothing; a new SKU takes the marketplace's
//! quantity only when asked and reserves the orders that waited for it; odd ids and SKUs
//! differing only in case are reported.

use super::*;
use stockade_marketplaces::{DiscoveredListing, ListingRef};
use stockade_sync::discover::{self, DiscoverOptions};

const LISTING: &str = "SELECT l.listing_id, l.buffer, l.target_version FROM listings l
     JOIN connections c ON c.id = l.connection_id WHERE c.name = $1 AND l.sku = $2";

async fn listing(store: &Store, conn: &str, sku: &str) -> (String, i64, i64) {
    let r = store
        .query_one(LISTING, stockade_store::sql_params![conn, sku])
        .await
        .unwrap()
        .unwrap();
    r.decode().unwrap()
}

fn tiktok(sku: &str, product: &str, quantity: u32) -> DiscoveredListing {
    DiscoveredListing {
        listing: ListingRef {
            sku: sku.into(),
            product_id: Some(product.into()),
            variant_id: Some(format!("{product}9")),
            ..ListingRef::default()
        },
        quantity: Some(quantity),
    }
}

async fn discover_merges_into_an_existing_catalog(db: Db) {
    let env = Env::start(db, sandbox_config(6, 50), fast_options()).await;
    env.settle().await;
    let store = env.store().clone();
    let dry = DiscoverOptions {
        dry_run: true,
        ..DiscoverOptions::default()
    };
    // TikTok and eBay: the imported ids are what the marketplace lists.
    for name in ["tiktok", "ebay"] {
        let r = discover::discover(&env.vault, &env.gateway, name, dry, &ACTOR)
            .await
            .unwrap();
        assert_eq!((r.found, r.unchanged), (6, 6), "{name}: {r:?}");
        assert!(r.new_skus.is_empty() && r.new_listings.is_empty() && r.gone.is_empty());
    }
    // Amazon lists a product type the imported ids lacked: changed. Dry: nothing written.
    let before = listing(&store, "amazon", "SKU-0001").await;
    let r = discover::discover(&env.vault, &env.gateway, "amazon", dry, &ACTOR)
        .await
        .unwrap();
    assert_eq!((r.changed.len(), r.unchanged), (6, 0), "{r:?}");
    assert_eq!(listing(&store, "amazon", "SKU-0001").await, before);
    let r = discover::discover(
        &env.vault,
        &env.gateway,
        "amazon",
        DiscoverOptions::default(),
        &ACTOR,
    )
    .await
    .unwrap();
    assert_eq!(r.changed.len(), 6);
    let after = listing(&store, "amazon", "SKU-0001").await;
    assert!(after.0.ends_with(":PRODUCT"), "{after:?}");
    // The buffer stays; the target goes out again, to the new ids.
    assert_eq!(after.1, before.1);
    assert!(after.2 > before.2, "{before:?} {after:?}");
    assert_eq!(stock_of(&store, "SKU-0001").await, (100, 0));
    env.settle().await;
    let again = discover::discover(
        &env.vault,
        &env.gateway,
        "amazon",
        DiscoverOptions::default(),
        &ACTOR,
    )
    .await
    .unwrap();
    assert_eq!((again.changed.len(), again.unchanged), (0, 6));

    // Orders for a SKU the catalog lacks wait, unmatched, for discover to add it.
    env.sync
        .ingest(
            "tiktok",
            order("D1", OrderStatus::Placed, 10, &[("l1", "NEW-9", 2)]),
        )
        .await
        .unwrap();
    let conn = connections::get(&store, "tiktok").await.unwrap();
    let found = vec![
        tiktok("NEW-9", "771", 7),
        // Known SKU: its on hand stays, whatever the marketplace shows.
        DiscoveredListing {
            quantity: Some(999),
            ..tiktok("SKU-0002", "772", 999)
        },
        // Differs from SKU-0003 in case only: added, and warned about.
        tiktok("sku-0003", "773", 1),
        // An id Stockade cannot store (or export as CSV): skipped.
        tiktok("ODD-1", "a b", 1),
    ];
    let r = discover::apply(
        &store,
        &conn,
        found,
        DiscoverOptions {
            take_quantity: true,
            dry_run: false,
        },
        &ACTOR,
    )
    .await
    .unwrap();
    let new: Vec<(&str, i64)> = r
        .new_skus
        .iter()
        .map(|n| (n.sku.as_str(), n.on_hand))
        .collect();
    // The marketplace shows 7 after selling D1's 2 (still on the shelf): on hand 9, not 7
    // (regression: --take-quantity counted this connection's open orders twice).
    assert_eq!(new, [("NEW-9", 9), ("sku-0003", 1)], "{r:?}");
    assert_eq!(r.changed.len(), 1, "{r:?}");
    assert_eq!(r.case_conflicts, [("sku-0003".into(), "SKU-0003".into())]);
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].0, "ODD-1");
    // Listings not in this read are gone, and kept.
    let gone: Vec<&str> = r.gone.iter().map(|g| g.sku.as_str()).collect();
    assert_eq!(
        gone,
        ["SKU-0001", "SKU-0003", "SKU-0004", "SKU-0005", "SKU-0006"]
    );
    assert_eq!((r.matched_lines, r.reserved_lines), (1, 1));
    assert_eq!(stock_of(&store, "NEW-9").await, (9, 2));
    assert_eq!(stock_of(&store, "SKU-0002").await.0, 100);
    assert!(!listing(&store, "tiktok", "SKU-0001").await.0.is_empty());
    assert!(catalog::verify_stock(&store).await.unwrap().is_empty());
    assert!(
        stockade_sync::unmatched::verify_lines(&store)
            .await
            .unwrap()
            .is_empty()
    );
    let audited = env
        .count("SELECT COUNT(*) FROM audit WHERE action = 'catalog.discover'")
        .await;
    assert_eq!(audited, 6 + 3);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_merges_into_an_existing_catalog_sqlite() {
    discover_merges_into_an_existing_catalog(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_merges_into_an_existing_catalog_postgres() {
    if let Some(db) = Db::postgres() {
        discover_merges_into_an_existing_catalog(db).await;
    }
}
