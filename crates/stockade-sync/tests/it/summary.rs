//! An Amazon ORDER_CHANGE notification summarises the order (status, SKUs, quantities; no
//! buyer data). When the order's fetch is slow (getOrder allows 0.5 calls a second), the
//! summary is stored first so stock moves at once, and the fetched order fills in the
//! buyer fields later: one order, its units reserved once, one `order.created` event.

use super::*;
use stockade_store::SqlValue;
use stockade_sync::SyncOptions;

async fn count(env: &Env, sql: &'static str, ext: &str) -> i64 {
    env.store()
        .count(sql, vec![SqlValue::from(ext)])
        .await
        .unwrap()
}

const NO_BUYER: &str = "SELECT COUNT(*) FROM orders WHERE external_id = $1
     AND buyer_name IS NULL AND buyer_email IS NULL AND buyer_phone IS NULL AND buyer_address IS NULL";
const RESERVES: &str =
    "SELECT COUNT(*) FROM stock_ledger WHERE external_id = $1 AND movement = 'reserve'";
const INGESTS: &str =
    "SELECT COUNT(*) FROM audit WHERE action = 'order.ingest' AND resource LIKE '%/' || $1";
const CREATED: &str = "SELECT COUNT(*) FROM events WHERE source = 'order' AND kind = 'created' AND detail LIKE '%' || $1 || '%'";

