//! The order and connection events on both backends, end to end: ingest appends
//! `order.created` once per new order (a re-delivery or an update appends none) and
//! `order.cancelled` once per move to cancelled; the purge appends `connection.revoked`
//! once; no stored event row holds buyer data; and a workflow triggered by
//! `order.created` runs once per new order through the trigger subscriber and the engine.
//! `stock.low` is raised once each time a SKU's available stock crosses down to the
//! threshold, not again while it stays low.

use std::time::Duration;

use stockade_core::order::{Address, Buyer, Marketplace, Order, OrderLine, OrderStatus};
use stockade_core::{Actor, Pii};
use stockade_store::{JobState, Store, sql_params};
use stockade_sync::ingest::{Source, order_change, seal_buyer};
use stockade_sync::purge;
use stockade_vault::{KeyOwner, Vault};
use stockade_workflows::engine::{Engine, EngineConfig};
use stockade_workflows::registry;
use stockade_workflows::triggers::EventTriggers;

use crate::exec_support::{Backend, Env, both, open_vault};

both!(
    order_events_are_produced_once_and_trigger_once,
    stock_low_is_raised_once_per_crossing
);

const BUYER: &str = "Zebulon Quixote-Buyer";
const EMAIL: &str = "zq-hidden@example.com";
const STREET: &str = "17 Hidden Lantern Lane";
const PHONE: &str = "+49 151 99887766";

const LISTENER: &str = r#"
name: on-order
trigger: { event: { kind: order.created } }
permissions: { events: [order.created] }
steps:
  - id: note
    uses: audit.note
    with: { message: "order {{ trigger.event.order }} with {{ trigger.event.lines }} lines" }
"#;

fn order(id: &str, status: OrderStatus, marketplace_status: &str, updated: i64) -> Order {
    Order {
        marketplace: Marketplace::Ebay,
        external_id: id.into(),
        status,
        marketplace_status: marketplace_status.into(),
        created_at_ms: 1000,
        updated_at_ms: updated,
        lines: vec![
            OrderLine {
                line_id: "L1".into(),
                sku: "MUG-1".into(),
                quantity: 2,
                listing_id: None,
            },
            OrderLine {
                line_id: "L2".into(),
                sku: "CUP-1".into(),
                quantity: 1,
                listing_id: None,
            },
        ],
        buyer: Buyer {
            name: Some(Pii::new(BUYER.to_owned())),
            email: Some(Pii::new(EMAIL.to_owned())),
            phone: Some(Pii::new(PHONE.to_owned())),
            address: Some(Address {
                line1: Some(Pii::new(STREET.to_owned())),
                country_code: "DE".into(),
                ..Address::default()
            }),
        },
    }
}

async fn ingest(store: &Store, vault: &Vault, o: &Order, now: i64) {
    let actor = Actor::System("test");
    let key = vault
        .data_key_for(&KeyOwner::connection("shop").unwrap(), &actor)
        .await
        .unwrap();
    let buyer = seal_buyer(&key, 1, o).unwrap();
    let change = order_change(1, "shop", o, buyer, Source::Webhook, now);
    store.commit(&actor, vec![change]).await.unwrap();
}

