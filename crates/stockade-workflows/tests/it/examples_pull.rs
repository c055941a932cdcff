//! `hourly-order-pull` against the marketplace simulators, on both backends: the whole
//! application (`TestApp`: server, sync engine, workflow engine) with Amazon's webhooks
//! switched off and the background poller off, so orders only arrive if the workflow
//! pulls them. The example is applied as shipped (connection names changed to the
//! sandbox's) and its tick is run by the application's own engine — the server wiring of
//! `marketplace.pull_orders` to the sync engine included. A second pull stores nothing
//! twice.

use std::time::{Duration, Instant};

use stockade_sandbox::{Marketplace, SandboxConfig};
use stockade_store::{Store, sql_params};
use stockade_sync::SyncOptions;
use stockade_testkit::Db;
use stockade_testkit::TestApp;

use crate::examples_run::{apply, enqueue_tick, example};

const RENAMES: &[(&str, &str)] = &[
    ("tiktok-sg", "tiktok"),
    ("amazon-sg", "amazon"),
    ("ebay-us", "ebay"),
];

fn options() -> SyncOptions {
    SyncOptions {
        poll_interval: None,
        reconcile_interval: None,
        lift_rate_limits: true,
        ..SyncOptions::default()
    }
}

/// Wait until job `id` has finished; its state.
async fn finished(store: &Store, id: &str) -> String {
    let start = Instant::now();
    loop {
        let state: Option<(String,)> = store
            .query_one_as("SELECT state FROM jobs WHERE id = $1", sql_params![id])
            .await
            .unwrap();
        match state {
            Some((s,)) if s != "queued" && s != "running" => return s,
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "job {id} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pull(db: Db) {
    let config = SandboxConfig {
        seed: 16,
        skus: 5,
        initial_quantity: 50,
        rate_limits: false,
        feed_step: Duration::from_millis(20),
        ..SandboxConfig::default()
    };
    let app = TestApp::start(db, config, options()).await;
    let store = app.store().clone();
    let amazon = "SELECT COUNT(*) FROM orders o JOIN connections c ON c.id = o.connection_id WHERE c.name = 'amazon'";
    app.sb.set_webhook(Marketplace::Amazon, None);
    let placed = app.sb.generate_orders(Marketplace::Amazon, 6).len();
    app.sb.flush_deliveries().await;
    assert_eq!(app.count(amazon).await, 0, "no webhook delivered them");
    apply(&store, &[example("hourly-order-pull", RENAMES)]).await;

    let id = enqueue_tick(&store, "hourly-order-pull", stockade_core::time::now_ms()).await;
    assert_eq!(finished(&store, &id).await, "succeeded");
    assert_eq!(
        app.count(amazon).await as usize,
        placed,
        "the pull stored them"
    );
    let note = format!("hourly pull stored {placed} order(s) no webhook had delivered");
    let notes = store
        .count(
            "SELECT COUNT(*) FROM audit WHERE action = 'workflow.note' AND details LIKE $1",
            sql_params![format!("%{note}%")],
        )
        .await
        .unwrap();
    assert_eq!(notes, 1, "noted once, for amazon");

    // Pulling again (or overlapping webhooks) stores nothing twice.
    let ingests = "SELECT COUNT(*) FROM audit WHERE action = 'order.ingest'";
    let (audit, ledger) = (
        app.count(ingests).await,
        app.count("SELECT COUNT(*) FROM stock_ledger").await,
    );
    let again = enqueue_tick(
        &store,
        "hourly-order-pull",
        stockade_core::time::now_ms() + 1,
    )
    .await;
    assert_eq!(finished(&store, &again).await, "succeeded");
    assert_eq!(app.count(amazon).await as usize, placed);
    assert_eq!(app.count(ingests).await, audit);
    assert_eq!(app.count("SELECT COUNT(*) FROM stock_ledger").await, ledger);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_order_pull_stores_what_webhooks_missed_once_on_sqlite() {
    pull(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_order_pull_stores_what_webhooks_missed_once_on_postgresql() {
    if let Some(db) = Db::postgres() {
        pull(db).await;
    }
}
