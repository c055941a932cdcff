//! Several processes: a batch ingested in one process wakes the pushers another process
//! owns through the database (`Topic::Listings`), rather than leaving them to their
//! one-second tick; every channel still converges.

use std::time::{Duration, Instant};

use stockade_core::order::Marketplace;
use stockade_sync::{Ownership, SyncEngine, SyncOptions, catalog};
use stockade_testkit::{Db, TestApp};

use super::{fast_options, sandbox_config};

fn woken(sync: &SyncEngine) -> (u64, u64) {
    let m = sync.metrics();
    (
        m.pushers_woken_elsewhere
            .load(std::sync::atomic::Ordering::Relaxed),
        m.pushers_woken_by_others
            .load(std::sync::atomic::Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_wakes_the_pushers_another_process_owns_postgres() {
    let Some(db) = Db::postgres() else {
        return;
    };
    // Two processes taking work: each owns some of the three connections.
    let a = SyncOptions {
        ownership: Some(Ownership::new("a", "all", true)),
        ..fast_options()
    };
    let env = TestApp::start(db, sandbox_config(8, 50), a).await;
    let bg = crate::process_gateway(&env, Some("b"));
    let b = SyncEngine::start(
        env.vault.clone(),
        bg,
        SyncOptions {
            ownership: Some(Ownership::new("b", "worker", true)),
            ..fast_options()
        },
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.sync.owned_connections().is_empty() || b.owned_connections().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the connections were not shared: a {:?}, b {:?}",
            env.sync.owned_connections(),
            b.owned_connections()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.settle().await;
    let (a0, b0) = (woken(&env.sync), woken(&b));
    // Orders on every channel: each batch changes SKUs listed on every connection, some
    // of them owned by the other process.
    let mut placed = 0;
    for m in Marketplace::ALL {
        placed += env.sb.generate_orders(m, 10).len();
    }
    env.sb.flush_deliveries().await;
    env.settle().await;
    let (a1, b1) = (woken(&env.sync), woken(&b));
    let sent = (a1.0 - a0.0) + (b1.0 - b0.0);
    let received = (a1.1 - a0.1) + (b1.1 - b0.1);
    assert!(
        sent > 0 && received > 0,
        "wake-ups across processes: {sent} sent, {received} received (a {a1:?}, b {b1:?})"
    );
    // Every order stored once and every channel showing the stock.
    assert_eq!(
        env.count("SELECT COUNT(*) FROM orders").await,
        placed as i64
    );
    assert!(catalog::verify_stock(env.store()).await.unwrap().is_empty());
    let stock = catalog::stock(env.store()).await.unwrap();
    for m in Marketplace::ALL {
        for l in env.sb.listings(m) {
            let want = stock.iter().find(|r| r.sku == l.sku).unwrap().available - 2;
            assert_eq!(i64::from(l.quantity), want.max(0), "{m} {}", l.sku);
        }
    }
    b.shutdown().await;
    env.finish().await;
}
