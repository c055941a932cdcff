//! The costs removed from the ingest path: a batch wakes only the pushers with a listing
//! among the SKUs it changed; the poller does not ingest again an order the webhook
//! stored; too many pending deliveries are shed with 503 (and retried by the
//! marketplace) without storing anything half, and push rounds keep fewer calls in
//! flight meanwhile.

use super::*;
use stockade_sync::catalog::MergeSku;

async fn only_pushers_with_the_changed_sku_are_woken(db: Db) {
    let env = Env::start(db, sandbox_config(6, 50), fast_options()).await;
    env.settle().await;
    // A SKU listed on no channel: its orders change stock no pusher has to show.
    let solo = MergeSku {
        sku: "SOLO-1".into(),
        on_hand: Some(10),
        low_stock_threshold: None,
        listings: vec![],
    };
    catalog::merge(env.store(), &[solo], &ACTOR, "catalog.import")
        .await
        .unwrap();
    // `settle` marked the listing index stale (a catalog change); a refresh reloads it.
    env.sync.refresh().await.unwrap();
    let notices = |env: &Env| -> Vec<u64> {
        Marketplace::ALL
            .iter()
            .map(|m| env.sync.pusher_notices(m.as_str()).unwrap())
            .collect()
    };
    let m = env.sync.metrics();
    let spared = m.pushers_spared.load(std::sync::atomic::Ordering::Relaxed);
    let before = notices(&env);
    env.sync
        .ingest(
            "tiktok",
            order(
                "SOLO-ORDER",
                OrderStatus::Placed,
                10,
                &[("l1", "SOLO-1", 1)],
            ),
        )
        .await
        .unwrap();
    // The ingest answers before it wakes the pushers: wait for the batch to be done.
    let spared_now = || m.pushers_spared.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while spared_now() < spared + 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(spared_now(), spared + 3, "all three pushers left asleep");
    assert_eq!(notices(&env), before, "no pusher lists SOLO-1");
    // A SKU every channel lists wakes all three.
    let listed = env.sb.listings(Marketplace::TikTok)[0].sku.clone();
    env.sync
        .ingest(
            "tiktok",
            order(
                "LISTED-ORDER",
                OrderStatus::Placed,
                10,
                &[("l1", &listed, 1)],
            ),
        )
        .await
        .unwrap();
    let want: Vec<u64> = before.iter().map(|b| b + 1).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while notices(&env) != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(notices(&env), want);
    assert_eq!(spared_now(), spared + 3);
    env.settle().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_pushers_with_the_changed_sku_are_woken_sqlite() {
    only_pushers_with_the_changed_sku_are_woken(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_pushers_with_the_changed_sku_are_woken_postgres() {
    if let Some(db) = Db::postgres() {
        only_pushers_with_the_changed_sku_are_woken(db).await;
    }
}

async fn the_poller_skips_orders_the_webhooks_stored(db: Db) {
    let env = Env::start(db, sandbox_config(6, 50), fast_options()).await;
    env.settle().await;
    let placed = env.sb.generate_orders(Marketplace::TikTok, 12).len() as u64;
    env.sb.flush_deliveries().await;
    assert_eq!(
        env.count("SELECT COUNT(*) FROM orders").await as u64,
        placed
    );
    let m = env.sync.metrics();
    let batches = m.batches.load(std::sync::atomic::Ordering::Relaxed);
    let skipped = m.poll_skipped.load(std::sync::atomic::Ordering::Relaxed);
    let ingested = env.sync.poll_now("tiktok").await.unwrap();
    assert_eq!(ingested, 0, "every listed order was already stored");
    assert_eq!(
        m.poll_skipped.load(std::sync::atomic::Ordering::Relaxed),
        skipped + placed
    );
    assert_eq!(
        m.batches.load(std::sync::atomic::Ordering::Relaxed),
        batches,
        "no ingest transaction for orders already stored"
    );
    // Orders that changed since (shipped, cancelled) are not skipped: their stock moves.
    env.sb.advance_random(Marketplace::TikTok, 6);
    env.sb.flush_deliveries().await;
    env.sync.poll_now("tiktok").await.unwrap();
    assert!(catalog::verify_stock(env.store()).await.unwrap().is_empty());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_skips_orders_the_webhooks_stored_sqlite() {
    the_poller_skips_orders_the_webhooks_stored(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_skips_orders_the_webhooks_stored_postgres() {
    if let Some(db) = Db::postgres() {
        the_poller_skips_orders_the_webhooks_stored(db).await;
    }
}

async fn too_many_pending_deliveries_are_shed(db: Db) {
    let sandbox = SandboxConfig {
        delivery_concurrency: 48,
        ..sandbox_config(6, 50)
    };
    let opts = SyncOptions {
        max_pending_deliveries: 2,
        ..fast_options()
    };
    let env = Env::start(db, sandbox, opts).await;
    env.settle().await;
    // While deliveries queue, the pushers cap their rounds' calls in flight on the
    // gateway: watch the cap the connectors are given.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let gateway = env.gateway.clone();
        let watching = watching.clone();
        tokio::spawn(async move {
            let mut least = usize::MAX;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                least = least.min(gateway.round_calls(stockade_marketplaces::PUSH_CONCURRENCY));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            least
        })
    };
    let mut placed = 0;
    for m in Marketplace::ALL {
        placed += env.sb.generate_orders(m, 40).len();
    }
    env.sb.flush_deliveries().await;
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        watcher.await.unwrap(),
        2,
        "push rounds started while deliveries queued are capped at two calls in flight"
    );
    let shed = env
        .sync
        .metrics()
        .webhooks_shed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        shed > 0,
        "48 concurrent deliveries against 2 slots shed some"
    );
    assert_eq!(
        env.sync.metrics().telemetry.webhooks_shed.get(),
        shed,
        "the Prometheus counter follows"
    );
    let answered_503 = env
        .sb
        .deliveries()
        .iter()
        .filter(|d| d.kind != "challenge")
        .all(|d| d.ok() || d.status == Some(503));
    assert!(answered_503, "a shed delivery is answered 503");
    // Every acknowledged order is stored once; shed ones were delivered again (or are
    // with the marketplace still): nothing stored half.
    let mut acked = 0;
    for m in Marketplace::ALL {
        let ids: std::collections::HashSet<String> =
            stockade_sync::stats::order_ids(env.store(), m.as_str())
                .await
                .unwrap()
                .into_iter()
                .collect();
        for id in env.sb.acknowledged_orders(m) {
            assert!(ids.contains(&id), "{m} {id} acknowledged, not stored");
            acked += 1;
        }
    }
    assert!(acked > 0 && acked <= placed);
    assert_eq!(env.sync.pending_deliveries(), 0);
    assert!(catalog::verify_stock(env.store()).await.unwrap().is_empty());
    assert_eq!(
        stockade_sync::stats::duplicates(env.store()).await.unwrap(),
        0
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_pending_deliveries_are_shed_sqlite() {
    too_many_pending_deliveries_are_shed(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_pending_deliveries_are_shed_postgres() {
    if let Some(db) = Db::postgres() {
        too_many_pending_deliveries_are_shed(db).await;
    }
}
