//! The report examples on both backends: `daily-sales-summary` (through `orders.summary`)
//! and `nightly-reconciliation` (through `stock.reconcile_report`), each applied as
//! shipped, run for a schedule tick, and read back from the DingTalk simulator and the
//! journal. Orders carry buyer data; none of it reaches a step output or an alert.

use serde_json::Value;
use stockade_core::order::{Address, Buyer, Marketplace, Order, OrderLine, OrderStatus};
use stockade_core::{Actor, Pii};
use stockade_store::Store;
use stockade_sync::ingest::{Source, order_change, seal_buyer};
use stockade_vault::{KeyOwner, Vault};
use stockade_workflows::exec::RunOutcome;

use crate::alert_rig::{DING, FEISHU, Rig};
use crate::examples_run::{Runner, apply, enqueue_tick, example, journal_text};
use crate::exec_support::{Backend, Env, both};

both!(
    daily_sales_summary_posts_counts_per_channel_without_buyer_data,
    nightly_reconciliation_reports_drift_unmatched_lines_and_oversells
);

pub(crate) const BUYER: &str = "Wilhelmina Quince-Buyer";
pub(crate) const STREET: &str = "88 Hidden Orchid Road";
const HOUR: i64 = 3_600_000;

/// Connections `tiktok-sg` (id 1) and `ebay-us` (id 2), and the catalog's SKUs.
pub(crate) async fn shop(store: &Store) {
    for (id, name, market) in [(1, "tiktok-sg", "tiktok"), (2, "ebay-us", "ebay")] {
        store
            .tamper_for_tests(&format!(
                r#"INSERT INTO connections (id, name, marketplace, endpoint, account, settings, status, created_at_ms, updated_at_ms)
                   VALUES ({id}, '{name}', '{market}', 'live', 'acct-{id}', '{{"api_url":"https://api.example.com"}}', 'active', 1, 1)"#
            ))
            .await
            .unwrap();
    }
    for sku in ["MUG-RED-350", "CUP-BLUE-250"] {
        store
            .tamper_for_tests(&format!(
                "INSERT INTO skus (sku, on_hand, reserved, created_at_ms, updated_at_ms) VALUES ('{sku}', 3, 0, 1, 1)"
            ))
            .await
            .unwrap();
    }
}

pub(crate) fn order(id: &str, status: OrderStatus, created: i64, lines: &[(&str, u32)]) -> Order {
    Order {
        marketplace: Marketplace::TikTok,
        external_id: id.into(),
        status,
        marketplace_status: status.as_str().into(),
        created_at_ms: created,
        updated_at_ms: created,
        lines: lines
            .iter()
            .enumerate()
            .map(|(i, (sku, q))| OrderLine {
                line_id: format!("L{i}"),
                sku: (*sku).into(),
                quantity: *q,
                listing_id: None,
            })
            .collect(),
        buyer: Buyer {
            name: Some(Pii::new(BUYER.to_owned())),
            email: None,
            phone: None,
            address: Some(Address {
                line1: Some(Pii::new(STREET.to_owned())),
                country_code: "SG".into(),
                ..Address::default()
            }),
        },
    }
}

/// Ingest `o` on connection `id`/`name` through the ingest path (buyer sealed).
pub(crate) async fn ingest(store: &Store, vault: &Vault, id: i64, name: &str, o: &Order) {
    let actor = Actor::System("test");
    let key = vault
        .data_key_for(&KeyOwner::connection(name).unwrap(), &actor)
        .await
        .unwrap();
    let buyer = seal_buyer(&key, id, o).unwrap();
    let change = order_change(id, name, o, buyer, Source::Webhook, o.updated_at_ms);
    store.commit(&actor, vec![change]).await.unwrap();
}

async fn daily_sales_summary_posts_counts_per_channel_without_buyer_data(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let rig = Rig::start(&env).await;
    shop(&env.store).await;
    let text = example(
        "daily-sales-summary",
        &[("[tiktok-sg, amazon-sg, ebay-us]", "[tiktok-sg, ebay-us]")],
    );
    apply(&env.store, &[text]).await;
    let tick = stockade_core::time::now_ms();
    let tt = |id: &str, status, hours_ago: i64, lines: &[(&str, u32)]| {
        order(id, status, tick - hours_ago * HOUR, lines)
    };
    let placed = OrderStatus::Placed;
    for o in [
        tt("T-1", placed, 2, &[("MUG-RED-350", 2), ("CUP-BLUE-250", 1)]),
        tt("T-2", placed, 20, &[("MUG-RED-350", 1)]),
        tt("T-3", OrderStatus::Cancelled, 5, &[("CUP-BLUE-250", 4)]),
        // The day before yesterday: outside the window.
        tt("T-OLD", placed, 30, &[("MUG-RED-350", 9)]),
    ] {
        ingest(&env.store, &rig.vault, 1, "tiktok-sg", &o).await;
    }
    let mut e = tt("E-1", placed, 3, &[("CUP-BLUE-250", 2)]);
    e.marketplace = Marketplace::Ebay;
    ingest(&env.store, &rig.vault, 2, "ebay-us", &e).await;
    enqueue_tick(&env.store, "daily-sales-summary", tick).await;
    let runs = Runner::new(&env.store).drain(&env.store).await;
    assert_eq!(
        runs,
        vec![("daily-sales-summary".to_owned(), RunOutcome::Succeeded)]
    );

    let journal = journal_text(&env.store).await;
    let summary: Vec<(String,)> = env
        .store
        .query_as(
            "SELECT output FROM job_steps WHERE step_id = 'sales'",
            vec![],
        )
        .await
        .unwrap();
    let s: Value = serde_json::from_str(&summary[0].0).unwrap();
    assert_eq!(s["total"]["orders"], 4, "{s}");
    assert_eq!(s["total"]["cancelled"], 1, "{s}");
    assert_eq!(s["total"]["units"], 6, "{s}");
    let tiktok = &s["channels"][1];
    assert_eq!(tiktok["connection"], "tiktok-sg", "{s}");
    assert_eq!(tiktok["orders"], 3);
    assert_eq!(tiktok["units"], 4, "placed units only: {s}");
    assert_eq!(tiktok["top_skus"][0]["sku"], "MUG-RED-350");
    assert_eq!(tiktok["by_status"]["cancelled"], 1);
    assert_eq!(s["channels"][0]["units"], 2);
    let got = rig
        .wait_text(DING, &["Stockade daily sales: 4 orders, 6 units"])
        .await;
    let all = format!("{got:?}{journal}");
    for secret in [BUYER, STREET, "Wilhelmina", "Orchid"] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
    assert!(!rig.got(FEISHU).iter().any(|m| m.contains("daily sales")));
    rig.stop().await;
    env.cleanup().await;
}

