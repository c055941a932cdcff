//! The sync engine against the marketplace simulators over HTTPS on loopback, with a
//! real database (SQLite; PostgreSQL when STOCKADE_TEST_PG_URL is set) and a real vault.
//! Webhooks reach the engine through the application's own server (`TestApp`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app_shares;
mod catalog_formula;
mod cross;
mod cross_wake;
mod discover;
mod edit;
mod fast_path;
mod fresh;
mod handoff;
mod push_health;
mod returns;
mod revisions;
mod rows;
mod stock;
mod summary;
mod unmatched;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use stockade_core::order::{Buyer, Marketplace, Order, OrderLine, OrderStatus};
use stockade_core::time::now_ms;
use stockade_core::{Actor, Environment, Pii, SecretString};
use stockade_marketplaces::{Connector, HookError, InboundRequest};
use stockade_sandbox::{Faults, SandboxConfig};
use stockade_store::{Store, StoreOptions};
use stockade_sync::connections::{self, ConnectionSettings, NewConnection};
use stockade_sync::{SyncOptions, catalog, purge};
use stockade_testkit::{Db, TestApp};
use stockade_vault::FieldContext;

const ACTOR: Actor = Actor::System("test");

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The application on the simulators, as `stockade serve` runs it (one fixture for the
/// workspace: `stockade_testkit::TestApp`).
type Env = TestApp;

fn sandbox_config(skus: usize, quantity: u32) -> SandboxConfig {
    SandboxConfig {
        seed: 11,
        skus,
        initial_quantity: quantity,
        rate_limits: false,
        feed_step: Duration::from_millis(20),
        ..SandboxConfig::default()
    }
}

fn fast_options() -> SyncOptions {
    SyncOptions {
        poll_interval: None,
        reconcile_interval: None,
        push_retry_base: Duration::from_millis(50),
        push_retry_max: Duration::from_millis(400),
        push_attempts_before_event: 3,
        // The simulators run without rate limits here; so do the connectors (Amazon's
        // getOrder allows 0.5 calls a second and would make 40 orders take a minute).
        lift_rate_limits: true,
        // A slow fetch waits for itself here (`summary.rs` tests the summary path), so
        // tests that count audit rows see one per order on a loaded machine too.
        summary_after: None,
        ..SyncOptions::default()
    }
}

fn available(rows: &[catalog::StockRow], sku: &str) -> i64 {
    rows.iter().find(|r| r.sku == sku).unwrap().available
}

// ---------------------------------------------------------------------------------------

async fn webhooks_in_stock_out(db: Db) {
    let env = Env::start(db, sandbox_config(12, 50), fast_options()).await;
    // The catalog's initial targets go out to every channel: 100 on hand − buffer 2.
    env.settle().await;
    for m in Marketplace::ALL {
        for l in env.sb.listings(m) {
            assert_eq!(l.quantity, 98, "{m} {}", l.sku);
        }
    }
    // Buyers order on all three channels; each order's webhook is answered only once
    // the order is stored.
    let mut placed = 0;
    for m in Marketplace::ALL {
        placed += env.sb.generate_orders(m, 40).len();
    }
    env.sb.flush_deliveries().await;
    let delivered: Vec<_> = env
        .sb
        .deliveries()
        .into_iter()
        .filter(|d| d.kind != "challenge")
        .collect();
    assert!(delivered.iter().all(|d| d.ok()), "{delivered:?}");
    assert_eq!(
        env.count("SELECT COUNT(*) FROM orders").await as usize,
        placed
    );
    env.settle().await;

    // Stock: every sandbox order line is reserved exactly once; every channel shows
    // available − buffer.
    let mut ordered: HashMap<String, i64> = HashMap::new();
    for m in Marketplace::ALL {
        for o in env.sb.orders(m) {
            for (sku, q) in o.lines {
                *ordered.entry(sku).or_default() += i64::from(q);
            }
        }
    }
    let stock = catalog::stock(env.store()).await.unwrap();
    for row in &stock {
        let q = ordered.get(&row.sku).copied().unwrap_or(0);
        assert_eq!((row.on_hand, row.reserved), (100, q), "{}", row.sku);
    }
    assert!(catalog::verify_stock(env.store()).await.unwrap().is_empty());
    for m in Marketplace::ALL {
        for l in env.sb.listings(m) {
            let want = (available(&stock, &l.sku) - 2).max(0);
            assert_eq!(i64::from(l.quantity), want, "{m} {}", l.sku);
        }
    }

    // Replays change nothing, not even the audit log: deliver every order webhook again.
    let audit_before = env.count("SELECT COUNT(*) FROM audit").await;
    let ledger_before = env.count("SELECT COUNT(*) FROM stock_ledger").await;
    for m in Marketplace::ALL {
        let c = connections::get(env.store(), m.as_str()).await.unwrap();
        let conn = connections::connector(&c, &env.vault, &env.gateway, true)
            .await
            .unwrap();
        let (orders, _) = conn.list_all_orders(0).await.unwrap();
        for o in orders {
            env.sync.ingest(m.as_str(), o).await.unwrap();
        }
    }
    assert_eq!(
        env.count("SELECT COUNT(*) FROM stock_ledger").await,
        ledger_before
    );
    assert_eq!(env.count("SELECT COUNT(*) FROM audit").await, audit_before);

    // Shipments commit, cancellations release; channels follow. Not every status change
    // has a notification (eBay sends none after ORDER_CONFIRMATION): the poller finds them.
    for m in Marketplace::ALL {
        env.sb.advance_random(m, 60);
    }
    env.sb.flush_deliveries().await;
    for m in Marketplace::ALL {
        env.sync.poll_now(m.as_str()).await.unwrap();
    }
    env.settle().await;
    let mut reserved: HashMap<String, i64> = HashMap::new();
    let mut shipped: HashMap<String, i64> = HashMap::new();
    for m in Marketplace::ALL {
        for o in env.sb.orders(m) {
            use stockade_sandbox::OrderState as S;
            for (sku, q) in o.lines {
                match o.state {
                    S::Placed => *reserved.entry(sku).or_default() += i64::from(q),
                    S::Shipped | S::Delivered => *shipped.entry(sku).or_default() += i64::from(q),
                    // Returns restock on every marketplace: eBay's order shows the
                    // return, TikTok's Return & Refund API and Amazon's returns report
                    // (read by the poll) do for orders that stay completed / shipped.
                    S::Returned | S::Cancelled => {}
                }
            }
        }
    }
    let stock = catalog::stock(env.store()).await.unwrap();
    for d in env.sb.deliveries().iter().filter(|d| !d.ok()) {
        eprintln!("failed delivery {} {:?} {:?}", d.kind, d.status, d.error);
    }
    for row in &stock {
        let r = reserved.get(&row.sku).copied().unwrap_or(0);
        let s = shipped.get(&row.sku).copied().unwrap_or(0);
        assert_eq!((row.on_hand, row.reserved), (100 - s, r), "{}", row.sku);
    }
    for m in Marketplace::ALL {
        for l in env.sb.listings(m) {
            let want = (available(&stock, &l.sku) - 2).max(0);
            assert_eq!(i64::from(l.quantity), want, "{m} {}", l.sku);
        }
    }
    assert!(env.sync.summary().pushes_confirmed > 0);
    let report = env.store().verify_audit(None).await.unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_in_stock_out_sqlite() {
    webhooks_in_stock_out(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_in_stock_out_postgres() {
    if let Some(db) = Db::postgres() {
        webhooks_in_stock_out(db).await;
    }
}

fn order(id: &str, status: OrderStatus, at: i64, lines: &[(&str, &str, u32)]) -> Order {
    Order {
        marketplace: Marketplace::TikTok,
        external_id: id.into(),
        status,
        marketplace_status: status.as_str().to_uppercase(),
        created_at_ms: 1,
        updated_at_ms: at,
        lines: lines
            .iter()
            .map(|(line, sku, q)| OrderLine {
                line_id: (*line).into(),
                sku: (*sku).into(),
                quantity: *q,
                listing_id: None,
            })
            .collect(),
        buyer: Buyer {
            name: Some(Pii::new("Zelda Quintessa-Planted".into())),
            email: Some(Pii::new("zelda.planted@example.org".into())),
            phone: None,
            address: None,
        },
    }
}

async fn stock_of(store: &Store, sku: &str) -> (i64, i64) {
    let s = catalog::stock(store).await.unwrap();
    let r = s.iter().find(|r| r.sku == sku).unwrap();
    (r.on_hand, r.reserved)
}

/// Duplicates, replays and out-of-order status changes change nothing they should not.
async fn idempotent_ledger(db: Db) {
    let env = Env::start(db, sandbox_config(4, 10), fast_options()).await;
    let store = env.store().clone();
    let s = "SKU-0001";
    let placed = order("A1", OrderStatus::Placed, 10, &[("l1", s, 3)]);
    env.sync.ingest("tiktok", placed.clone()).await.unwrap();
    env.sync.ingest("tiktok", placed.clone()).await.unwrap();
    assert_eq!(stock_of(&store, s).await, (100, 3));
    // Shipped, then a late "placed" again: commit once, no second reservation.
    env.sync
        .ingest(
            "tiktok",
            order("A1", OrderStatus::Shipped, 20, &[("l1", s, 3)]),
        )
        .await
        .unwrap();
    env.sync.ingest("tiktok", placed.clone()).await.unwrap();
    assert_eq!(stock_of(&store, s).await, (97, 0));
    // Returned: restocked once.
    for _ in 0..2 {
        env.sync
            .ingest(
                "tiktok",
                order("A1", OrderStatus::Returned, 30, &[("l1", s, 3)]),
            )
            .await
            .unwrap();
    }
    assert_eq!(stock_of(&store, s).await, (100, 0));
    // Cancelled first, then a late "placed": never reserved.
    env.sync
        .ingest(
            "tiktok",
            order("B1", OrderStatus::Cancelled, 50, &[("l1", s, 2)]),
        )
        .await
        .unwrap();
    env.sync
        .ingest(
            "tiktok",
            order("B1", OrderStatus::Placed, 40, &[("l1", s, 2)]),
        )
        .await
        .unwrap();
    assert_eq!(stock_of(&store, s).await, (100, 0));
    // Placed then cancelled: released.
    env.sync
        .ingest(
            "amazon",
            order("C1", OrderStatus::Placed, 1, &[("l1", s, 4)]),
        )
        .await
        .unwrap();
    assert_eq!(stock_of(&store, s).await, (100, 4));
    env.sync
        .ingest(
            "amazon",
            order("C1", OrderStatus::Cancelled, 2, &[("l1", s, 4)]),
        )
        .await
        .unwrap();
    assert_eq!(stock_of(&store, s).await, (100, 0));
    // The same external id on another connection is another order.
    env.sync
        .ingest("ebay", order("A1", OrderStatus::Placed, 1, &[("l1", s, 1)]))
        .await
        .unwrap();
    assert_eq!(stock_of(&store, s).await, (100, 1));
    // An unknown SKU is recorded on the order but moves no stock.
    env.sync
        .ingest(
            "ebay",
            order("D1", OrderStatus::Placed, 1, &[("l1", "NOPE", 1)]),
        )
        .await
        .unwrap();
    assert_eq!(
        env.count("SELECT COUNT(*) FROM stock_ledger WHERE sku = 'NOPE'")
            .await,
        0
    );
    assert_eq!(env.count("SELECT COUNT(*) FROM orders").await, 5);
    assert!(catalog::verify_stock(&store).await.unwrap().is_empty());

    // Buyer fields are ciphertext under the connection's key, bound to their row.
    let row = store
        .query_one(
            "SELECT buyer_name FROM orders o JOIN connections c ON c.id = o.connection_id WHERE c.name = 'tiktok' AND o.external_id = 'A1'",
            vec![],
        )
        .await
        .unwrap()
        .unwrap();
    let ct = row.decode::<Vec<u8>>().unwrap();
    let conn = connections::get(&store, "tiktok").await.unwrap();
    let rid = format!("{}/A1", conn.id);
    let plain = env
        .vault
        .decrypt(&FieldContext::new("orders", "buyer_name", &rid), &ct)
        .await
        .unwrap();
    assert_eq!(&plain[..], b"Zelda Quintessa-Planted");
    assert!(
        env.vault
            .decrypt(&FieldContext::new("orders", "buyer_email", &rid), &ct)
            .await
            .is_err()
    );
    // Rebuilding the stock from the ledger gives the same figures.
    store
        .tamper_for_tests("UPDATE skus SET on_hand = 5 WHERE sku = 'SKU-0002'")
        .await
        .unwrap();
    let fixed = catalog::rebuild_stock(&store, &ACTOR).await.unwrap();
    assert_eq!(fixed.len(), 1);
    assert_eq!(stock_of(&store, "SKU-0002").await, (100, 0));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_ledger_sqlite() {
    idempotent_ledger(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_ledger_postgres() {
    if let Some(db) = Db::postgres() {
        idempotent_ledger(db).await;
    }
}

/// 500 concurrent orders for a SKU with 100 units across three channels.
async fn concurrent_last_units(db: Db) {
    let env = Env::start(db, sandbox_config(2, 10), fast_options()).await;
    let store = env.store().clone();
    let mut tasks = Vec::new();
    for i in 0..500 {
        let sync = env.sync.clone();
        let conn = Marketplace::ALL[i % 3].as_str();
        tasks.push(tokio::spawn(async move {
            sync.ingest(
                conn,
                order(
                    &format!("R{i}"),
                    OrderStatus::Placed,
                    1,
                    &[("l", "SKU-0001", 1)],
                ),
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(env.count("SELECT COUNT(*) FROM orders").await, 500);
    assert_eq!(stock_of(&store, "SKU-0001").await, (100, 500));
    assert_eq!(
        env.count("SELECT CAST(COALESCE(SUM(oversold_units), 0) AS BIGINT) FROM orders")
            .await,
        400
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM orders WHERE oversold_units > 0")
            .await,
        400
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM events WHERE source = 'sync' AND kind = 'oversell'")
            .await,
        400
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM stock_ledger WHERE movement = 'reserve'")
            .await,
        500
    );
    assert!(catalog::verify_stock(&store).await.unwrap().is_empty());
    // Zero goes out to every channel.
    env.settle().await;
    for m in Marketplace::ALL {
        assert_eq!(
            env.sb
                .listing(m, &env.sb.endpoint(m).sellers[0].seller_id, "SKU-0001")
                .unwrap()
                .quantity,
            0
        );
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_last_units_sqlite() {
    concurrent_last_units(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_last_units_postgres() {
    if let Some(db) = Db::postgres() {
        concurrent_last_units(db).await;
    }
}

/// A marketplace that answers 429s and 5xx for a while: nothing lost, the channel
/// catches up, anomalies recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_marketplace_catches_up() {
    let env = Env::start(Db::sqlite(), sandbox_config(6, 50), fast_options()).await;
    env.settle().await;
    env.sb.set_faults(
        Marketplace::Ebay,
        Faults {
            storm_until_ms: now_ms() + 2_500,
            ..Faults::default()
        },
    );
    let placed = env.sb.generate_orders(Marketplace::TikTok, 20).len();
    env.sb.flush_deliveries().await;
    for d in env.sb.deliveries().iter().filter(|d| !d.ok()) {
        eprintln!("failed delivery {} {:?} {:?}", d.kind, d.status, d.error);
    }
    assert_eq!(
        env.count("SELECT COUNT(*) FROM orders").await as usize,
        placed
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !env.sync.settled().await.unwrap(),
        "eBay cannot have confirmed"
    );
    // Then a minute of 5xx, compressed: every request fails for a second.
    env.sb.set_faults(
        Marketplace::Ebay,
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !env.sync.settled().await.unwrap(),
        "eBay cannot have confirmed"
    );
    env.sb.set_faults(Marketplace::Ebay, Faults::default());
    env.settle().await;
    let stock = catalog::stock(env.store()).await.unwrap();
    for l in env.sb.listings(Marketplace::Ebay) {
        assert_eq!(
            i64::from(l.quantity),
            (available(&stock, &l.sku) - 2).max(0)
        );
    }
    let _ = env.gateway.flush().await;
    for (source, kind, n) in env
        .store()
        .query_as::<(String, String, i64)>(
            "SELECT source, kind, COUNT(*) FROM events GROUP BY source, kind",
            vec![],
        )
        .await
        .unwrap()
    {
        eprintln!("event {source} {kind} {n}");
    }
    assert!(
        env.count("SELECT COUNT(*) FROM events WHERE source = 'egress' AND kind = 'server_error'")
            .await
            > 0
    );
    assert!(
        env.count("SELECT COUNT(*) FROM events WHERE source = 'egress' AND kind = 'client_error'")
            .await
            > 0
    );
    assert!(
        env.count("SELECT COUNT(*) FROM events WHERE source = 'sync' AND kind = 'push_failed'")
            .await
            >= 1
    );
    env.finish().await;
}

/// Drift on a channel is found by reconciliation and repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_repairs_drift() {
    let env = Env::start(Db::sqlite(), sandbox_config(5, 50), fast_options()).await;
    env.settle().await;
    let seller = env.sb.endpoint(Marketplace::Amazon).sellers[0]
        .seller_id
        .clone();
    env.sb
        .set_quantity(Marketplace::Amazon, &seller, "SKU-0003", 7)
        .unwrap();
    let drift = env.sync.reconcile_now("amazon").await.unwrap();
    assert_eq!(drift, 1);
    assert_eq!(env.sync.reconcile_now("tiktok").await.unwrap(), 0);
    env.settle().await;
    assert_eq!(
        env.sb
            .listing(Marketplace::Amazon, &seller, "SKU-0003")
            .unwrap()
            .quantity,
        98
    );
    env.finish().await;
}

/// The poller finds orders whose webhooks never came, and keeps its cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_catches_missed_webhooks() {
    let env = Env::start(Db::sqlite(), sandbox_config(5, 50), fast_options()).await;
    env.sb.set_webhook(Marketplace::Amazon, None);
    let placed = env.sb.generate_orders(Marketplace::Amazon, 15).len();
    assert_eq!(env.count("SELECT COUNT(*) FROM orders").await, 0);
    let n = env.sync.poll_now("amazon").await.unwrap();
    assert!(n >= placed);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM orders").await as usize,
        placed
    );
    assert_eq!(env.count("SELECT COUNT(*) FROM sync_cursors").await, 1);
    // Polling again changes no order (only the cursor may move on).
    let ingests = "SELECT COUNT(*) FROM audit WHERE action = 'order.ingest'";
    let (audit, ledger) = (
        env.count(ingests).await,
        env.count("SELECT COUNT(*) FROM stock_ledger").await,
    );
    env.sync.poll_now("amazon").await.unwrap();
    assert_eq!(env.count(ingests).await, audit);
    assert_eq!(env.count("SELECT COUNT(*) FROM stock_ledger").await, ledger);
    env.finish().await;
}

/// Wrong signatures and unknown connections are refused before anything is parsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_deliveries_are_refused() {
    let env = Env::start(Db::sqlite(), sandbox_config(3, 50), fast_options()).await;
    let body = br#"{"type":1,"shop_id":"1","data":{"order_id":"576000"}}"#.to_vec();
    let mut headers = HeaderMap::new();
    headers.insert("authorization", "deadbeef".parse().unwrap());
    let r = env
        .sync
        .handle_event(
            Marketplace::TikTok,
            "tiktok",
            InboundRequest::post("/hooks/tiktok/tiktok", headers.clone(), body.clone()),
        )
        .await;
    assert!(matches!(r, Err(HookError::Signature(_))), "{r:?}");
    let r = env
        .sync
        .handle_event(
            Marketplace::TikTok,
            "nope",
            InboundRequest::post("/hooks/tiktok/nope", headers.clone(), body.clone()),
        )
        .await;
    assert_eq!(r, Err(HookError::UnknownConnection));
    // A connection of another marketplace is not this one.
    let r = env
        .sync
        .handle_event(
            Marketplace::Ebay,
            "tiktok",
            InboundRequest::post("/hooks/ebay/tiktok", headers, body),
        )
        .await;
    assert_eq!(r, Err(HookError::UnknownConnection));
    assert_eq!(env.count("SELECT COUNT(*) FROM orders").await, 0);
    // Regression: a revoked connection is told apart from an unknown one (410, not 404),
    // so the server neither counts it as an authentication failure nor hides it.
    env.sync
        .revoke("tiktok", "test: revoked by hand")
        .await
        .unwrap();
    let r = env
        .sync
        .handle_event(
            Marketplace::TikTok,
            "tiktok",
            InboundRequest::post("/hooks/tiktok/tiktok", HeaderMap::new(), b"{}".to_vec()),
        )
        .await;
    assert_eq!(r, Err(HookError::RevokedConnection));
    let r = env
        .sync
        .handle_event(
            Marketplace::Ebay,
            "tiktok",
            InboundRequest::post("/hooks/ebay/tiktok", HeaderMap::new(), b"{}".to_vec()),
        )
        .await;
    assert_eq!(
        r,
        Err(HookError::UnknownConnection),
        "another marketplace's name"
    );
    let _ = &env.hook_base;
    env.finish().await;
}

/// A revocation stops the connection, purges its data and shreds its key.
async fn deauthorization_purges(db: Db) {
    let is_sqlite = db.pg.is_none();
    let env = Env::start(db, sandbox_config(6, 50), fast_options()).await;
    env.sb.generate_orders(Marketplace::TikTok, 10);
    env.sb.generate_orders(Marketplace::Ebay, 10);
    env.sb.flush_deliveries().await;
    env.settle().await;
    // Plant a known PII value, and take real buyer names from the marketplace.
    env.sync
        .ingest(
            "tiktok",
            order("PLANT1", OrderStatus::Placed, 1, &[("l", "SKU-0001", 1)]),
        )
        .await
        .unwrap();
    let c = connections::get(env.store(), "tiktok").await.unwrap();
    let conn = connections::connector(&c, &env.vault, &env.gateway, true)
        .await
        .unwrap();
    let (orders, _) = conn.list_all_orders(0).await.unwrap();
    let names: Vec<String> = orders
        .iter()
        .filter_map(|o| o.buyer.name.as_ref().map(|n| n.expose_pii().clone()))
        .collect();
    assert!(!names.is_empty());
    let planted = ["Zelda Quintessa-Planted", "zelda.planted@example.org"];
    if is_sqlite {
        let bytes = env.db.sqlite_bytes();
        for p in planted.iter().map(|s| s.to_string()).chain(names.clone()) {
            assert!(
                !contains(&bytes, p.as_bytes()),
                "plaintext PII in the database"
            );
        }
    }
    let ct_row = env
        .store()
        .query_one(
            "SELECT o.external_id, o.buyer_name FROM orders o WHERE o.connection_id = $1 AND o.buyer_name IS NOT NULL",
            stockade_store::sql_params![c.id],
        )
        .await
        .unwrap()
        .unwrap();
    let (ext, ct) = ct_row.decode::<(String, Vec<u8>)>().unwrap();
    let rid = format!("{}/{ext}", c.id);
    let ctx = FieldContext::new("orders", "buyer_name", &rid);
    assert!(env.vault.decrypt(&ctx, &ct).await.is_ok());
    let tt_before = env.count("SELECT COUNT(*) FROM orders o JOIN connections c ON c.id = o.connection_id WHERE c.name = 'tiktok'").await;
    assert!(tt_before >= 11);
    let ebay_orders = env.count("SELECT COUNT(*) FROM orders o JOIN connections c ON c.id = o.connection_id WHERE c.name = 'ebay'").await;

    // The seller revokes the app on TikTok: the marketplace's event arrives.
    let seller = env.sb.endpoint(Marketplace::TikTok).sellers[0]
        .seller_id
        .clone();
    env.sb.revoke(Marketplace::TikTok, &seller).unwrap();
    env.sb.flush_deliveries().await;
    let c = connections::get(env.store(), "tiktok").await.unwrap();
    assert_eq!(c.status, stockade_sync::ConnectionStatus::Revoked);
    assert_eq!(env.count("SELECT COUNT(*) FROM orders o JOIN connections c ON c.id = o.connection_id WHERE c.name = 'tiktok'").await, 0);
    assert_eq!(env.count("SELECT COUNT(*) FROM order_lines WHERE connection_id IN (SELECT id FROM connections WHERE name = 'tiktok')").await, 0);
    assert_eq!(env.count("SELECT COUNT(*) FROM listings WHERE connection_id IN (SELECT id FROM connections WHERE name = 'tiktok')").await, 0);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM credentials WHERE name LIKE 'connection/tiktok/%'")
            .await,
        0
    );
    assert_eq!(env.count("SELECT COUNT(*) FROM stock_ledger WHERE external_id IS NOT NULL AND connection_id IN (SELECT id FROM connections WHERE name = 'tiktok')").await, 0);
    // Other sellers are untouched; stock stays consistent (open reservations released).
    assert_eq!(env.count("SELECT COUNT(*) FROM orders o JOIN connections c ON c.id = o.connection_id WHERE c.name = 'ebay'").await, ebay_orders);
    assert!(catalog::verify_stock(env.store()).await.unwrap().is_empty());
    let receipts = purge::receipts(env.store()).await.unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].orders, tt_before);
    assert!(receipts[0].credentials >= 3);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM audit WHERE action = 'connection.purge'")
            .await,
        1
    );
    // The ciphertext copied aside before the purge no longer decrypts.
    let err = env.vault.decrypt(&ctx, &ct).await.unwrap_err();
    assert!(err.to_string().contains("destroyed"), "{err}");
    if is_sqlite {
        let bytes = env.db.sqlite_bytes();
        for p in planted.iter().map(|s| s.to_string()).chain(names) {
            assert!(
                !contains(&bytes, p.as_bytes()),
                "plaintext PII in the database"
            );
        }
    }
    // Nothing of it is shown any more.
    assert!(
        catalog::listings(env.store())
            .await
            .unwrap()
            .iter()
            .all(|l| l.connection != "tiktok")
    );
    assert!(
        !catalog::export_csv(env.store())
            .await
            .unwrap()
            .contains("tiktok:")
    );
    // And deliveries to it are refused from now on.
    env.sb.reauthorize(Marketplace::TikTok, &seller).ok();
    let report = env.store().verify_audit(None).await.unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deauthorization_purges_sqlite() {
    deauthorization_purges(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deauthorization_purges_postgres() {
    if let Some(db) = Db::postgres() {
        deauthorization_purges(db).await;
    }
}

/// Catalog import checks everything first and writes all or nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_import_is_all_or_nothing() {
    let env = Env::start(Db::sqlite(), sandbox_config(3, 50), fast_options()).await;
    let store = env.store().clone();
    let before = catalog::export_csv(&store).await.unwrap();
    for (csv, needle) in [
        ("sku,on_hand\nX,1\nX,2\n", "also appears"),
        ("sku,on_hand\nX,-1\n", "on_hand"),
        ("sku,on_hand,shopify:listing\nX,1,a\n", "shopify"),
        (
            "sku,on_hand,tiktok:listing\nX,1,nocolon\n",
            "PRODUCT_ID:SKU_ID",
        ),
        ("sku\nX\n", "on_hand"),
        ("", "empty"),
    ] {
        let err = catalog::import_csv(&store, csv, &ACTOR).await.unwrap_err();
        assert!(err.to_string().contains(needle), "{csv:?}: {err}");
    }
    assert_eq!(catalog::export_csv(&store).await.unwrap(), before);
    // Export → import is a fixed point.
    let report = catalog::import_csv(&store, &before, &ACTOR).await.unwrap();
    assert_eq!(report.skus, 3);
    assert_eq!(catalog::export_csv(&store).await.unwrap(), before);
    // Lower on-hand with a cap: targets follow.
    let csv = stockade_app::sandbox::catalog_csv(&env.sb, 10, 1, Some(4), 0);
    catalog::import_csv(&store, &csv, &ACTOR).await.unwrap();
    env.settle().await;
    for m in Marketplace::ALL {
        for l in env.sb.listings(m) {
            assert_eq!(l.quantity, 4, "{m} {}", l.sku);
        }
    }
    env.finish().await;
}

/// The egress gateway another process on the same database would have: its own rate
/// buckets and daily counts (empty), the simulators allowed and trusted, `node` named in
/// its requests.
fn process_gateway(env: &TestApp, node: Option<&str>) -> stockade_egress::Gateway {
    let mut cfg = stockade_egress::EgressConfig::new(Environment::Dev);
    cfg.allowed_hosts = Marketplace::ALL
        .iter()
        .map(|m| env.sb.endpoint(*m).addr.to_string())
        .collect();
    cfg.extra_root_pems = vec![env.sb.ca_pem.clone()];
    cfg.host_rate = (1_000_000.0, 1_000_000);
    cfg.node = node.map(str::to_owned);
    stockade_egress::Gateway::new(cfg, None).unwrap()
}
