//! Headless Chromium adjusts a SKU's stock in the console of the running application
//! (`TestApp`: server, sync engine, the three marketplace simulators) and the new
//! quantity reaches every simulated channel; the inventory then shows each channel's
//! pushed quantity confirmed and the overview each channel's push lag and rate-limit
//! state. Screenshots of the overview and the inventory (with filters), in English and
//! Chinese, at laptop and phone widths ("adjust stock and see the new
//! quantity reach the sandbox channels").

use std::time::{Duration, Instant};

use stockade_access::{Access, AccessConfig, Role};
use stockade_core::{Actor, SecretString};
use stockade_sandbox::{Marketplace, SandboxConfig};
use stockade_store::sql_params;
use stockade_sync::SyncOptions;
use stockade_testkit::{Db, TestApp};

use crate::browser::{path_of, screenshot_dir};
use crate::harness::require_tool;
use crate::server::{PASSWORD, oathtool};
use crate::webdriver::Browser;

const MARKETS: [(Marketplace, &str); 3] = [
    (Marketplace::TikTok, "tiktok"),
    (Marketplace::Amazon, "amazon"),
    (Marketplace::Ebay, "ebay"),
];

async fn sign_in(b: &Browser, base: &str, email: &str) {
    b.goto(&format!("{base}/login")).await;
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    assert_eq!(path_of(&b.current_url().await), "/mfa/enroll");
    let key = b.text(".qr + p code").await;
    b.fill("#code", &oathtool(&key, 0)).await;
    b.click("button[type=submit]").await;
    assert_eq!(b.count("ol.codes li").await, 10, "{}", b.source().await);
}

async fn shoot(b: &Browser, url: &str, name: &str) {
    let shots = screenshot_dir();
    for (w, h) in [(1366, 768), (360, 740)] {
        b.set_size(w, h).await;
        b.goto(url).await;
        b.screenshot(&shots.join(format!("console-{name}-{w}.png")))
            .await;
    }
    b.set_size(1366, 768).await;
}

/// The channel's target for `sku` on the connection of marketplace `m`.
async fn target(app: &TestApp, m: &str, sku: &str) -> i64 {
    app.store()
        .count(
            "SELECT l.target_qty FROM listings l JOIN connections c ON c.id = l.connection_id
             WHERE c.marketplace = $1 AND l.sku = $2",
            sql_params![m, sku],
        )
        .await
        .unwrap()
}