async fn nightly_reconciliation_reports_drift_unmatched_lines_and_oversells(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let rig = Rig::start(&env).await;
    shop(&env.store).await;
    let text = example(
        "nightly-reconciliation",
        &[("[tiktok-sg, amazon-sg, ebay-us]", "[tiktok-sg, ebay-us]")],
    );
    apply(&env.store, &[text]).await;
    // tiktok-sg: MUG's newest target not pushed yet; CUP settled. ebay-us: MUG confirmed
    // 3 but the reconciler read 1 back.
    for (conn, sku, target, version, pushed, acked, read) in [
        (1, "MUG-RED-350", 3, 2, 1, "3", "NULL"),
        (1, "CUP-BLUE-250", 3, 1, 1, "3", "3"),
        (2, "MUG-RED-350", 3, 1, 1, "3", "1"),
    ] {
        env.store
            .tamper_for_tests(&format!(
                "INSERT INTO listings (connection_id, sku, listing_id, listing_ref, buffer, target_qty, target_version, pushed_version, acked_qty, channel_qty)
                 VALUES ({conn}, '{sku}', 'L-{conn}-{sku}', '{{}}', 0, {target}, {version}, {pushed}, {acked}, {read})"
            ))
            .await
            .unwrap();
    }
    let now = stockade_core::time::now_ms();
    // ebay-us: an order for a SKU the catalog lacks, and one sold 5 BOWL with 3 on hand
    // (a SKU without listings, so no target moves).
    env.store
        .tamper_for_tests(
            "INSERT INTO skus (sku, on_hand, reserved, created_at_ms, updated_at_ms) VALUES ('BOWL-WHITE', 3, 0, 1, 1)",
        )
        .await
        .unwrap();
    let mut unknown = order(
        "E-9",
        OrderStatus::Placed,
        now - HOUR,
        &[("TEAPOT-GREEN", 1)],
    );
    unknown.marketplace = Marketplace::Ebay;
    ingest(&env.store, &rig.vault, 2, "ebay-us", &unknown).await;
    let mut over = order(
        "E-10",
        OrderStatus::Placed,
        now - HOUR,
        &[("BOWL-WHITE", 5)],
    );
    over.marketplace = Marketplace::Ebay;
    ingest(&env.store, &rig.vault, 2, "ebay-us", &over).await;
    enqueue_tick(&env.store, "nightly-reconciliation", now).await;
    let runs = Runner::new(&env.store).drain(&env.store).await;
    assert_eq!(
        runs,
        vec![("nightly-reconciliation".to_owned(), RunOutcome::Succeeded)]
    );
    let rows: Vec<(String,)> = env
        .store
        .query_as(
            "SELECT output FROM job_steps WHERE step_id = 'report'",
            vec![],
        )
        .await
        .unwrap();
    let r: Value = serde_json::from_str(&rows[0].0).unwrap();
    let (ebay, tiktok) = (&r["channels"][0], &r["channels"][1]);
    assert_eq!(tiktok["drift"]["count"], 1, "{r}");
    assert_eq!(tiktok["drift"]["rows"][0]["why"], "pending");
    assert_eq!(ebay["drift"]["rows"][0]["why"], "read_back", "{r}");
    assert_eq!(ebay["unmatched"]["rows"][0]["sku"], "TEAPOT-GREEN", "{r}");
    assert_eq!(ebay["oversold"]["rows"][0]["order"], "E-10", "{r}");
    assert_eq!(ebay["oversold_units"], 2, "{r}");
    assert_eq!(r["problems"], 4, "{r}");
    let lines = r["lines"].to_string();
    assert!(
        lines.contains("tiktok-sg: listings in drift 1 of 2"),
        "{lines}"
    );
    let got = rig
        .wait_text(DING, &["Stockade reconciliation: 4 to look at"])
        .await;
    let all = format!("{got:?}{}", journal_text(&env.store).await);
    for secret in [BUYER, STREET] {
        assert!(!all.contains(secret), "{secret} leaked");
    }
    rig.stop().await;
    env.cleanup().await;
}
