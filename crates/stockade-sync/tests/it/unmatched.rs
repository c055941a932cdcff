//! Orders before the catalog (regression: a line whose SKU was not in the catalog was
//! never reserved, not even after the SKU was imported). Such a line is stored
//! unmatched, raised as an event, and reserved the moment `sku import` adds its SKU.

use super::*;
use stockade_sync::unmatched;

async fn unmatched_events(env: &Env) -> i64 {
    env.count("SELECT COUNT(*) FROM events WHERE source = 'sync' AND kind = 'unmatched_sku'")
        .await
}

async fn orders_before_the_catalog(db: Db) {
    let env = Env::start(db, sandbox_config(4, 50), fast_options()).await;
    env.sb.set_webhook(Marketplace::TikTok, None);
    let known_before = stock_of(env.store(), "SKU-0001").await;
    let placed = order(
        "U1",
        OrderStatus::Placed,
        10,
        &[("l1", "NEW-1", 2), ("l2", "SKU-0001", 1)],
    );
    env.sync.ingest("tiktok", placed.clone()).await.unwrap();
    env.sync
        .ingest(
            "tiktok",
            order("U2", OrderStatus::Shipped, 10, &[("l1", "NEW-1", 1)]),
        )
        .await
        .unwrap();
    env.sync
        .ingest(
            "ebay",
            order("U3", OrderStatus::Placed, 10, &[("l1", "NEW-2", 1)]),
        )
        .await
        .unwrap();
    // Stored, flagged and raised; the known SKU's line is reserved as usual.
    let waiting = unmatched::unmatched_lines(env.store()).await.unwrap();
    assert_eq!(waiting.len(), 3, "{waiting:?}");
    assert_eq!(
        waiting
            .iter()
            .map(|l| (l.order.as_str(), l.sku.as_str(), l.open))
            .collect::<Vec<_>>(),
        [
            ("U1", "NEW-1", true),
            ("U2", "NEW-1", false),
            ("U3", "NEW-2", true)
        ]
    );
    assert_eq!(unmatched_events(&env).await, 3);
    let detail = env
        .store()
        .query_one(
            "SELECT detail FROM events WHERE kind = 'unmatched_sku' ORDER BY id LIMIT 1",
            vec![],
        )
        .await
        .unwrap()
        .unwrap()
        .decode::<String>()
        .unwrap();
    assert!(
        detail.contains("NEW-1") && !detail.contains("Zelda"),
        "{detail}"
    );
    assert_eq!(
        stock_of(env.store(), "SKU-0001").await,
        (known_before.0, known_before.1 + 1)
    );
    assert!(
        unmatched::verify_lines(env.store())
            .await
            .unwrap()
            .is_empty()
    );
    // A replay raises nothing new.
    env.sync.ingest("tiktok", placed).await.unwrap();
    assert_eq!(unmatched_events(&env).await, 3);

    // Importing the SKU reserves the open line at once (not the one that shipped before).
    let report = catalog::import_csv(env.store(), "sku,on_hand\nNEW-1,10\n", &ACTOR)
        .await
        .unwrap();
    assert_eq!((report.matched_lines, report.reserved_lines), (2, 1));
    assert_eq!(stock_of(env.store(), "NEW-1").await, (10, 2));
    let waiting = unmatched::unmatched_lines(env.store()).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].sku, "NEW-2");
    // Importing again reserves nothing twice.
    catalog::import_csv(env.store(), "sku,on_hand\nNEW-1,10\n", &ACTOR)
        .await
        .unwrap();
    assert_eq!(stock_of(env.store(), "NEW-1").await, (10, 2));
    assert!(
        unmatched::verify_lines(env.store())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(catalog::verify_stock(env.store()).await.unwrap().is_empty());
    // The order then ships: the reservation is committed like any other.
    env.sync
        .ingest(
            "tiktok",
            order(
                "U1",
                OrderStatus::Shipped,
                20,
                &[("l1", "NEW-1", 2), ("l2", "SKU-0001", 1)],
            ),
        )
        .await
        .unwrap();
    assert_eq!(stock_of(env.store(), "NEW-1").await, (8, 0));
    assert!(
        unmatched::verify_lines(env.store())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(catalog::verify_stock(env.store()).await.unwrap().is_empty());

    // A ledger that reserves an open line twice is reported by the line check.
    env.sync
        .ingest(
            "tiktok",
            order("U4", OrderStatus::Placed, 10, &[("l1", "SKU-0002", 1)]),
        )
        .await
        .unwrap();
    let tiktok = connections::get(env.store(), "tiktok").await.unwrap();
    env.store()
        .commit(
            &ACTOR,
            vec![stockade_store::Change::new(
                stockade_store::Mutation::Sql {
                    statement: "INSERT INTO stock_ledger (sku, connection_id, external_id, line_id, movement, on_hand_delta, reserved_delta, at_ms, ukey)
                         VALUES ('SKU-0002', $1, 'U4', 'l1', 'reserve', 0, 1, 1, 'tampered')",
                    params: stockade_store::sql_params![tiktok.id],
                    expect: stockade_store::Expect::One("ledger row"),
                },
                stockade_store::AuditEntry::new(
                    "test.tamper",
                    "ledger",
                    stockade_store::AuditDetails::new(),
                ),
            )],
        )
        .await
        .unwrap();
    let problems = unmatched::verify_lines(env.store()).await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        (
            problems[0].order.as_str(),
            problems[0].reserved,
            problems[0].reservations
        ),
        ("U4", 2, 2)
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_before_the_catalog_sqlite() {
    orders_before_the_catalog(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_before_the_catalog_postgres() {
    if let Some(db) = Db::postgres() {
        orders_before_the_catalog(db).await;
    }
}
