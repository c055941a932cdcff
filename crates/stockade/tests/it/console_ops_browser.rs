//! The Connections and Security pages in headless Chromium against a real `stockade
//! serve`: an administrator signs in with TOTP, pauses and resumes a connection, tries to
//! revoke it with a wrong name typed (refused inline, nothing changes) and then with the
//! right one, adds a ban and lifts it; screenshots of both pages in English and Chinese
//! at laptop and phone widths go to `target/screenshots/`.

use crate::console::{browser_sign_in, shoot};
use crate::console_ops::add_tiktok;
use crate::harness::require_tool;
use crate::server::{Server, add_user, init};
use crate::webdriver::Browser;

/// A name long enough to test wrapping at 360 px.
const LONG: &str = "singapore-flagship-store-with-a-rather-long-connection-name-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_manages_connections_and_bans() {
    if !require_tool("oathtool", "oathtool", "the console ops browser test") {
        return;
    }
    let Some((chromium, chromedriver)) =
        crate::webdriver::browser_binaries("the console ops browser test")
    else {
        return;
    };
    let sb = init("dev", "");
    add_tiktok(&sb, "shop-sg", "7495000000101");
    add_tiktok(&sb, LONG, "7495000000102");
    // A listing on the long-named connection: its pushes fail (nothing listens there).
    let csv = sb.dir.join("catalog.csv");
    std::fs::write(
        &csv,
        format!("sku,on_hand,{LONG}:listing\nMUG-RED-350ML,12,1729:3301\n"),
    )
    .unwrap();
    sb.run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0);
    add_user(&sb, "admin@shop.example", "admin");
    add_user(&sb, "op@shop.example", "operator");
    sb.run(&[
        "apikey",
        "create",
        "--name",
        "n8n-workflows",
        "--role",
        "operator",
    ])
    .expect_code(0);
    let server = Server::start(&sb);
    let b = Browser::start(&chromium, &chromedriver, sb.dir.join("chromium-profile")).await;
    b.set_size(1366, 768).await;
    browser_sign_in(&b, &server, "admin@shop.example").await;

    // The failing channel shows as failing, with the marketplace's error.
    let row = format!("#conn-{LONG}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
    loop {
        b.goto(&server.url("/connections")).await;
        if b.text(&row).await.contains("Failing") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            b.text(&row).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // Pause, then resume.
    assert_eq!(b.text("#conn-shop-sg .status").await, "Active");
    b.click("#conn-shop-sg button.toggle").await;
    assert!(
        b.text(".notice").await.contains("Paused"),
        "{}",
        b.source().await
    );
    assert_eq!(b.text("#conn-shop-sg .status").await, "Paused");
    shoot(&b, &server, "/connections", "connections-en").await;
    b.click("#conn-shop-sg button.toggle").await;
    assert!(b.text(".notice").await.contains("Resumed"));
    assert_eq!(b.text("#conn-shop-sg .status").await, "Active");

    // Revoke with a wrong name typed: refused inline, still active.
    b.fill("#conn-shop-sg input[name=confirm]", "shop-s").await;
    b.click("#conn-shop-sg form.revoke button").await;
    let refusal = b.text("#conn-shop-sg .error").await;
    assert!(refusal.contains("not this connection"), "{refusal}");
    assert_eq!(b.text("#conn-shop-sg .status").await, "Active");
    // The right name: revoked and purged.
    b.fill("#conn-shop-sg input[name=confirm]", "shop-sg").await;
    b.click("#conn-shop-sg form.revoke button").await;
    assert!(b.text(".notice").await.contains("Revoked and purged"));
    assert_eq!(b.text("#conn-shop-sg .status").await, "Revoked");
    assert_eq!(b.count("#conn-shop-sg form").await, 0);

    // Add a ban, then lift it.
    b.goto(&server.url("/security")).await;
    b.fill("#ban-ip", "203.0.113.9").await;
    b.click("#ban-add button").await;
    assert!(b.text(".notice").await.contains("Address banned"));
    assert!(b.text("#ban-list").await.contains("203.0.113.9"));
    shoot(&b, &server, "/security", "security-en").await;
    b.click("#ban-list form button").await;
    assert!(b.text(".notice").await.contains("Ban lifted"));
    assert_eq!(b.count("#ban-list").await, 0);
    // A bad address is refused inline.
    b.fill("#ban-ip", "203.0.113.999").await;
    b.click("#ban-add button").await;
    assert!(b.text("#ban-error").await.contains("not an address"));

    // Both pages in Chinese, at both widths (with a ban in force for the picture).
    b.fill("#ban-ip", "198.51.100.77").await;
    b.click("#ban-add button").await;
    b.click("#lang-switch").await;
    let main = b.text("main").await;
    assert!(main.contains("安全") && main.contains("当前封禁"), "{main}");
    shoot(&b, &server, "/security", "security-zh").await;
    // The lower sections too (the ban form and the sessions).
    shoot(&b, &server, "/security#bans", "security-bans-zh").await;
    shoot(&b, &server, "/security#sessions", "security-sessions-zh").await;
    shoot(&b, &server, "/connections", "connections-zh").await;
    b.goto(&server.url("/connections")).await;
    assert!(b.text("main").await.contains("已撤销"));
}
