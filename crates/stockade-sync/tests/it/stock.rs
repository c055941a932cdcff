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
