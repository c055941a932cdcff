//! eBay's revisions per listing per UTC day are counted in the database and follow the
//! connection to its next owner: a process that takes the connection over (another
//! process on PostgreSQL, the next start on SQLite) spends only what is left of the
//! day and keeps the last revision for a decrease to zero.

use std::time::{Duration, Instant};

use stockade_core::order::Marketplace;
use stockade_sync::catalog::{self, MergeSku};
use stockade_sync::{Ownership, SyncEngine, SyncOptions};
use stockade_testkit::{Db, TestApp};

use super::{ACTOR, fast_options, sandbox_config};

/// eBay's cap in this test (the simulator's too). A listing keeps its last ten
/// revisions (`INCREASE_RESERVE`) for decreases once increases stop.
const LIMIT: u32 = 15;

async fn set_on_hand(env: &TestApp, sku: &str, on_hand: i64) {
    let row = MergeSku {
        sku: sku.into(),
        on_hand: Some(on_hand),
        low_stock_threshold: None,
        listings: vec![],
    };
    catalog::merge(env.store(), &[row], &ACTOR, "catalog.import")
        .await
        .unwrap();
}

/// (quantity shown, revisions counted today) of the eBay listing, on the simulator.
fn on_ebay(env: &TestApp, seller: &str, sku: &str) -> (u32, u32) {
    let l = env.sb.listing(Marketplace::Ebay, seller, sku).unwrap();
    (l.quantity, l.revisions_today)
}

/// Wait until the eBay listing shows `quantity` (the pusher of `sync` woken meanwhile).
async fn shows(env: &TestApp, sync: &SyncEngine, seller: &str, sku: &str, quantity: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if on_ebay(env, seller, sku).0 == quantity {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "eBay never showed {quantity}: {:?}",
            on_ebay(env, seller, sku)
        );
        sync.wake_pushers();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Give the pusher of `sync` rounds to (not) push; the listing must still show `quantity`.
async fn holds(env: &TestApp, sync: &SyncEngine, seller: &str, sku: &str, quantity: u32) {
    for _ in 0..15 {
        sync.wake_pushers();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        on_ebay(env, seller, sku).0,
        quantity,
        "the push was held back for the listing's last revisions"
    );
}

async fn stored_count(env: &TestApp, sku: &str) -> i64 {
    env.store()
        .count(
            "SELECT CAST(COALESCE(SUM(r.used), 0) AS BIGINT) FROM listing_revisions r
               JOIN connections c ON c.id = r.connection_id
              WHERE c.name = 'ebay' AND r.sku = $1",
            stockade_store::sql_params![sku],
        )
        .await
        .unwrap()
}

async fn a_new_owner_spends_only_what_is_left_of_the_day(db: Db) {
    let postgres = db.pg.is_some();
    let sandbox = stockade_sandbox::SandboxConfig {
        ebay_revision_cap: LIMIT,
        ..sandbox_config(3, 50)
    };
    let opts = SyncOptions {
        ebay_daily_revisions: Some(LIMIT),
        ..fast_options()
    };
    // The seller's limits: the planner budgets eBay's revisions.
    let env = TestApp::start_limited(db, sandbox, opts.clone(), true).await;
    let first = env.sb.listings(Marketplace::Ebay).remove(0);
    let (seller, sku) = (first.seller_id.clone(), first.sku.clone());
    // The catalog's first push (100 on hand − buffer 2) is the listing's first revision;
    // four decreases make five.
    env.settle().await;
    assert_eq!(on_ebay(&env, &seller, &sku), (98, 1));
    for (i, on_hand) in [90, 80, 70, 60].into_iter().enumerate() {
        set_on_hand(&env, &sku, on_hand).await;
        shows(&env, &env.sync, &seller, &sku, (on_hand - 2) as u32).await;
        assert_eq!(on_ebay(&env, &seller, &sku).1, 2 + i as u32);
    }
    let spent = 5;
    assert_eq!(stored_count(&env, &sku).await, i64::from(spent));

    // The owner stops (on PostgreSQL it hands its leases back); another engine with its
    // own gateway takes the connection: a process taking over, or the next start.
    env.sync.shutdown().await;
    let next = SyncOptions {
        lift_rate_limits: false,
        ownership: postgres.then(|| Ownership::new("next-owner", "worker", true)),
        ..opts
    };
    let sync = SyncEngine::start(env.vault.clone(), crate::process_gateway(&env, None), next)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sync.owned_connections().contains(&"ebay".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "the connection was not taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 15 − 5 = 10 left: only the reserve, so an increase waits for tomorrow (a new
    // owner starting the day at zero would push it).
    set_on_hand(&env, &sku, 70).await;
    holds(&env, &sync, &seller, &sku, 58).await;
    assert_eq!(on_ebay(&env, &seller, &sku).1, spent);

    // Decreases go while two or more are left: nine of them (5 + 9 = 14 spent).
    let mut on_hand = 60;
    for _ in 0..(LIMIT - spent - 1) {
        on_hand -= 2;
        set_on_hand(&env, &sku, on_hand).await;
        shows(&env, &sync, &seller, &sku, (on_hand - 2) as u32).await;
    }
    assert_eq!(on_ebay(&env, &seller, &sku).1, LIMIT - 1);
    // The last revision is the zero's: a tenth decrease waits...
    set_on_hand(&env, &sku, on_hand - 2).await;
    holds(&env, &sync, &seller, &sku, (on_hand - 2) as u32).await;
    // ...and the sell-out still reaches eBay, which never refused a revision.
    set_on_hand(&env, &sku, 2).await;
    shows(&env, &sync, &seller, &sku, 0).await;
    assert_eq!(on_ebay(&env, &seller, &sku), (0, LIMIT));
    assert_eq!(stored_count(&env, &sku).await, i64::from(LIMIT));
    // The other listings were pushed by both owners too, counted the same way.
    for l in env.sb.listings(Marketplace::Ebay) {
        assert_eq!(
            stored_count(&env, &l.sku).await,
            i64::from(l.revisions_today),
            "{}",
            l.sku
        );
    }
    sync.shutdown().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_spends_only_what_is_left_of_the_day_sqlite() {
    a_new_owner_spends_only_what_is_left_of_the_day(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_spends_only_what_is_left_of_the_day_postgres() {
    if let Some(db) = Db::postgres() {
        a_new_owner_spends_only_what_is_left_of_the_day(db).await;
    }
}
