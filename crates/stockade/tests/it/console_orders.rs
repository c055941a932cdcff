//! The Orders pages in headless Chromium against a real `stockade serve`: an administrator
//! signs in with TOTP, finds an order in the list, opens it (buyer fields masked),
//! reveals them with a reason, and finds the reveal's audit row on /audit. Screenshots
//! of the list and the (masked) order at laptop and phone widths, in English and Chinese;
//! never of revealed buyer data.

use stockade_core::order::{Address, Buyer, Marketplace, Order, OrderLine, OrderStatus};
use stockade_core::{Actor, Environment, Pii};
use stockade_vault::{MasterKeys, Vault};

use crate::browser::{path_of, screenshot_dir};
use crate::harness::{Sandbox, require_tool};
use crate::server::{PASSWORD, Server, add_user, init, oathtool};
use crate::webdriver::Browser;

const CATALOG: &str = "sku,on_hand\nMUG-RED-350ML,40\nTEE-BLK-XL,12\nLONG-SKU-WITH-A-VERY-LONG-NAME-THAT-MUST-WRAP-0001,400\n";
const BUYER_NAME: &str = "Lin Meihua";
const BUYER_EMAIL: &str = "meihua.lin@mail.example";

/// Orders on the `tiktok` connection, stored the way the engine stores them (buyer
/// fields sealed under the connection's data key).
async fn seed_orders(sb: &Sandbox) {
    let url = stockade_store::DatabaseUrl::Sqlite(sb.data().join("stockade.db"));
    let store = stockade_store::Store::open(&url, Environment::Dev, &Default::default())
        .await
        .unwrap();
    let master = MasterKeys::load_file(&sb.data().join("master.key"), Environment::Dev).unwrap();
    let vault = Vault::open(store.clone(), master).await.unwrap();
    let conn = stockade_sync::connections::get(&store, "tiktok")
        .await
        .unwrap();
    let actor = Actor::System("test");
    let key = vault
        .data_key_for(&conn.key_owner().unwrap(), &actor)
        .await
        .unwrap();
    let now = stockade_core::time::now_ms();
    let mut changes = Vec::new();
    for n in 0..12_i64 {
        let sku = [
            "MUG-RED-350ML",
            "TEE-BLK-XL",
            "LONG-SKU-WITH-A-VERY-LONG-NAME-THAT-MUST-WRAP-0001",
        ][(n % 3) as usize];
        let order = Order {
            marketplace: Marketplace::TikTok,
            external_id: format!("5760000000000{n:05}"),
            status: [
                OrderStatus::Placed,
                OrderStatus::Shipped,
                OrderStatus::Cancelled,
            ][(n % 3) as usize],
            marketplace_status: "AWAITING_SHIPMENT".into(),
            created_at_ms: now - (12 - n) * 600_000,
            updated_at_ms: now - (12 - n) * 600_000,
            lines: vec![OrderLine {
                line_id: "1".into(),
                sku: sku.into(),
                quantity: if n % 2 == 0 { 1 } else { 2 },
                listing_id: None,
            }],
            buyer: Buyer {
                name: Some(Pii::new(if n == 11 {
                    BUYER_NAME.into()
                } else {
                    format!("Buyer {n}")
                })),
                email: Some(Pii::new(BUYER_EMAIL.into())),
                phone: None,
                address: Some(Address {
                    line1: Some(Pii::new("1 Raffles Place".into())),
                    country_code: "SG".into(),
                    ..Address::default()
                }),
            },
        };
        let buyer = stockade_sync::ingest::seal_buyer(&key, conn.id, &order).unwrap();
        changes.push(stockade_sync::ingest::order_change(
            conn.id,
            "tiktok",
            &order,
            buyer,
            stockade_sync::ingest::Source::Poll,
            now,
        ));
    }
    store.commit(&actor, changes).await.unwrap();
    vault.close().await;
}

/// Sign in through the pages and enroll TOTP (the code from `oathtool`).
async fn sign_in(b: &Browser, server: &Server, email: &str) {
    b.goto(&server.url("/login")).await;
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    assert_eq!(path_of(&b.current_url().await), "/mfa/enroll");
    let key = b.text(".qr + p code").await;
    b.fill("#code", &oathtool(&key, 0)).await;
    b.click("button[type=submit]").await;
    assert_eq!(b.count("ol.codes li").await, 10, "{}", b.source().await);
}

