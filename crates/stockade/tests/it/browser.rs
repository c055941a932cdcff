//! The pages in a real browser: headless Chromium (Debian `chromium` and
//! `chromium-driver`) against a real `stockade serve` over TLS. Sign-in, TOTP enrollment
//! (a wrong code keeps the same QR code and key), recovery codes, the home page, a
//! cross-site form post refused, the idle lock and unlock, sign-out, and signing in again
//! with a recovery code. A screenshot of each
//! page goes to `target/screenshots/`. Skipped, saying so, only when Chromium is not
//! installed.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use crate::harness::require_tool;
use crate::server::{PASSWORD, Server, add_user, init, oathtool};
use crate::webdriver::Browser;

/// The workspace's `target/screenshots/` (the test binary runs from `target/<profile>/deps`).
pub fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Another site: a plain HTTP server on `localhost` (another origin and another site than
/// `https://127.0.0.1`) that serves `html` for every request.
fn other_site(html: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    port
}

/// A code that is none of the codes `oathtool` gives around now.
fn wrong_code(secret: &str) -> String {
    let near: Vec<String> = [-30, 0, 30, 60]
        .iter()
        .map(|o| oathtool(secret, *o))
        .collect();
    (0..)
        .map(|i: u32| format!("{:06}", (123_456 + i * 7_919) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

pub fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/')
        .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned())
}

/// Regression: every page sent `Referrer-Policy: no-referrer`, so Chromium
/// posted the sign-in form with `Origin: null` and got a JSON `cross_origin` error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_enrolls_locks_unlocks_and_a_cross_site_post_is_refused() {
    if !require_tool("oathtool", "oathtool", "the browser test") {
        return;
    }
    let Some((chromium, chromedriver)) = crate::webdriver::browser_binaries("the browser test")
    else {
        return;
    };
    let shots = screenshot_dir();

    // Long enough for enrollment to reach the home page on a busy CI machine.
    let idle_s = 10;
    let sb = init("dev", &format!("[access]\nidle_timeout = \"{idle_s}s\"\n"));
    let email = "viewer@shop.example";
    add_user(&sb, email, "viewer");
    let server = Server::start(&sb);
    let b = Browser::start(&chromium, &chromedriver, sb.dir.join("chromium-profile")).await;

    // Sign in with the password.
    b.goto(&server.url("/login")).await;
    b.screenshot(&shots.join("01-sign-in.png")).await;
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    assert_eq!(
        path_of(&b.current_url().await),
        "/mfa/enroll",
        "{}",
        b.source().await
    );
    b.screenshot(&shots.join("02-enroll.png")).await;
    let key = b.text(".qr + p code").await;
    let qr = b.inner_html(".qr").await;
    assert!(qr.contains("<svg"), "{qr}");

    // A wrong code, then a reload: the same QR code and key each time.
    b.fill("#code", &wrong_code(&key)).await;
    b.click("button[type=submit]").await;
    assert_eq!(path_of(&b.current_url().await), "/mfa/enroll");
    let page = b.source().await;
    assert!(
        page.contains("6-digit code your authenticator app shows"),
        "{page}"
    );
    assert_eq!(b.text(".qr + p code").await, key, "the key changed");
    assert_eq!(b.inner_html(".qr").await, qr, "the QR code changed");
    b.screenshot(&shots.join("03-enroll-wrong-code.png")).await;
    b.goto(&server.url("/mfa/enroll")).await;
    assert_eq!(
        b.text(".qr + p code").await,
        key,
        "a reload changed the key"
    );

    // The right code: recovery codes, then home.
    let enroll_code = oathtool(&key, 0);
    b.fill("#code", &enroll_code).await;
    b.click("button[type=submit]").await;
    assert_eq!(b.count("ol.codes li").await, 10, "{}", b.source().await);
    let recovery = b.text("ol.codes li").await;
    b.screenshot(&shots.join("04-recovery-codes.png")).await;
    b.click("a[href='/']").await;
    assert_eq!(path_of(&b.current_url().await), "/");
    assert!(b.text("main").await.contains(email));
    b.screenshot(&shots.join("05-home.png")).await;

    // Another site posts forms at the server: refused with a page, and the session stays.
    let target = server.base.clone();
    let port = other_site(format!(
        "<!doctype html><title>Another site</title><h1>Another site</h1>\
         <form id=\"out\" method=\"post\" action=\"{target}/logout\"><input type=\"hidden\" name=\"csrf\" value=\"forged\"><button id=\"logout\">Win a prize</button></form>\
         <form id=\"in\" method=\"post\" action=\"{target}/login\"><input type=\"hidden\" name=\"csrf\" value=\"forged\">\
         <input type=\"hidden\" name=\"email\" value=\"{email}\"><input type=\"hidden\" name=\"password\" value=\"guess\"><button id=\"login\">Claim</button></form>"
    ));
    let other = format!("http://localhost:{port}/");
    for (button, path) in [("#logout", "/logout"), ("#login", "/login")] {
        b.goto(&other).await;
        if button == "#logout" {
            b.screenshot(&shots.join("06-other-site.png")).await;
        }
        b.click(button).await;
        let url = b.current_url().await;
        assert_eq!(path_of(&url), path, "{url}");
        let page = b.source().await;
        assert!(
            page.contains("Request refused") && page.contains("another site"),
            "{page}"
        );
        assert!(
            !page.contains("\"cross_origin\""),
            "a page, not JSON: {page}"
        );
        if button == "#logout" {
            b.screenshot(&shots.join("07-cross-site-refused.png")).await;
        }
        b.goto(&server.url("/")).await;
        let at = path_of(&b.current_url().await);
        assert!(
            at == "/" || at == "/lock",
            "the session survived the forged {path} (now at {at})"
        );
    }
    assert!(
        server
            .log_text()
            .contains("cross-site POST /logout refused")
    );

    // Idle past the timeout: locked; the password and a new code unlock it.
    tokio::time::sleep(Duration::from_secs(idle_s + 1)).await;
    b.goto(&server.url("/")).await;
    assert_eq!(path_of(&b.current_url().await), "/lock");
    b.screenshot(&shots.join("08-locked.png")).await;
    b.fill("#password", PASSWORD).await;
    b.fill("#code", &oathtool(&key, 30)).await;
    b.click("button[type=submit]").await;
    assert_eq!(path_of(&b.current_url().await), "/", "{}", b.source().await);
    assert!(b.text("main").await.contains(email));
    b.screenshot(&shots.join("09-unlocked.png")).await;

    // Sign out: the session ends on the server.
    b.click("form[action='/logout'] button").await;
    assert!(b.text("main").await.contains("You are signed out"));
    b.screenshot(&shots.join("10-signed-out.png")).await;
    b.goto(&server.url("/")).await;
    assert_eq!(path_of(&b.current_url().await), "/login");

    // Signing in again asks for a code; a recovery code works (the TOTP step just used
    // for the unlock cannot be used again).
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    assert_eq!(path_of(&b.current_url().await), "/mfa");
    b.screenshot(&shots.join("11-code-prompt.png")).await;
    b.fill("#recovery_code", &recovery).await;
    b.click("button[type=submit]").await;
    assert_eq!(path_of(&b.current_url().await), "/");
    assert!(b.text("main").await.contains(email));
}
