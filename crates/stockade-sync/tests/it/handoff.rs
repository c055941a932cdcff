//! Scale-out on PostgreSQL: a webhook received by a process that does not own the
//! connection is fetched by the owner, with the owner's connector and rate budget; the
//! receiving process still answers only once the order is stored. With no owner alive
//! it fetches the order itself, so every delivery is answered.

use std::time::{Duration, Instant};

use stockade_core::order::Marketplace;
use stockade_egress::Gateway;
use stockade_sync::{Metrics, Ownership, SyncEngine, SyncOptions};
use stockade_testkit::{Db, TestApp};

use super::{fast_options, sandbox_config};

/// Requests a gateway sent (every host and outcome).
fn calls(g: &Gateway) -> u64 {
    let mut registry = prometheus_client::registry::Registry::default();
    g.telemetry().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .filter(|l| l.starts_with("stockade_egress_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn stored(env: &TestApp) -> i64 {
    env.count("SELECT COUNT(*) FROM orders").await
}

async fn wait_stored(env: &TestApp, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored(env).await < n {
        assert!(Instant::now() < deadline, "orders were not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_answered_ok(env: &TestApp) {
    let failed: Vec<_> = env
        .sb
        .deliveries()
        .into_iter()
        .filter(|d| d.kind != "challenge" && !d.ok())
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}

/// An `api` process (the test app's engine) that takes no connection, and a worker
/// that owns them all; the worker's engine and gateway.
async fn receiver_and_owner(db: Db) -> (TestApp, SyncEngine, Gateway) {
    // The receiving process takes no connection (an `api` process): every webhook it
    // receives is for a connection another process owns.
    let receiver = SyncOptions {
        ownership: Some(Ownership::new("receiver", "api", false)),
        ..fast_options()
    };
    let env = TestApp::start(db, sandbox_config(4, 50), receiver).await;
    let owner = SyncOptions {
        ownership: Some(Ownership::new("owner", "worker", true)),
        ..fast_options()
    };
    let og = crate::process_gateway(&env, Some("owner"));
    let owner = SyncEngine::start(env.vault.clone(), og.clone(), owner)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while owner.owned_connections().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the owner did not take the connections"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(env.sync.owned_connections().is_empty());
    env.settle().await;
    (env, owner, og)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_to_another_process_is_fetched_by_the_owner_postgres() {
    let Some(db) = Db::postgres() else {
        return;
    };
    let (env, owner, og) = receiver_and_owner(db).await;

    // Orders on every marketplace, one at a time: each webhook reaches the receiver,
    // which hands the fetch to the owner and answers once the order is stored.
    let receiver_before = calls(&env.gateway);
    let owner_before = calls(&og);
    let mut placed = 0;
    let handed = Instant::now();
    for m in Marketplace::ALL {
        for _ in 0..4 {
            placed += env.sb.generate_orders(m, 1).len();
            env.sb.flush_deliveries().await;
            all_answered_ok(&env);
            // Answered 2xx only once stored.
            assert_eq!(stored(&env).await, placed as i64);
        }
    }
    eprintln!(
        "{placed} webhooks handed to the owner, one at a time: {:?} each from the order to its answer",
        handed.elapsed() / placed.max(1) as u32
    );
    let receiver_spent = calls(&env.gateway) - receiver_before;
    let owner_spent = calls(&og) - owner_before;
    // The receiver's own calls: at most eBay's signing key for the first signed
    // notification (an application token and the key); twelve self-fetches otherwise.
    assert!(
        receiver_spent <= 2,
        "the receiver called {receiver_spent} times"
    );
    assert!(owner_spent >= 12, "the owner called {owner_spent} times");
    assert_eq!(env.count("SELECT COUNT(*) FROM fetch_requests").await, 0);
    env.settle().await;

    // No owner alive: the receiver fetches after a short wait; the delivery is answered.
    owner.shutdown().await;
    let before = calls(&env.gateway);
    let started = Instant::now();
    placed += env.sb.generate_orders(Marketplace::TikTok, 1).len();
    env.sb.flush_deliveries().await;
    all_answered_ok(&env);
    wait_stored(&env, placed as i64).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        calls(&env.gateway) > before,
        "the receiver fetched it itself"
    );
    env.finish().await;
}

/// The receiving process writes the requests of the deliveries received together in one
/// statement, and looks whether the owner is done with one statement for all the
/// deliveries waiting, every 20 ms: many deliveries at once cost the looks of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_deliveries_share_one_look_postgres() {
    let Some(db) = Db::postgres() else {
        return;
    };
    let (env, owner, _og) = receiver_and_owner(db).await;
    let m = env.sync.metrics();
    let looks = || Metrics::get(&m.handoff_looks);
    let looked_at = || Metrics::get(&m.handoff_looked_at);
    let (looks_before, looked_at_before) = (looks(), looked_at());
    let writes = || Metrics::get(&m.handoff_writes);
    let written = || Metrics::get(&m.handoff_written);
    let (writes_before, written_before) = (writes(), written());
    let om = owner.metrics();
    let removals = || Metrics::get(&om.handoff_removals);
    let removed = || Metrics::get(&om.handoff_removed);
    let (removals_before, removed_before) = (removals(), removed());

    // Forty-two orders delivered at once, every one handed to the owner.
    let started = Instant::now();
    let mut placed = 0;
    for mk in Marketplace::ALL {
        placed += env.sb.generate_orders(mk, 14).len();
    }
    env.sb.flush_deliveries().await;
    let elapsed = started.elapsed();
    all_answered_ok(&env);
    assert_eq!(
        stored(&env).await,
        placed as i64,
        "answered only once stored"
    );
    assert_eq!(env.count("SELECT COUNT(*) FROM fetch_requests").await, 0);

    let looks = looks() - looks_before;
    let looked_at = looked_at() - looked_at_before;
    eprintln!(
        "{placed} deliveries handed over at once in {elapsed:?}: {looks} looks read {looked_at} requests"
    );
    assert!(looks > 0, "the deliveries waited for the owner");
    // One look per 20 ms however many wait (one per delivery would be `placed` times
    // that), and a look reads several waiting deliveries' requests at once.
    let at_most = elapsed.as_millis() as u64 / 20 + 2;
    assert!(
        looks <= at_most,
        "{looks} looks in {elapsed:?} (at most {at_most} for one waiter)"
    );
    assert!(
        looked_at > looks,
        "{looks} looks read {looked_at} requests: one statement per delivery"
    );
    // The receiver writes the requests received together in one statement (one commit
    // and one wake-up for the owner each).
    let (writes, written) = (writes() - writes_before, written() - written_before);
    eprintln!("the receiver wrote {written} requests in {writes} statements");
    // At least one request per order (a marketplace may notify an order more than once).
    assert!(
        written >= placed as u64,
        "{written} requests for {placed} orders"
    );
    assert!(
        writes < written,
        "{written} requests written in {writes} statements: one commit per delivery"
    );
    // The owner removes the requests it fetched several at a time (one commit each).
    let (removals, removed) = (removals() - removals_before, removed() - removed_before);
    eprintln!("the owner removed {removed} requests in {removals} statements");
    assert_eq!(removed, placed as u64);
    assert!(
        removals < removed,
        "{removed} requests removed in {removals} statements: one commit per order"
    );
    owner.shutdown().await;
    env.finish().await;
}
