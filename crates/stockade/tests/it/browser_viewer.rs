//! A viewer in headless Chromium: signs in with TOTP, sees no operator action on the
//! overview and the inventory, is refused (403) when posting a stock adjustment
//! directly, switches to 中文 and finds the choice kept after signing out and in again
//! (stored with the user, not only in the browser's cookie). Then an administrator opens
//! the Compliance page. Screenshots of the sign-in and Compliance pages in both languages
//! at 1366 and 360 px go to `target/screenshots/`.

use crate::browser::path_of;
use crate::console::{CONSOLE_CATALOG, shoot};
use crate::harness::require_tool;
use crate::server::{PASSWORD, Server, add_user, init, oathtool};
use crate::webdriver::Browser;

/// Sign in through the pages and enroll TOTP; returns one recovery code.
async fn enroll_in_browser(b: &Browser, server: &Server, email: &str) -> String {
    b.goto(&server.url("/login")).await;
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    assert_eq!(path_of(&b.current_url().await), "/mfa/enroll");
    let key = b.text(".qr + p code").await;
    b.fill("#code", &oathtool(&key, 0)).await;
    b.click("button[type=submit]").await;
    assert_eq!(b.count("ol.codes li").await, 10, "{}", b.source().await);
    b.text("ol.codes li").await
}

async fn sign_out(b: &Browser) {
    b.click("form[action='/logout'] button").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_viewer_cannot_reach_operator_actions_and_keeps_chinese() {
    if !require_tool("oathtool", "oathtool", "the viewer browser test") {
        return;
    }
    let Some((chromium, chromedriver)) =
        crate::webdriver::browser_binaries("the viewer browser test")
    else {
        return;
    };
    let sb = init("dev", "");
    let csv = sb.dir.join("catalog.csv");
    std::fs::write(&csv, CONSOLE_CATALOG).unwrap();
    sb.run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0);
    add_user(&sb, "viewer@shop.example", "viewer");
    add_user(&sb, "admin@shop.example", "admin");
    let server = Server::start(&sb);
    let b = Browser::start(&chromium, &chromedriver, sb.dir.join("chromium-profile")).await;
    b.set_size(1366, 768).await;

    // The sign-in page in both languages (the switch sets the cookie before sign-in).
    shoot(&b, &server, "/login", "login-en").await;
    b.goto(&server.url("/login")).await;
    assert!(b.text("main").await.contains("Email"));
    b.click("#lang-switch").await;
    assert_eq!(path_of(&b.current_url().await), "/login");
    let main = b.text("main").await;
    assert!(main.contains("电子邮箱") && main.contains("密码"), "{main}");
    shoot(&b, &server, "/login", "login-zh").await;
    b.goto(&server.url("/lang?set=en&back=/login")).await;

    // The viewer signs in with TOTP and sees no operator action.
    let recovery = enroll_in_browser(&b, &server, "viewer@shop.example").await;
    b.goto(&server.url("/overview")).await;
    assert!(b.text("main").await.contains("Oversold units"));
    assert_eq!(b.count("a[href='/compliance']").await, 0);
    b.goto(&server.url("/inventory")).await;
    assert!(b.text("main").await.contains("MUG-RED-350ML"));
    assert_eq!(b.count("form.adjust").await, 0, "{}", b.source().await);
    assert!(!b.source().await.contains("/inventory/adjust"));

    // A direct POST with the viewer's own session and CSRF token is refused.
    let status = b
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const csrf = document.querySelector('form[action=\"/logout\"] input[name=csrf]').value;
             fetch('/inventory/adjust', {method: 'POST',
                 headers: {'content-type': 'application/x-www-form-urlencoded'},
                 body: 'csrf=' + encodeURIComponent(csrf) + '&sku=MUG-RED-350ML&delta=5&reason=sneaky'})
               .then(r => done(r.status), e => done(String(e)));",
        )
        .await;
    assert_eq!(status, 403, "{status}");
    b.goto(&server.url("/inventory?q=MUG-RED-350ML")).await;
    assert!(b.text("#sku-1 .available").await.contains("12"));

    // Switch to Chinese, sign out, reset the browser's cookie to English, sign in again
    // with a recovery code: the stored choice brings Chinese back.
    b.goto(&server.url("/overview")).await;
    b.click("#lang-switch").await;
    assert!(
        b.text("main").await.contains("超卖"),
        "{}",
        b.source().await
    );
    sign_out(&b).await;
    assert!(b.text("main").await.contains("您已退出登录"));
    b.goto(&server.url("/lang?set=en&back=/login")).await;
    assert!(b.text("main").await.contains("Email"));
    b.fill("#email", "viewer@shop.example").await;
    b.fill("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    assert_eq!(path_of(&b.current_url().await), "/mfa");
    b.fill("#recovery_code", &recovery).await;
    b.click("button[type=submit]").await;
    b.goto(&server.url("/overview")).await;
    let main = b.text("main").await;
    assert!(main.contains("超卖"), "the stored language: {main}");
    sign_out(&b).await;
    // The sign-in cookie followed the stored choice too.
    assert!(b.text("main").await.contains("您已退出登录"));

    // An administrator opens the Compliance page, in both languages.
    b.goto(&server.url("/lang?set=en&back=/login")).await;
    enroll_in_browser(&b, &server, "admin@shop.example").await;
    b.goto(&server.url("/overview")).await;
    b.click("a[href='/compliance']").await;
    let main = b.text("main").await;
    assert!(
        main.contains("Multi-factor authentication is mandatory")
            && main.contains("Cannot check here"),
        "{main}"
    );
    shoot(&b, &server, "/compliance", "compliance-en").await;
    b.click("#lang-switch").await;
    let main = b.text("main").await;
    assert!(main.contains("强制多因素认证"), "{main}");
    shoot(&b, &server, "/compliance", "compliance-zh").await;
}