async fn a_slow_fetch_stores_the_summary_first(db: Db) {
    let opts = SyncOptions {
        summary_after: Some(Duration::from_millis(50)),
        ..fast_options()
    };
    let env = Env::start(db, sandbox_config(4, 10), opts).await;
    env.settle().await;
    // Every Amazon call now takes two seconds, getOrder included.
    env.sb.set_faults(
        Marketplace::Amazon,
        Faults {
            latency_ms: 2_000,
            ..Faults::none()
        },
    );
    let ids = env.sb.generate_orders(Marketplace::Amazon, 1);
    let ext = ids[0].as_str();
    let lines: i64 = env
        .sb
        .orders(Marketplace::Amazon)
        .iter()
        .find(|o| o.order_id == ext)
        .map(|o| o.lines.len() as i64)
        .unwrap();
    env.sb.flush_deliveries().await;
    let d = env
        .sb
        .deliveries()
        .into_iter()
        .find(|d| d.kind != "challenge")
        .unwrap();
    assert!(
        d.ok(),
        "the delivery is answered once the summary is stored: {d:?}"
    );
    // Answered before the fetch could come back: stock moved, no buyer field yet.
    assert_eq!(count(&env, NO_BUYER, ext).await, 1);
    assert_eq!(count(&env, RESERVES, ext).await, lines);
    assert_eq!(count(&env, CREATED, ext).await, 1);
    let m = env.sync.metrics();
    assert_eq!(
        m.summaries_stored
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(m.telemetry.summaries_stored.get(), 1);
    // The fetch arrives and fills the buyer in; nothing is reserved or announced twice.
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&env, NO_BUYER, ext).await == 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        count(&env, NO_BUYER, ext).await,
        0,
        "the fetch filled it in"
    );
    assert_eq!(count(&env, RESERVES, ext).await, lines);
    assert_eq!(count(&env, CREATED, ext).await, 1);
    assert_eq!(count(&env, INGESTS, ext).await, 2);
    assert_eq!(
        env.store()
            .count(
                "SELECT COUNT(*) FROM audit WHERE action = 'order.ingest' AND details LIKE '%notification%'",
                vec![]
            )
            .await
            .unwrap(),
        1
    );
    env.sb.set_faults(Marketplace::Amazon, Faults::none());
    let report = env.store().verify_audit(None).await.unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fetch_stores_the_summary_first_sqlite() {
    a_slow_fetch_stores_the_summary_first(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fetch_stores_the_summary_first_postgres() {
    if let Some(db) = Db::postgres() {
        a_slow_fetch_stores_the_summary_first(db).await;
    }
}

/// With the summary switched off a slow fetch holds the answer (the order is stored by
/// the fetch alone, with its buyer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_summaries_the_fetch_stores_the_order() {
    let env = Env::start(Db::sqlite(), sandbox_config(4, 10), fast_options()).await;
    env.settle().await;
    env.sb.set_faults(
        Marketplace::Amazon,
        Faults {
            latency_ms: 300,
            ..Faults::none()
        },
    );
    let ids = env.sb.generate_orders(Marketplace::Amazon, 1);
    env.sb.flush_deliveries().await;
    assert_eq!(count(&env, NO_BUYER, &ids[0]).await, 0);
    assert_eq!(count(&env, INGESTS, &ids[0]).await, 1);
    let m = env.sync.metrics();
    assert_eq!(
        m.summaries_stored
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    env.sb.set_faults(Marketplace::Amazon, Faults::none());
    env.finish().await;
}

fn without_buyer(mut o: Order) -> Order {
    o.buyer = Buyer::default();
    o
}

/// The fill-in rule of the upsert: only an order stored with no buyer field, only at the
/// same status rank, only once; a cancelled order is never reserved by a late fetch.
async fn the_fetched_order_fills_in_a_summary_once(db: Db) {
    let env = Env::start(db, sandbox_config(4, 10), fast_options()).await;
    env.settle().await;
    let sku = env.sb.listings(Marketplace::TikTok)[0].sku.clone();
    let placed = |id: &str, at| order(id, OrderStatus::Placed, at, &[("l1", sku.as_str(), 2)]);
    let (on_hand_before, reserved_before) = stock_of(env.store(), &sku).await;
    env.sync
        .ingest("tiktok", without_buyer(placed("SUM-1", 10)))
        .await
        .unwrap();
    assert_eq!(count(&env, NO_BUYER, "SUM-1").await, 1);
    assert_eq!(count(&env, RESERVES, "SUM-1").await, 1);
    // The full order: filled in, one more audit row, nothing else.
    env.sync
        .ingest("tiktok", placed("SUM-1", 10))
        .await
        .unwrap();
    assert_eq!(count(&env, NO_BUYER, "SUM-1").await, 0);
    assert_eq!(count(&env, RESERVES, "SUM-1").await, 1);
    assert_eq!(count(&env, CREATED, "SUM-1").await, 1);
    assert_eq!(count(&env, INGESTS, "SUM-1").await, 2);
    // Again (a replay): no change at all.
    env.sync
        .ingest("tiktok", placed("SUM-1", 10))
        .await
        .unwrap();
    assert_eq!(count(&env, INGESTS, "SUM-1").await, 2);
    // A summary that was already cancelled: a late fetch of the placed order neither
    // reserves its units nor fills it in (its status rank is lower).
    let cancelled = order(
        "SUM-2",
        OrderStatus::Cancelled,
        20,
        &[("l1", sku.as_str(), 2)],
    );
    env.sync
        .ingest("tiktok", without_buyer(cancelled))
        .await
        .unwrap();
    env.sync
        .ingest("tiktok", placed("SUM-2", 10))
        .await
        .unwrap();
    assert_eq!(count(&env, RESERVES, "SUM-2").await, 0);
    assert_eq!(count(&env, NO_BUYER, "SUM-2").await, 1);
    assert_eq!(count(&env, INGESTS, "SUM-2").await, 1);
    let (on_hand, reserved) = stock_of(env.store(), &sku).await;
    assert_eq!((on_hand, reserved), (on_hand_before, reserved_before + 2));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fetched_order_fills_in_a_summary_once_sqlite() {
    the_fetched_order_fills_in_a_summary_once(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fetched_order_fills_in_a_summary_once_postgres() {
    if let Some(db) = Db::postgres() {
        the_fetched_order_fills_in_a_summary_once(db).await;
    }
}

/// The summary is for a fetch the marketplace has not answered. A fetched order whose
/// commit is slow (here: another session holds every SKU row for a second and a half)
/// gains nothing from a second commit: the webhook waits for the fetched order, and the
/// order is stored once, with its buyer, no summary counted. A real second session
/// (`psql`) holds the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_order_waiting_for_its_commit_stores_no_summary_postgres() {
    let Some(db) = Db::postgres() else {
        return;
    };
    let (url, schema) = db.pg.clone().unwrap();
    let opts = SyncOptions {
        summary_after: Some(Duration::from_millis(300)),
        ..fast_options()
    };
    let env = Env::start(db, sandbox_config(4, 10), opts).await;
    env.settle().await;
    let mut holder = std::process::Command::new("psql")
        .arg(&url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!(
            "BEGIN; SELECT 1 FROM {schema}.skus FOR NO KEY UPDATE; \
             SELECT pg_sleep(1.5); COMMIT;"
        ))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql runs (the PostgreSQL client is installed with the server)");
    let held = "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE a.query LIKE '%pg_sleep(1.5)%' AND l.granted AND l.locktype = 'transactionid'";
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.store().count(held, vec![]).await.unwrap() == 0 {
        assert!(
            Instant::now() < deadline,
            "the other session never took the rows"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let ids = env.sb.generate_orders(Marketplace::Amazon, 1);
    let ext = ids[0].as_str();
    env.sb.flush_deliveries().await;
    let waited = started.elapsed();
    assert!(holder.wait().unwrap().success());
    let d = env
        .sb
        .deliveries()
        .into_iter()
        .find(|d| d.kind != "challenge")
        .unwrap();
    assert!(d.ok(), "{d:?}");
    assert!(
        waited >= Duration::from_millis(700),
        "the commit was not held up ({waited:?}): the test proves nothing"
    );
    // One commit, the fetched order with its buyer; no summary.
    assert_eq!(count(&env, INGESTS, ext).await, 1);
    assert_eq!(count(&env, NO_BUYER, ext).await, 0);
    assert_eq!(
        env.sync
            .metrics()
            .summaries_stored
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    env.finish().await;
}
