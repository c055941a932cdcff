//! The stock formula is written three times (see `catalog`'s module docs): the Rust
//! `catalog::target`, the `RETARGET` SQL a catalog change runs, and the `skus_retarget`
//! trigger of the store's migrations. For a grid of stock, reservations, buffers and
//! maximums (negative available stock, no maximum and stock above the cap included), both
//! SQL copies must store exactly what `catalog::target` computes, on both databases.

use super::*;
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, SqlValue, sql_params};
use stockade_sync::catalog::{MergeListing, MergeSku};
use stockade_sync::connections::{Connection, ConnectionStatus, EndpointKind};
use stockade_sync::{ConnectionSettings, ListingIds};

/// Far from every available quantity of the grid, so moving to it and back makes the
/// trigger fire for every SKU.
const PARKED: i64 = 1_000_000;
const CONNECTION_ID: i64 = 7;

#[derive(Debug, Clone, Copy)]
struct Point {
    on_hand: i64,
    reserved: i64,
    buffer: i64,
    max: Option<i64>,
}

fn grid() -> Vec<Point> {
    let mut out = Vec::new();
    for on_hand in [-5, 0, 3, 10, 3_000_000_000] {
        for reserved in [0, 2, 12] {
            for buffer in [0, 1, 5] {
                for max in [None, Some(0), Some(4), Some(100)] {
                    out.push(Point {
                        on_hand,
                        reserved,
                        buffer,
                        max,
                    });
                }
            }
        }
    }
    out
}

fn sku(i: usize) -> String {
    format!("formula-{i:04}")
}

fn sql(statement: &'static str, params: Vec<SqlValue>, resource: String) -> Change {
    Change::new(
        Mutation::Sql {
            statement,
            params,
            expect: Expect::Any,
        },
        AuditEntry::new("test.stock", resource, AuditDetails::new()),
    )
}

/// `(sku, target_qty)` of every listing of the test connection.
async fn targets(store: &Store) -> HashMap<String, i64> {
    store
        .query(
            "SELECT sku, target_qty FROM listings WHERE connection_id = $1",
            sql_params![CONNECTION_ID],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.decode().unwrap())
        .collect()
}

fn check(
    what: &str,
    stored: &HashMap<String, i64>,
    points: &[Point],
    available: impl Fn(&Point) -> i64,
) {
    assert_eq!(stored.len(), points.len(), "{what}: one listing per point");
    for (i, p) in points.iter().enumerate() {
        let want = catalog::target(available(p), p.buffer, p.max);
        assert_eq!(stored[&sku(i)], want, "{what}: {p:?}");
    }
}

async fn sql_and_rust_targets_agree(db: Db) {
    let (store, _) = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap();
    let points = grid();
    // Stock first, as stored rows (no ledger: the grid wants negative and huge values).
    let inserts = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            sql(
                "INSERT INTO skus (sku, on_hand, reserved, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, 0, 0)",
                sql_params![sku(i), p.on_hand, p.reserved],
                format!("sku:{}", sku(i)),
            )
        })
        .collect();
    store.commit(&ACTOR, inserts).await.unwrap();

    // RETARGET: a catalog merge adds each listing with its buffer and maximum.
    let connection = Connection {
        id: CONNECTION_ID,
        name: "formula".into(),
        marketplace: Marketplace::Ebay,
        endpoint: EndpointKind::Sandbox,
        account: "formula".into(),
        settings: ConnectionSettings::default(),
        status: ConnectionStatus::Active,
        created_at_ms: 0,
        updated_at_ms: 0,
        revoked_at_ms: None,
    };
    let merge: Vec<MergeSku> = points
        .iter()
        .enumerate()
        .map(|(i, p)| MergeSku {
            sku: sku(i),
            on_hand: None,
            low_stock_threshold: None,
            listings: vec![MergeListing {
                connection: connection.clone(),
                ids: ListingIds {
                    offer_ids: vec![format!("{}", 9000 + i)],
                    ..ListingIds::default()
                },
                limits: Some((p.buffer, p.max)),
            }],
        })
        .collect();
    catalog::merge(&store, &merge, &ACTOR, "catalog.import")
        .await
        .unwrap();
    check("RETARGET", &targets(&store).await, &points, |p| {
        p.on_hand - p.reserved
    });

    // The trigger: every SKU's available stock moves away and back.
    let park = points
        .iter()
        .enumerate()
        .map(|(i, _)| {
            sql(
                "UPDATE skus SET on_hand = $2, reserved = 0 WHERE sku = $1",
                sql_params![sku(i), PARKED],
                format!("sku:{}", sku(i)),
            )
        })
        .collect();
    store.commit(&ACTOR, park).await.unwrap();
    check("trigger (parked)", &targets(&store).await, &points, |_| {
        PARKED
    });
    let back = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            sql(
                "UPDATE skus SET on_hand = $2, reserved = $3 WHERE sku = $1",
                sql_params![sku(i), p.on_hand, p.reserved],
                format!("sku:{}", sku(i)),
            )
        })
        .collect();
    store.commit(&ACTOR, back).await.unwrap();
    check("trigger", &targets(&store).await, &points, |p| {
        p.on_hand - p.reserved
    });

    store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_copies_of_the_stock_formula_agree_with_catalog_target_on_sqlite() {
    sql_and_rust_targets_agree(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_copies_of_the_stock_formula_agree_with_catalog_target_on_postgresql() {
    if let Some(db) = Db::postgres() {
        sql_and_rust_targets_agree(db).await;
    }
}
