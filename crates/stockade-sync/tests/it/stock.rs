//! `stock::adjust_change` (the in-commit adjustment the workflow steps use): refusals
//! build nothing, the bounds are re-checked inside the commit (a concurrent change cannot
//! take on hand below zero), a unique key is ledgered once, a zero delta is audited
//! without a ledger row, and the ledger still explains
//! the stock.

use super::*;
use stockade_sync::catalog::MergeSku;
use stockade_sync::stock::{Adjustment, adjust_change, sku_stock};

fn adj<'a>(sku: &'a str, delta: i64, ukey: Option<&'a str>) -> Adjustment<'a> {
    Adjustment {
        sku,
        delta,
        reason: "cycle count",
        ukey,
    }
}

async fn adjustments_keep_their_rules_inside_the_commit(db: Db) {
    let (store, _) = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap();
    let sku = MergeSku {
        sku: "CUP".into(),
        on_hand: Some(10),
        low_stock_threshold: None,
        listings: vec![],
    };
    catalog::merge(&store, &[sku], &ACTOR, "catalog.import")
        .await
        .unwrap();
    let ledger = || store.count("SELECT COUNT(*) FROM stock_ledger", vec![]);
    let before = ledger().await.unwrap();
    // Refusals: an unknown SKU, below zero, above the import's bound, no reason.
    for (a, says) in [
        (adj("NOPE", 1, None), "no SKU"),
        (adj("CUP", -11, None), "below zero"),
        (adj("CUP", 1_000_000_000, None), "more than"),
        (
            Adjustment {
                reason: "  ",
                ..adj("CUP", 1, None)
            },
            "reason",
        ),
    ] {
        let e = adjust_change(&store, &a).await.expect_err("refused");
        assert!(e.to_string().contains(says), "{e}");
    }
    // Built at 10 on hand, committed after another adjustment took 5: the statement
    // re-checks, so the commit fails whole instead of leaving −5.
    let (late, figures) = adjust_change(&store, &adj("CUP", -10, None)).await.unwrap();
    assert_eq!(figures.on_hand, 0);
    let (first, _) = adjust_change(&store, &adj("CUP", -5, None)).await.unwrap();
    store.commit(&ACTOR, vec![first]).await.unwrap();
    assert!(store.commit(&ACTOR, vec![late]).await.is_err());
    assert_eq!(sku_stock(&store, "CUP").await.unwrap().unwrap().on_hand, 5);
    assert_eq!(ledger().await.unwrap(), before + 1);
    // A unique key is ledgered once.
    let (a, _) = adjust_change(&store, &adj("CUP", 2, Some("k1")))
        .await
        .unwrap();
    let (b, _) = adjust_change(&store, &adj("CUP", 2, Some("k1")))
        .await
        .unwrap();
    store.commit(&ACTOR, vec![a]).await.unwrap();
    assert!(store.commit(&ACTOR, vec![b]).await.is_err());
    assert_eq!(sku_stock(&store, "CUP").await.unwrap().unwrap().on_hand, 7);
    // A delta of 0 writes the audit row only.
    let rows = ledger().await.unwrap();
    let (zero, _) = adjust_change(&store, &adj("CUP", 0, None)).await.unwrap();
    store.commit(&ACTOR, vec![zero]).await.unwrap();
    assert_eq!(ledger().await.unwrap(), rows);
    assert_eq!(
        store
            .count(
                "SELECT COUNT(*) FROM audit WHERE action = 'stock.adjust'",
                vec![]
            )
            .await
            .unwrap(),
        3
    );
    assert!(catalog::verify_stock(&store).await.unwrap().is_empty());
    store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adjustments_keep_their_rules_inside_the_commit_on_sqlite() {
    adjustments_keep_their_rules_inside_the_commit(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adjustments_keep_their_rules_inside_the_commit_on_postgresql() {
    if let Some(db) = Db::postgres() {
        adjustments_keep_their_rules_inside_the_commit(db).await;
    }
}

/// The SKU and threshold of each `stock low` event, in order.
async fn low_events(store: &Store) -> Vec<(String, i64)> {
    let rows: Vec<(String,)> = store
        .query_as(
            "SELECT detail FROM events WHERE source = 'stock' AND kind = 'low' ORDER BY id",
            vec![],
        )
        .await
        .unwrap();
    rows.into_iter()
        .map(|(d,)| {
            let v: serde_json::Value = serde_json::from_str(&d).unwrap();
            (
                v["sku"].as_str().unwrap().to_owned(),
                v["threshold"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A SKU's own threshold (CSV column, `set_thresholds`) decides its `stock low` event;
/// the others keep the global one; clearing goes back to it; an unknown SKU changes
/// nothing; `sku_stock` shows the threshold that applies.
async fn a_sku_threshold_of_its_own_decides_its_low_stock_event(db: Db) {
    let (store, _) = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap();
    let csv = "sku,on_hand,low_stock_threshold\nMUG,30,20\nCUP,30,\n";
    catalog::import_csv(&store, csv, &ACTOR).await.unwrap();
    let mug = sku_stock(&store, "MUG").await.unwrap().unwrap();
    assert_eq!(
        (mug.low_stock_threshold, mug.low_stock_threshold_own),
        (20, true)
    );
    let cup = sku_stock(&store, "CUP").await.unwrap().unwrap();
    assert_eq!(
        (cup.low_stock_threshold, cup.low_stock_threshold_own),
        (5, false)
    );
    // 30 → 19: MUG crosses its own 20; CUP at 19 is above the global 5.
    for sku in ["MUG", "CUP"] {
        let (c, _) = adjust_change(&store, &adj(sku, -11, None)).await.unwrap();
        store.commit(&ACTOR, vec![c]).await.unwrap();
    }
    let low = low_events(&store).await;
    assert_eq!(low, vec![("MUG".to_owned(), 20)]);
    // CUP gets 15 of its own; MUG goes back to the global one.
    let set = [("CUP".to_owned(), Some(15)), ("MUG".to_owned(), None)];
    stockade_sync::stock::set_thresholds(&store, &set, &ACTOR)
        .await
        .unwrap();
    for sku in ["MUG", "CUP"] {
        let (c, _) = adjust_change(&store, &adj(sku, -5, None)).await.unwrap();
        store.commit(&ACTOR, vec![c]).await.unwrap();
    }
    let low = low_events(&store).await;
    assert_eq!(low, vec![("MUG".to_owned(), 20), ("CUP".to_owned(), 15)]);
    assert!(
        !sku_stock(&store, "MUG")
            .await
            .unwrap()
            .unwrap()
            .low_stock_threshold_own
    );
    // The export carries the column, and imports back.
    let csv = catalog::export_csv(&store).await.unwrap();
    assert!(
        csv.starts_with("sku,on_hand,reserved,available,low_stock_threshold\n"),
        "{csv}"
    );
    assert!(
        csv.contains("\nCUP,14,0,14,15\n") && csv.contains("\nMUG,14,0,14,\n"),
        "{csv}"
    );
    catalog::import_csv(&store, &csv, &ACTOR).await.unwrap();
    assert_eq!(
        sku_stock(&store, "CUP")
            .await
            .unwrap()
            .unwrap()
            .low_stock_threshold,
        15
    );
    // Refusals write nothing.
    let audit = || {
        store.count(
            "SELECT COUNT(*) FROM audit WHERE action = 'sku.threshold'",
            vec![],
        )
    };
    let before = audit().await.unwrap();
    let unknown = [("CUP".to_owned(), Some(1)), ("NOPE".to_owned(), Some(3))];
    assert!(
        stockade_sync::stock::set_thresholds(&store, &unknown, &ACTOR)
            .await
            .is_err()
    );
    let negative = [("CUP".to_owned(), Some(-1))];
    assert!(
        stockade_sync::stock::set_thresholds(&store, &negative, &ACTOR)
            .await
            .is_err()
    );
    assert!(
        catalog::import_csv(&store, "sku,on_hand,low_stock_threshold\nCUP,9,x\n", &ACTOR)
            .await
            .is_err()
    );
    assert_eq!(audit().await.unwrap(), before);
    assert_eq!(
        sku_stock(&store, "CUP")
            .await
            .unwrap()
            .unwrap()
            .low_stock_threshold,
        15
    );
    store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sku_threshold_of_its_own_decides_its_low_stock_event_on_sqlite() {
    a_sku_threshold_of_its_own_decides_its_low_stock_event(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sku_threshold_of_its_own_decides_its_low_stock_event_on_postgresql() {
    if let Some(db) = Db::postgres() {
        a_sku_threshold_of_its_own_decides_its_low_stock_event(db).await;
    }
}