fn shown(app: &TestApp, m: Marketplace, sku: &str) -> Option<u32> {
    app.sb
        .listings(m)
        .into_iter()
        .find(|l| l.sku == sku)
        .map(|l| l.quantity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_adjusts_stock_and_the_sandbox_channels_show_it() {
    if !require_tool("oathtool", "oathtool", "the stock browser test") {
        return;
    }
    let Some((chromium, chromedriver)) =
        crate::webdriver::browser_binaries("the stock browser test")
    else {
        return;
    };
    let config = SandboxConfig {
        seed: 29,
        skus: 4,
        initial_quantity: 50,
        rate_limits: false,
        feed_step: Duration::from_millis(20),
        ..SandboxConfig::default()
    };
    let sync = SyncOptions {
        poll_interval: None,
        reconcile_interval: None,
        lift_rate_limits: true,
        ..SyncOptions::default()
    };
    let app = TestApp::start(Db::sqlite(), config, sync).await;
    app.settle().await;
    let access = Access::new(app.vault.clone(), AccessConfig::default())
        .await
        .unwrap();
    access
        .add_user(
            "op@shop.example",
            Role::Operator,
            &SecretString::from(PASSWORD.to_owned()),
            &Actor::System("test"),
        )
        .await
        .unwrap();
    let base = format!("https://{}", app.addr);
    // A SKU every simulated channel lists.
    let sku = app.sb.listings(Marketplace::TikTok)[0].sku.clone();
    let mut before = Vec::new();
    for (m, name) in MARKETS {
        before.push((target(&app, name, &sku).await, shown(&app, m, &sku)));
    }

    let dir = tempfile_dir();
    let b = Browser::start(&chromium, &chromedriver, dir.join("chromium-profile")).await;
    b.set_size(1366, 768).await;
    sign_in(&b, &base, "op@shop.example").await;
    b.goto(&format!("{base}/inventory?q={sku}")).await;
    let available: i64 = b.text("#sku-1 .available").await.parse().unwrap();
    b.fill("#d-1", "+7").await;
    b.fill("#r-1", "cycle count").await;
    b.click("#sku-1 form.adjust button").await;
    assert!(
        b.text(".notice").await.contains("Stock adjusted"),
        "{}",
        b.source().await
    );
    assert_eq!(
        b.text("#sku-1 .available").await,
        (available + 7).to_string()
    );

    // The new quantity reaches every simulated channel.
    app.settle().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, (m, name)) in MARKETS.into_iter().enumerate() {
        let t = target(&app, name, &sku).await;
        assert_ne!(t, before[i].0, "{name}: the target did not move");
        loop {
            if shown(&app, m, &sku) == u32::try_from(t).ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} shows {:?}, not {t}",
                shown(&app, m, &sku)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_ne!(shown(&app, m, &sku), before[i].1, "{name}");
    }
    // The inventory shows each channel's pushed quantity, confirmed (✓).
    b.goto(&format!("{base}/inventory?q={sku}")).await;
    let cells = b.text("#sku-1").await;
    for (_, name) in MARKETS {
        let t = target(&app, name, &sku).await;
        assert!(
            cells.contains(&format!("{name} {t} / {t} ✓")),
            "{name} {t}: {cells}"
        );
    }
    // The overview: each channel's push lag (of the pushes orders cause) and
    // rate-limit state.
    for (m, _) in MARKETS {
        assert!(!app.sb.generate_orders(m, 2).is_empty());
    }
    app.settle().await;
    b.goto(&format!("{base}/overview")).await;
    let table = b.text("#channels").await;
    assert!(
        table.contains("Push lag p50 / p99") && table.contains("Rate limit"),
        "{table}"
    );
    assert!(
        table.contains(" ms /") || table.contains(" s /"),
        "no lag figure: {table}"
    );

    // Listing discovery, dry, from the form: what the marketplace has, all known already.
    b.goto(&format!("{base}/inventory")).await;
    b.click("form.discover button").await;
    let summary = b.text("#summary").await;
    assert!(
        summary.contains("Dry run") && summary.contains("found: 4"),
        "{summary}"
    );
    b.screenshot(&screenshot_dir().join("console-stock-discover-en-1366.png"))
        .await;
    // …and over the API with an operator key.
    let (_, key) = access
        .create_api_key("discover", Role::Operator, None, &Actor::System("test"))
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(app.sb.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let res = http
        .post(format!("{base}/api/v1/stock/discover"))
        .bearer_auth(key.expose_secret())
        .json(&serde_json::json!({"connection": "ebay", "dry_run": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["report"]["found"], 4, "{v}");
    assert_eq!(v["report"]["unchanged"], 4, "{v}");

    shoot(&b, &format!("{base}/overview"), "stock-overview-en").await;
    shoot(&b, &format!("{base}/inventory"), "stock-inventory-en").await;
    shoot(
        &b,
        &format!("{base}/inventory?filter=low"),
        "stock-inventory-low-en",
    )
    .await;
    b.goto(&format!("{base}/lang?set=zh&back=/inventory")).await;
    assert!(b.text("main").await.contains("库存"));
    shoot(
        &b,
        &format!("{base}/inventory?filter=drifting"),
        "stock-inventory-drifting-zh",
    )
    .await;
    shoot(
        &b,
        &format!("{base}/inventory?q={sku}"),
        "stock-inventory-zh",
    )
    .await;
    shoot(&b, &format!("{base}/overview"), "stock-overview-zh").await;
    drop(b);
    drop(access);
    app.finish().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stockade-stock-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
