//! `App::build` on port 0 with the simulators delivering signed webhooks, stopped while
//! deliveries are in flight: every order the server acknowledged (2xx) is stored (an
//! order stored but not acknowledged is fine: the marketplace delivers it again), and
//! the stop completes within its stated bound.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use stockade_core::order::Marketplace;
use stockade_sandbox::Delivery;
use stockade_sandbox::SandboxConfig;
use stockade_sync::SyncOptions;
use stockade_testkit::{Db, TestApp};

/// The order id a delivery carried, for order events.
fn order_of(d: &Delivery) -> Option<String> {
    let body: Value = serde_json::from_str(&d.body).ok()?;
    let id = match (d.marketplace, d.kind.as_str()) {
        (Marketplace::TikTok, "ORDER_STATUS_CHANGE") => &body["data"]["order_id"],
        (Marketplace::Amazon, "ORDER_CHANGE") => {
            &body["detail"]["Payload"]["OrderChangeNotification"]["AmazonOrderId"]
        }
        (Marketplace::Ebay, "ORDER_CONFIRMATION") => &body["notification"]["data"]["orderId"],
        _ => return None,
    };
    id.as_str().map(str::to_owned)
}

async fn stop_in_flight(db: Db) {
    let sandbox = SandboxConfig {
        skus: 20,
        initial_quantity: 0,
        record_delivery_bodies: true,
        delivery_concurrency: 16,
        ..SandboxConfig::default()
    };
    let sync = SyncOptions {
        poll_interval: None,
        reconcile_interval: None,
        ..SyncOptions::default()
    };
    let mut t = TestApp::start(db, sandbox, sync).await;
    // Every listing opened first (buyers can only buy what a channel shows).
    t.settle().await;
    for m in Marketplace::ALL {
        t.sb.generate_orders(m, 80);
    }
    // Stop once some deliveries are answered and others are still on their way.
    let waited = tokio::time::Instant::now();
    while t.sb.delivery_stats().delivered < 20 && waited.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = t.sb.delivery_stats();
    assert!(
        before.delivered >= 20,
        "deliveries did not start: {before:?}"
    );
    assert!(
        before.delivered < before.queued,
        "every delivery was done before the stop: {before:?}"
    );
    let (stopped, took) = t.stop().await;
    stopped.unwrap();
    assert!(
        took <= stockade_app::STOP_BOUND,
        "the stop took {took:?}, over its bound of {:?}",
        stockade_app::STOP_BOUND
    );

    let acknowledged: HashSet<String> =
        t.sb.deliveries()
            .iter()
            .filter(|d| d.ok())
            .filter_map(order_of)
            .collect();
    assert!(!acknowledged.is_empty());
    let store = stockade_store::Store::open(
        &t.db.url,
        stockade_core::Environment::Dev,
        &Default::default(),
    )
    .await
    .unwrap();
    let stored: HashSet<String> = store
        .query("SELECT external_id FROM orders", vec![])
        .await
        .unwrap()
        .iter()
        .map(|r| r.decode::<String>().unwrap())
        .collect();
    store.close().await;
    eprintln!(
        "stopped after {} of {} deliveries in {took:?}: {} orders acknowledged, {} stored",
        before.delivered,
        before.queued,
        acknowledged.len(),
        stored.len()
    );
    let missing: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?} ({} acknowledged, {} stored)",
        acknowledged.len(),
        stored.len()
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_with_webhooks_in_flight_loses_no_acknowledged_order_sqlite() {
    stop_in_flight(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_with_webhooks_in_flight_loses_no_acknowledged_order_postgres() {
    if let Some(db) = Db::postgres() {
        stop_in_flight(db).await;
    }
}