/// Both widths of one page (masked pages only: a screenshot never holds buyer data).
async fn shoot(b: &Browser, server: &Server, path: &str, name: &str) {
    let shots = screenshot_dir();
    for (w, h) in [(1366, 768), (360, 740)] {
        b.set_size(w, h).await;
        b.goto(&server.url(path)).await;
        let page = b.source().await;
        assert!(
            !page.contains(BUYER_NAME) && !page.contains(BUYER_EMAIL),
            "{path}"
        );
        b.screenshot(&shots.join(format!("console-{name}-{w}.png")))
            .await;
    }
    b.set_size(1366, 768).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reveals_one_orders_buyer_fields_with_a_reason_and_finds_the_audit_row() {
    if !require_tool("oathtool", "oathtool", "the orders browser test") {
        return;
    }
    let Some((chromium, chromedriver)) =
        crate::webdriver::browser_binaries("the orders browser test")
    else {
        return;
    };
    let sb = init("dev", "[console]\ntimezone = \"Asia/Singapore\"\n");
    crate::sync::add_unreachable_tiktok(&sb, "orders-secret-1");
    let csv = sb.dir.join("catalog.csv");
    std::fs::write(&csv, CATALOG).unwrap();
    sb.run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0);
    seed_orders(&sb).await;
    add_user(&sb, "admin@shop.example", "admin");
    let server = Server::start(&sb);
    let b = Browser::start(&chromium, &chromedriver, sb.dir.join("chromium-profile")).await;
    b.set_size(1366, 768).await;
    sign_in(&b, &server, "admin@shop.example").await;

    // The list from the navigation: newest first; search by SKU.
    b.goto(&server.url("/overview")).await;
    b.click("a[href='/orders']").await;
    assert_eq!(path_of(&b.current_url().await), "/orders");
    assert_eq!(b.count("#orders tbody tr").await, 12);
    assert!(
        b.text("#orders tbody tr")
            .await
            .contains("576000000000000011")
    );
    b.fill("#q", "tee-blk-xl").await;
    b.click("form.filters button").await;
    assert_eq!(b.count("#orders tbody tr").await, 4, "{}", b.source().await);
    shoot(&b, &server, "/orders", "orders-en").await;

    // One order: masked; the form asks for a reason.
    b.goto(&server.url("/orders")).await;
    b.click("#orders tbody tr th a").await;
    let detail = path_of(&b.current_url().await);
    assert!(detail.starts_with("/orders/"), "{detail}");
    let main = b.text("main").await;
    assert!(
        main.contains("•••• (hidden)") && main.contains("576000000000000011"),
        "{main}"
    );
    assert!(!main.contains(BUYER_NAME));
    shoot(&b, &server, &detail, "order-en").await;

    // Chinese: the same pages, switched with the language link.
    b.goto(&server.url(&detail)).await;
    b.click("#lang-switch").await;
    let main = b.text("main").await;
    assert!(
        main.contains("已隐藏") && main.contains("库存变动"),
        "{main}"
    );
    shoot(&b, &server, &detail, "order-zh").await;
    shoot(&b, &server, "/orders", "orders-zh").await;
    b.goto(&server.url("/orders")).await;
    b.click("#lang-switch").await;

    // Reveal with a reason: shown in this answer only.
    b.goto(&server.url(&detail)).await;
    b.fill("#reason", "ticket CS-2001: courier cannot find the door")
        .await;
    b.click("#reveal-form button").await;
    let main = b.text("main").await;
    assert!(
        main.contains(BUYER_NAME) && main.contains(BUYER_EMAIL),
        "{main}"
    );
    assert!(main.contains("1 Raffles Place, SG"), "{main}");
    // Masked again on the next visit.
    b.goto(&server.url(&detail)).await;
    assert!(!b.source().await.contains(BUYER_NAME));

    // The audit row: who, which order, the reason; no buyer data.
    b.goto(&server.url("/audit?action=order.reveal_buyer"))
        .await;
    let rows = b.text("#audit tbody").await;
    assert!(
        rows.contains("order.reveal_buyer")
            && rows.contains("order:tiktok/576000000000000011")
            && rows.contains("ticket CS-2001"),
        "{rows}"
    );
    assert!(
        !rows.contains(BUYER_NAME) && !rows.contains(BUYER_EMAIL),
        "{rows}"
    );
    assert_eq!(b.count("#audit tbody tr").await, 1);
    sb.run(&["audit", "verify"]).expect_code(0);
}
