//! `sku discover` end to end, as a new seller runs it: the simulators running, three
//! connections added, orders placed on every marketplace BEFORE any catalog exists (the
//! server stores them, unmatched), then `sku discover` for each connection builds the
//! catalog from the marketplaces' own listings: the early orders are reserved, every
//! channel is pushed its right quantity, and `stock verify` passes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Sandbox;
use crate::sync::{
    Admin, SandboxInfo, add_connections, db_query, free_port, place, read_until, sku_list, spawn,
    start_serve,
};

const MARKETS: [&str; 3] = ["tiktok", "amazon", "ebay"];
const SKUS: usize = 12;
const QUANTITY: i64 = 40;
const ORDERS: usize = 6;

async fn listings(admin: &Admin, info: &SandboxInfo, name: &str) -> BTreeMap<String, i64> {
    admin
        .get(format!("{}/_sandbox/listings", info.m(name).base))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|l: &Value| {
            (
                l["sku"].as_str().unwrap().to_owned(),
                l["quantity"].as_i64().unwrap(),
            )
        })
        .collect()
}

const COUNT_ORDERS: &str = "SELECT COUNT(*) FROM orders";
const COUNT_UNMATCHED: &str =
    "SELECT COUNT(*) FROM order_lines WHERE unmatched_since_ms IS NOT NULL";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_builds_the_catalog_after_early_orders_and_every_channel_is_pushed() {
    let sb = Sandbox::new();
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    let port = free_port();
    // A first start creates the server's development CA (the admin client trusts it).
    drop(start_serve(&sb, port, 0).unwrap_or_else(|log| panic!("serve: {log}")));
    let server_ca = sb.data().join("tls/dev-ca.pem");

    let sandbox_ca = sb.dir.join("sandbox-ca.pem");
    let skus = SKUS.to_string();
    let quantity = QUANTITY.to_string();
    let args = [
        "sandbox",
        "--seed",
        "13",
        "--skus",
        &skus,
        "--quantity",
        &quantity,
        "--ca-file",
        sandbox_ca.to_str().unwrap(),
    ];
    let (sandbox, rx) = spawn(&sb, &args, &sb.dir.join("sandbox.log"));
    let lines = read_until(&rx, Duration::from_secs(30), |l| {
        l.contains("Ctrl-C stops the sandbox")
    })
    .unwrap_or_else(|| panic!("the sandbox did not start:\n{}", sandbox.log_tail()));
    let info = SandboxInfo::parse(&lines);
    let admin = Admin::new(&sandbox_ca, &server_ca);

    let hosts: Vec<String> = MARKETS
        .iter()
        .map(|m| format!("\"{}\"", info.m(m).base.trim_start_matches("https://")))
        .collect();
    let config = sb.data().join("stockade.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[egress]\nallowed_hosts = [{}]\nextra_root_certs = [{:?}]\n\n[sync]\npoll_interval = \"2s\"\npoll_overlap = \"1s\"\n",
        hosts.join(", "),
        sandbox_ca.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    add_connections(&sb, &info, &format!("https://127.0.0.1:{port}/hooks"));

    // Orders before any catalog: the server polls them in and stores them unmatched.
    let mut placed = 0;
    for name in MARKETS {
        placed += place(&admin, &info.m(name).base, ORDERS).await.len();
    }
    assert_eq!(placed, 3 * ORDERS);
    let server = start_serve(&sb, port, 1).unwrap_or_else(|log| panic!("serve: {log}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = db_query(&sb, COUNT_ORDERS).await[0].int(0).unwrap();
        if n == placed as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {placed} orders stored:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let unmatched = db_query(&sb, COUNT_UNMATCHED).await[0].int(0).unwrap();
    assert!(unmatched > 0);
    let out = sb.run(&["stock", "verify"]).expect_code(3);
    assert!(out.stdout().contains("unmatched sku"), "{}", out.stdout());

    // A dry run shows the plan and writes nothing.
    let dry = sb
        .run(&["sku", "discover", "--connection", "tiktok", "--dry-run"])
        .expect_code(0)
        .stdout();
    assert!(
        dry.contains(&format!(
            "tiktok: {SKUS} listing(s) found on tiktok: {SKUS} new SKU(s), 0 new listing(s)"
        )) && dry.contains("would be matched")
            && dry.contains("dry run: nothing was written"),
        "{dry}"
    );
    assert!(sku_list(&sb).is_empty());
    assert_eq!(
        db_query(&sb, COUNT_UNMATCHED).await[0].int(0).unwrap(),
        unmatched
    );

    // TikTok's listings make the catalog (its quantities as on hand); Amazon's and eBay's
    // listings join the same SKUs, whose on hand they leave alone.
    let tiktok_before = listings(&admin, &info, "tiktok").await;
    let out = sb
        .run(&[
            "sku",
            "discover",
            "--connection",
            "tiktok",
            "--take-quantity",
        ])
        .expect_code(0)
        .stdout();
    assert!(
        out.contains(&format!(
            "tiktok: {SKUS} listing(s) found on tiktok: {SKUS} new SKU(s), 0 new listing(s), 0 changed, 0 unchanged, 0 gone"
        )) && out.contains("are now matched"),
        "{out}"
    );
    for name in ["amazon", "ebay"] {
        let out = sb
            .run(&["sku", "discover", "--connection", name])
            .expect_code(0)
            .stdout();
        assert!(
            out.contains(&format!(
                "{name}: {SKUS} listing(s) found on {name}: 0 new SKU(s), {SKUS} new listing(s), 0 changed, 0 unchanged, 0 gone"
            )),
            "{out}"
        );
    }
    assert_eq!(db_query(&sb, COUNT_UNMATCHED).await[0].int(0).unwrap(), 0);
    let stock = sku_list(&sb);
    assert_eq!(stock.len(), SKUS);
    for (sku, (on_hand, _, _)) in &stock {
        assert_eq!(*on_hand, tiktok_before[sku], "{sku}");
    }
    sb.run(&["stock", "verify"]).expect_code(0);

    // Every channel shows on hand − reserved (no buffer), pushed by the running server.
    let deadline = Instant::now() + Duration::from_secs(60);
    'wait: loop {
        let stock = sku_list(&sb);
        let mut wrong = Vec::new();
        for name in MARKETS {
            let shown = listings(&admin, &info, name).await;
            for (sku, (_, _, available)) in &stock {
                if shown.get(sku) != Some(available) {
                    wrong.push(format!("{name} {sku}: {:?} ≠ {available}", shown.get(sku)));
                }
            }
        }
        if wrong.is_empty() {
            break 'wait;
        }
        assert!(
            Instant::now() < deadline,
            "{wrong:?}\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let reserved: i64 = sku_list(&sb).values().map(|s| s.1).sum();
    assert!(reserved > 0);

    // Again: nothing new. A catalog listing the marketplace does not have is reported
    // gone and kept.
    let csv = sb.dir.join("old.csv");
    std::fs::write(&csv, "sku,on_hand,tiktok:listing\nOLD-1,3,1729:3301\n").unwrap();
    sb.run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0);
    let out = sb
        .run(&["sku", "discover", "--connection", "tiktok"])
        .expect_code(0)
        .stdout();
    assert!(
        out.contains(&format!(
            "tiktok: {SKUS} listing(s) found on tiktok: 0 new SKU(s), 0 new listing(s), 0 changed, {SKUS} unchanged, 1 gone"
        )) && out.contains("gone") && out.contains("OLD-1"),
        "{out}"
    );
    assert!(sku_list(&sb).contains_key("OLD-1"));
    sb.run(&["stock", "verify"]).expect_code(0);
    sb.run(&["audit", "verify"]).expect_code(0);
    drop(server);
    drop(sandbox);
}

/// An unknown connection is a usage error; an unreachable marketplace fails the command
/// and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_refusals_write_nothing() {
    let sb = crate::server::init("dev", "");
    let out = sb
        .run(&["sku", "discover", "--connection", "nope"])
        .expect_code(2);
    assert!(
        out.stderr().contains("no connection named"),
        "{}",
        out.stderr()
    );
    let creds = crate::sync::credentials_file(
        &sb,
        "tiktok",
        serde_json::json!({"app_key": "6a1b2c3d4e5f", "app_secret": "s", "refresh_token": "r"}),
    );
    sb.run(&[
        "connection",
        "add",
        "--marketplace",
        "tiktok",
        "--name",
        "tiktok",
        "--account",
        "7495123456789",
        "--api-url",
        "https://127.0.0.1:9",
        "--auth-url",
        "https://127.0.0.1:9",
        "--shop-cipher",
        "ROW_cipher",
        "--credentials-file",
        creds.to_str().unwrap(),
    ])
    .expect_code(0);
    let out = sb
        .run(&["sku", "discover", "--connection", "tiktok"])
        .expect_code(1);
    assert!(out.stderr().contains("tiktok"), "{}", out.stderr());
    assert!(sku_list(&sb).is_empty());
    let audited = db_query(
        &sb,
        "SELECT COUNT(*) FROM audit WHERE action = 'catalog.discover'",
    )
    .await[0]
        .int(0)
        .unwrap();
    assert_eq!(audited, 0);
}
