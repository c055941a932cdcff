//! The console pages over HTTPS against a real `stockade serve`: each page in English and
//! Simplified Chinese with no untranslated catalogue text, the route table's permissions
//! (a viewer cannot adjust stock, an operator cannot read the audit log), the stock
//! adjustment's ledger and audit rows, the audit CSV export, the vendored htmx file and
//! the CSP that lets only it run.

use reqwest::StatusCode;

use crate::browser::{path_of, screenshot_dir};
use crate::harness::{Sandbox, drop_schema, pg_schema_url, require_tool};
use crate::server::{Auth, PASSWORD, Server, add_user, enroll, init, oathtool};
use crate::webdriver::Browser;

pub const CONSOLE_CATALOG: &str = "sku,on_hand\nMUG-RED-350ML,12\nTEE-BLK-XL,2\nLONG-SKU-WITH-A-VERY-LONG-NAME-THAT-MUST-WRAP-0001,400\n";

const BROWSER_CATALOG: &str = "sku,on_hand,tiktok:listing,tiktok:buffer\nMUG-RED-350ML,12,1729:3301,2\nTEE-BLK-XL,2,1729:3302,0\nLONG-SKU-WITH-A-VERY-LONG-NAME-THAT-MUST-WRAP-0001,400,,\n";

const EN: &str = include_str!("../../../stockade-server/static/i18n/en.tsv");
const ZH: &str = include_str!("../../../stockade-server/static/i18n/zh.tsv");

fn catalogue(text: &'static str) -> Vec<(&'static str, &'static str)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .collect()
}

/// The page's text without tags (what a reader sees, roughly).
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(ch),
            _ => {}
        }
    }
    out
}

/// English catalogue texts a Chinese page may still show: codes and proper names.
const SAME_IN_BOTH: &[&str] = &["Stockade", "SKU", "CSV"];

/// Whether `text` holds `word` not as a part of a longer name: "Pass" in
/// "PasswordAuthentication" or "Fail" in "Fail2Ban" (configuration keywords and proper
/// names a Chinese page shows as they are) is not the English word.
fn contains_word(text: &str, word: &str) -> bool {
    let edge = |c: Option<char>| !c.is_some_and(|c| c.is_ascii_alphanumeric());
    text.match_indices(word).any(|(i, _)| {
        edge(text[..i].chars().next_back()) && edge(text[i + word.len()..].chars().next())
    })
}

pub fn assert_translated(path: &str, zh_page: &str, en_page: &str) {
    let zh_text = visible_text(zh_page);
    let en_text = visible_text(en_page);
    let en = catalogue(EN);
    let zh = catalogue(ZH);
    for ((k, e), (_, z)) in en.iter().zip(zh.iter()) {
        if e.len() > 3 && !SAME_IN_BOTH.contains(e) && !z.contains(e) {
            assert!(
                !contains_word(&zh_text, e),
                "{path} in Chinese shows the English text of {k}: {e:?}\n{zh_text}"
            );
        }
        if z.chars().count() > 1 && !e.contains(z) {
            assert!(
                !en_text.contains(z),
                "{path} in English shows the Chinese text of {k}: {z:?}"
            );
        }
    }
    assert!(zh_page.contains("lang=\"zh-CN\""), "{path}");
    assert!(en_page.contains("lang=\"en\""), "{path}");
}