/// The detail of every event row of `source`/`kind`, oldest first.
async fn details(store: &Store, source: &str, kind: &str) -> Vec<serde_json::Value> {
    let rows: Vec<String> = store
        .query_as(
            "SELECT detail FROM events WHERE source = $1 AND kind = $2 ORDER BY id",
            sql_params![source, kind],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Every column of every event row, as text.
async fn all_event_text(store: &Store) -> String {
    let rows: Vec<(String, String, String, String, String)> = store
        .query_as(
            "SELECT source, kind, caller, operation, detail FROM events ORDER BY id",
            vec![],
        )
        .await
        .unwrap();
    format!("{rows:?}")
}

async fn order_events_are_produced_once_and_trigger_once(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    let vault = open_vault(&env).await;
    env.store
        .tamper_for_tests(
            r#"INSERT INTO connections (id, name, marketplace, endpoint, account, settings, status, created_at_ms, updated_at_ms)
             VALUES (1, 'shop', 'ebay', 'live', 'acct', '{"api_url":"https://api.ebay.com"}', 'active', 1, 1)"#,
        )
        .await
        .unwrap();
    let ops = Actor::User("usr_ops".into());
    registry::apply(&env.store, &ops, &[("on.yaml".into(), LISTENER.into())])
        .await
        .unwrap();
    let subscriber = EventTriggers::subscribe(env.store.clone()).await.unwrap();
    let t = stockade_core::time::now_ms() + 1000;
    let placed = order("ORD-1", OrderStatus::Placed, "NOT_STARTED", 2000);
    ingest(&env.store, &vault, &placed, t).await;
    // A re-delivery, and a delivery in the same millisecond: no second order.created.
    ingest(&env.store, &vault, &placed, t).await;
    ingest(&env.store, &vault, &placed, t + 1).await;
    let second = order("ORD-2", OrderStatus::Placed, "NOT_STARTED", 2000);
    ingest(&env.store, &vault, &second, t + 2).await;
    // An update that is not a cancellation: no event.
    let shipped = order("ORD-2", OrderStatus::Shipped, "SHIPPED", 3000);
    ingest(&env.store, &vault, &shipped, t + 3).await;
    // ORD-1 is cancelled, then its marketplace status changes again (same rank): one
    // order.cancelled.
    let cancelled = order("ORD-1", OrderStatus::Cancelled, "CANCELLED", 3000);
    ingest(&env.store, &vault, &cancelled, t + 4).await;
    ingest(&env.store, &vault, &cancelled, t + 5).await;
    let refunded = order("ORD-1", OrderStatus::Cancelled, "CANCELLED_REFUNDED", 4000);
    ingest(&env.store, &vault, &refunded, t + 6).await;
    // First seen already cancelled: created (with its status), nothing released.
    let late = order("ORD-3", OrderStatus::Cancelled, "CANCELLED", 2000);
    ingest(&env.store, &vault, &late, t + 7).await;

    let created = details(&env.store, "order", "created").await;
    let ids: Vec<_> = created.iter().map(|d| d["order"].clone()).collect();
    assert_eq!(ids, ["ORD-1", "ORD-2", "ORD-3"], "{created:?}");
    assert_eq!(
        created[0],
        serde_json::json!({"connection": "shop", "lines": 2, "marketplace": "ebay",
                           "order": "ORD-1", "status": "placed"})
    );
    assert_eq!(created[2]["status"], "cancelled");
    let cancels = details(&env.store, "order", "cancelled").await;
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert_eq!(cancels[0]["order"], "ORD-1");
    // The marker of the update branch never outlives its change.
    let marked = env
        .store
        .count(
            "SELECT COUNT(*) FROM orders WHERE ingested_at_ms < 0",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(marked, 0);
    let ingested = env
        .store
        .count(
            "SELECT ingested_at_ms FROM orders WHERE external_id = 'ORD-1'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ingested, t + 6);

    // The workflow runs once per new order, end to end.
    while subscriber.handle_batch(100).await.unwrap() > 0 {}
    let engine = Engine::start(
        env.store.clone(),
        EngineConfig {
            workers: 2,
            poll: Duration::from_millis(50),
            ..EngineConfig::default()
        },
    );
    let notes = wait_for_notes(&env.store, 3).await;
    engine.stop(Duration::from_secs(2)).await;
    let mut orders: Vec<String> = notes
        .iter()
        .map(|n| n.split(' ').nth(1).unwrap_or_default().to_owned())
        .collect();
    orders.sort();
    assert_eq!(orders, ["ORD-1", "ORD-2", "ORD-3"], "{notes:?}");
    assert!(
        notes.iter().all(|n| n.ends_with("with 2 lines")),
        "{notes:?}"
    );
    let jobs = env
        .store
        .count("SELECT COUNT(*) FROM jobs WHERE kind = 'workflow'", vec![])
        .await
        .unwrap();
    assert_eq!(jobs, 3);

    // The purge appends connection.revoked once, in its commit; a second purge none.
    purge::purge(&vault, "shop", "deauthorized", &ops)
        .await
        .unwrap();
    purge::purge(&vault, "shop", "deauthorized", &ops)
        .await
        .unwrap();
    let revoked = details(&env.store, "connection", "revoked").await;
    assert_eq!(
        revoked,
        [
            serde_json::json!({"connection": "shop", "marketplace": "ebay", "orders": 3,
                            "reason": "deauthorized"})
        ]
    );

    let text = all_event_text(&env.store).await;
    for secret in [BUYER, EMAIL, STREET, PHONE, "Zebulon", "Lantern"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    env.cleanup().await;
}

/// The messages of the `workflow.note` audit rows once there are `n` of them and every
/// workflow job succeeded.
async fn wait_for_notes(store: &Store, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let rows = store.audit_rows(0, 10_000).await.unwrap();
        let notes: Vec<String> = rows
            .iter()
            .filter(|r| r.action == "workflow.note")
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.details).unwrap_or_default()["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        let states: Vec<String> = store
            .query_as("SELECT state FROM jobs WHERE kind = 'workflow'", vec![])
            .await
            .unwrap();
        let done = states.iter().all(|s| s == JobState::Succeeded.as_str());
        if notes.len() >= n && done {
            return notes;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the workflow did not run for every new order");
}

fn one_line(id: &str, status: OrderStatus, updated: i64) -> Order {
    let mut o = order(id, status, status.as_str(), updated);
    o.lines.truncate(1);
    o
}

async fn stock_low_is_raised_once_per_crossing(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    let vault = open_vault(&env).await;
    env.store
        .tamper_for_tests(
            r#"INSERT INTO connections (id, name, marketplace, endpoint, account, settings, status, created_at_ms, updated_at_ms)
             VALUES (1, 'shop', 'ebay', 'live', 'acct', '{"api_url":"https://api.ebay.com"}', 'active', 1, 1)"#,
        )
        .await
        .unwrap();
    env.store
        .tamper_for_tests(
            "INSERT INTO skus (sku, on_hand, reserved, created_at_ms, updated_at_ms) VALUES ('MUG-1', 9, 0, 1, 1)",
        )
        .await
        .unwrap();
    // The default threshold (5) until the setting is stored; then 4.
    stockade_sync::set_low_stock_threshold(&env.store, 4)
        .await
        .unwrap();
    // Idempotent: the same value writes nothing.
    let before = env.store.audit_rows(0, 10_000).await.unwrap().len();
    stockade_sync::set_low_stock_threshold(&env.store, 4)
        .await
        .unwrap();
    assert_eq!(env.store.audit_rows(0, 10_000).await.unwrap().len(), before);
    let t = stockade_core::time::now_ms();
    // Each order reserves 2 MUG-1: 9 → 7 → 5 → 3 (crossed) → 1 (still low).
    for (i, id) in ["A", "B", "C", "D"].iter().enumerate() {
        let o = one_line(id, OrderStatus::Placed, 2000);
        ingest(&env.store, &vault, &o, t + i as i64).await;
        // A re-delivery changes nothing and raises nothing.
        ingest(&env.store, &vault, &o, t + i as i64).await;
    }
    let low = details(&env.store, "stock", "low").await;
    assert_eq!(
        low,
        [serde_json::json!({"available": 3, "sku": "MUG-1", "threshold": 4})]
    );
    // Cancellations release: 1 → 3 → 5 (above again); the next order crosses again.
    for (i, id) in ["C", "D"].iter().enumerate() {
        let o = one_line(id, OrderStatus::Cancelled, 3000);
        ingest(&env.store, &vault, &o, t + 10 + i as i64).await;
    }
    assert_eq!(details(&env.store, "stock", "low").await.len(), 1);
    ingest(
        &env.store,
        &vault,
        &one_line("E", OrderStatus::Placed, 2000),
        t + 20,
    )
    .await;
    let low = details(&env.store, "stock", "low").await;
    assert_eq!(low.len(), 2, "{low:?}");
    assert_eq!(low[1]["available"], 3);
    env.cleanup().await;
}
