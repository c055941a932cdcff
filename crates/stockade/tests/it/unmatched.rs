//! Orders before the catalog, through the CLI.
use crate::sync::sku_list;

/// Orders before the catalog through the CLI (regression: a line whose SKU was not in the
/// catalog was never reserved and `stock verify` said all was well): `sku list` and
/// `connection show` flag it, `stock verify` exits 3, `sku import` reserves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_order_lines_are_flagged_verified_and_reserved_on_import() {
    use stockade_core::order::{Buyer, Marketplace, Order, OrderLine, OrderStatus};
    let sb = crate::server::init("dev", "");
    crate::sync::add_unreachable_tiktok(&sb, "s");
    let csv = sb.data().join("catalog.csv");
    std::fs::write(&csv, "sku,on_hand\nMUG-RED,10\n").unwrap();
    sb.run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0);
    // An order for MUG-RED and for MUG-BLUE (not in the catalog), stored the way the
    // engine stores it.
    let url = stockade_store::DatabaseUrl::Sqlite(sb.data().join("stockade.db"));
    let store =
        stockade_store::Store::open(&url, stockade_core::Environment::Dev, &Default::default())
            .await
            .unwrap();
    let conn = stockade_sync::connections::get(&store, "tiktok")
        .await
        .unwrap();
    let line = |id: &str, sku: &str| OrderLine {
        line_id: id.into(),
        sku: sku.into(),
        quantity: 2,
        listing_id: None,
    };
    let order = Order {
        marketplace: Marketplace::TikTok,
        external_id: "576000000000000042".into(),
        status: OrderStatus::Placed,
        marketplace_status: "AWAITING_SHIPMENT".into(),
        created_at_ms: 1,
        updated_at_ms: 2,
        lines: vec![line("l1", "MUG-RED"), line("l2", "MUG-BLUE")],
        buyer: Buyer::default(),
    };
    let change = stockade_sync::ingest::order_change(
        conn.id,
        "tiktok",
        &order,
        [None, None, None, None],
        stockade_sync::ingest::Source::Poll,
        3,
    );
    store
        .commit(&stockade_core::Actor::System("test"), vec![change])
        .await
        .unwrap();
    store.close().await;

    let list = sb.run(&["sku", "list"]).expect_code(0).stdout();
    assert!(
        list.contains("UNMATCHED") && list.contains("MUG-BLUE"),
        "{list}"
    );
    let show = sb
        .run(&["connection", "show", "tiktok"])
        .expect_code(0)
        .stdout();
    assert!(
        show.contains("UNMATCHED") && show.contains("MUG-BLUE"),
        "{show}"
    );
    let out = sb.run(&["stock", "verify"]).expect_code(3);
    let text = format!("{}{}", out.stdout(), out.stderr());
    assert!(
        text.contains("not in the catalog") && text.contains("MUG-BLUE"),
        "{text}"
    );
    std::fs::write(&csv, "sku,on_hand\nMUG-RED,10\nMUG-BLUE,5\n").unwrap();
    let imported = sb
        .run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0)
        .stdout();
    assert!(imported.contains("1 order line(s)"), "{imported}");
    let stock = sku_list(&sb);
    assert_eq!(stock["MUG-BLUE"], (5, 2, 3));
    assert_eq!(stock["MUG-RED"], (10, 2, 8));
    sb.run(&["stock", "verify"]).expect_code(0);
    sb.run(&["audit", "verify"]).expect_code(0);
}