pub async fn get(server: &Server, auth: &Auth, path: &str, lang: &str) -> (StatusCode, String) {
    let res = auth
        .apply(server.client.get(server.url(path)))
        .header("accept-language", lang)
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

pub async fn post_form(server: &Server, auth: &Auth, path: &str, body: &str) -> StatusCode {
    let csrf = match auth {
        Auth::Cookie { csrf, .. } => csrf.clone(),
        _ => String::new(),
    };
    let res = auth
        .apply(server.client.post(server.url(path)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&{body}"))
        .send()
        .await
        .unwrap();
    res.status()
}

pub(crate) fn on_hand(sb: &Sandbox, sku: &str) -> String {
    let list = sb.run(&["sku", "list"]).expect_code(0).stdout();
    list.lines()
        .find(|l| l.split_whitespace().next() == Some(sku))
        .unwrap_or_else(|| panic!("{sku} not in\n{list}"))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_languages_permissions_and_stock_adjustment() {
    if !require_tool("oathtool", "oathtool", "the console test") {
        return;
    }
    console_pages(init("dev", CONSOLE_CONFIG)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_on_postgres() {
    if !require_tool("oathtool", "oathtool", "the console test") {
        return;
    }
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let sb = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    let path = sb.data().join("stockade.toml");
    let text = std::fs::read_to_string(&path).unwrap() + "\n" + CONSOLE_CONFIG;
    std::fs::write(&path, text).unwrap();
    console_pages(sb).await;
    drop_schema(&schema).await;
}

pub(crate) const CONSOLE_CONFIG: &str = "[console]\ntimezone = \"Asia/Singapore\"\n";

async fn console_pages(sb: Sandbox) {
    let csv = sb.dir.join("catalog.csv");
    std::fs::write(&csv, CONSOLE_CATALOG).unwrap();
    sb.run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0);
    for (email, role) in [
        ("op@shop.example", "operator"),
        ("view@shop.example", "viewer"),
        ("admin@shop.example", "admin"),
    ] {
        add_user(&sb, email, role);
    }
    let server = Server::start(&sb);
    let (_, op, _, _) = enroll(&server, "op@shop.example").await;
    let (_, viewer, _, _) = enroll(&server, "view@shop.example").await;
    let (_, admin, _, _) = enroll(&server, "admin@shop.example").await;

    // Every page in both languages, nothing left untranslated; times in the zone.
    for path in ["/overview", "/overview/live", "/inventory", "/audit"] {
        let (s, zh) = get(&server, &admin, path, "zh-CN,zh;q=0.9").await;
        assert_eq!(s, StatusCode::OK, "{path}: {zh}");
        let (s, en) = get(&server, &admin, path, "en-GB").await;
        assert_eq!(s, StatusCode::OK, "{path}: {en}");
        if path == "/overview/live" {
            assert!(!en.contains("<html"), "a fragment, not a page");
            continue;
        }
        assert_translated(path, &zh, &en);
        assert!(
            en.contains("Development — sandbox marketplaces only"),
            "{path}"
        );
        assert!(zh.contains("开发环境"), "{path}");
        assert!(en.contains("Asia/Singapore"), "{path}");
        assert!(zh.contains("/static/htmx.min.js") && zh.contains("\"allowEval\":false"));
    }
    let (_, inv) = get(&server, &admin, "/inventory", "en").await;
    for sku in ["MUG-RED-350ML", "TEE-BLK-XL"] {
        assert!(inv.contains(sku), "{inv}");
    }
    // TEE-BLK-XL has 2 available, at or under the default threshold of 5: low.
    let (_, low) = get(&server, &admin, "/inventory?filter=low", "en").await;
    assert!(
        low.contains("TEE-BLK-XL") && !low.contains("MUG-RED-350ML"),
        "{low}"
    );
    let (_, found) = get(&server, &admin, "/inventory?q=mug", "en").await;
    assert!(found.contains("MUG-RED-350ML") && !found.contains("TEE-BLK-XL"));
    let (_, none) = get(&server, &admin, "/inventory?q=nothing-like-this", "zh").await;
    assert!(none.contains("没有匹配的 SKU"), "{none}");

    // The language switch: a cookie, and only back to this server.
    let res = server
        .client
        .get(server.url("/lang?set=zh&back=/inventory"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/inventory");
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("stockade_lang=zh;"), "{cookie}");
    let res = server
        .client
        .get(server.url("/lang?set=zh&back=//evil.example/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/");

    // A viewer sees no adjustment and cannot post one; an operator cannot read the audit log.
    let (s, page) = get(&server, &viewer, "/inventory", "en").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!page.contains("/inventory/adjust"), "{page}");
    assert!(!page.contains("href=\"/audit\""), "{page}");
    let body = "sku=MUG-RED-350ML&delta=5&reason=found+a+box";
    assert_eq!(
        post_form(&server, &viewer, "/inventory/adjust", body).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(on_hand(&sb, "MUG-RED-350ML"), "12");
    let (s, _) = get(&server, &op, "/audit", "en").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The operator adjusts: ledger (on hand moves) and audit row; refusals write nothing.
    let (_, page) = get(&server, &op, "/inventory", "en").await;
    assert!(page.contains("action=\"/inventory/adjust\""), "{page}");
    assert_eq!(
        post_form(&server, &op, "/inventory/adjust", body).await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(on_hand(&sb, "MUG-RED-350ML"), "17");
    for bad in [
        "sku=MUG-RED-350ML&delta=-100&reason=too+many",
        "sku=MUG-RED-350ML&delta=3&reason=",
        "sku=MUG-RED-350ML&delta=abc&reason=x",
        "sku=NO-SUCH&delta=1&reason=x",
    ] {
        assert_eq!(
            post_form(&server, &op, "/inventory/adjust", bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
    assert_eq!(on_hand(&sb, "MUG-RED-350ML"), "17");
    let (_, audit) = get(&server, &admin, "/audit?action=stock.adjust", "en").await;
    assert!(audit.contains("sku:MUG-RED-350ML"), "{audit}");
    assert!(audit.contains("found a box"), "{audit}");
    assert!(audit.contains("The hash chain verifies"), "{audit}");
    assert_eq!(audit.matches(">stock.adjust</td>").count(), 1, "{audit}");
    let (s, csv) = get(&server, &admin, "/audit.csv?action=stock.adjust", "en").await;
    assert_eq!(s, StatusCode::OK);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "seq,time_utc,actor,action,resource,details");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains(",stock.adjust,sku:MUG-RED-350ML,"),
        "{csv}"
    );
    sb.run(&["audit", "verify"]).expect_code(0);

    // htmx is the pinned file, cached long; the CSP lets only this server's scripts run.
    let res = server
        .client
        .get(server.url("/static/htmx.min.js"))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=31536000")
    );
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self';") && !csp.contains("unsafe"),
        "{csp}"
    );
    let js = res.bytes().await.unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &js);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex, "d64d3bac84b515e6fef503a758614bdacfc39757dd868583290fe9ba299860d1",
        "the vendored htmx 2.0.11 changed"
    );
}

/// Sign in through the pages and enroll TOTP (the code from `oathtool`).
pub async fn browser_sign_in(b: &Browser, server: &Server, email: &str) {
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

/// Both widths of one page.
pub async fn shoot(b: &Browser, server: &Server, path: &str, name: &str) {
    let shots = screenshot_dir();
    for (w, h) in [(1366, 768), (360, 740)] {
        b.set_size(w, h).await;
        b.goto(&server.url(path)).await;
        b.screenshot(&shots.join(format!("console-{name}-{w}.png")))
            .await;
    }
    b.set_size(1366, 768).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_uses_the_console_in_english_and_chinese() {
    if !require_tool("oathtool", "oathtool", "the console browser test") {
        return;
    }
    let Some((chromium, chromedriver)) =
        crate::webdriver::browser_binaries("the console browser test")
    else {
        return;
    };
    let sb = init("dev", "");
    // A channel whose pushes fail (nothing listens there): the overview shows it stalled
    // and the inventory shows its targets unconfirmed.
    crate::sync::add_unreachable_tiktok(&sb, "console-secret-1");
    let csv = sb.dir.join("catalog.csv");
    std::fs::write(&csv, BROWSER_CATALOG).unwrap();
    sb.run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0);
    add_user(&sb, "op@shop.example", "operator");
    add_user(&sb, "admin@shop.example", "admin");
    let server = Server::start(&sb);
    let b = Browser::start(&chromium, &chromedriver, sb.dir.join("chromium-profile")).await;
    b.set_size(1366, 768).await;
    shoot(&b, &server, "/login", "sign-in-en").await;

    browser_sign_in(&b, &server, "op@shop.example").await;
    b.goto(&server.url("/overview")).await;
    assert!(b.text("main").await.contains("Oversold units"));
    // htmx (under the strict CSP) replaces the live part every 5 seconds.
    let before = b.text("#live").await;
    tokio::time::sleep(std::time::Duration::from_millis(6500)).await;
    let after = b.text("#live").await;
    assert_ne!(before, after, "the overview did not update");
    shoot(&b, &server, "/overview", "overview-en").await;

    // Adjust stock as the operator: the first row is the long SKU (400 on hand).
    shoot(&b, &server, "/inventory", "inventory-en").await;
    b.fill("#d-1", "+3").await;
    b.fill("#r-1", "cycle count").await;
    b.click("#sku-1 form.adjust button").await;
    assert!(
        b.text(".notice").await.contains("Stock adjusted"),
        "{}",
        b.source().await
    );
    assert_eq!(b.text("#sku-1 .available").await, "403");

    // An operator does not reach the audit log.
    b.goto(&server.url("/audit")).await;
    assert!(b.source().await.contains("may not do this"));

    // Switch to Chinese: the choice stays for the next pages.
    b.goto(&server.url("/inventory")).await;
    b.click("#lang-switch").await;
    assert_eq!(
        path_of(&b.current_url().await),
        "/inventory?q=&filter=all&page=1"
    );
    let main = b.text("main").await;
    assert!(main.contains("库存") && main.contains("可售"), "{main}");
    shoot(&b, &server, "/inventory", "inventory-zh").await;
    shoot(&b, &server, "/overview", "overview-zh").await;
    b.click("form[action='/logout'] button").await;

    // An administrator reads the audit log, in Chinese (the cookie) and in English.
    browser_sign_in(&b, &server, "admin@shop.example").await;
    b.goto(&server.url("/audit?action=stock.adjust")).await;
    let main = b.text("main").await;
    assert!(
        main.contains("哈希链校验通过") && main.contains("cycle count"),
        "{main}"
    );
    shoot(&b, &server, "/audit", "audit-zh").await;
    shoot(&b, &server, "/login", "sign-in-zh").await;
    b.goto(&server.url("/audit")).await;
    b.click("#lang-switch").await;
    assert!(b.text("main").await.contains("The hash chain verifies"));
    shoot(&b, &server, "/audit", "audit-en").await;
}

/// The live overview polls every few seconds; that must not keep an idle session open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_the_overview_does_not_hold_off_the_idle_lock() {
    if !require_tool("oathtool", "oathtool", "the console test") {
        return;
    }
    let sb = init("dev", "[access]\nidle_timeout = \"2s\"\n");
    add_user(&sb, "admin@shop.example", "admin");
    let server = Server::start(&sb);
    let (_, admin, _, _) = enroll(&server, "admin@shop.example").await;
    let poll = || async {
        admin
            .apply(server.client.get(server.url("/overview/live")))
            .header("hx-request", "true")
            .send()
            .await
            .unwrap()
    };
    let res = poll().await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("hx-redirect").is_none());
    for _ in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        poll().await;
    }
    // Locked although it polled all along; the poll sends the whole page to the lock.
    let res = poll().await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["hx-redirect"], "/lock");
    let res = admin
        .apply(server.client.get(server.url("/overview")))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    assert_eq!(res.headers()["location"], "/lock");
}

#[test]
fn the_console_time_zone_is_checked_when_the_config_is_read() {
    let sb = Sandbox::new();
    let file = sb.dir.join("tz.toml");
    std::fs::write(&file, "[console]\ntimezone = \"Mars/Olympus\"\n").unwrap();
    let config = file.to_str().unwrap();
    let bad = sb
        .run(&["--config", config, "--env", "dev", "config"])
        .expect_code(2);
    assert!(
        bad.stderr().contains("console.timezone"),
        "{}",
        bad.stderr()
    );
    std::fs::write(&file, "[console]\ntimezone = \"Asia/Singapore\"\n").unwrap();
    let out = sb
        .run(&["--config", config, "--env", "dev", "config"])
        .expect_code(0)
        .stdout();
    let line = out
        .lines()
        .find(|l| l.contains("console.timezone"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("Asia/Singapore"), "{line}");
}
