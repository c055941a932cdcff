//! The sign-in forms over HTTP, as a browser sends them (no browser needed): the
//! cross-site check reads `Sec-Fetch-Site` and `Origin`, refusals on pages are pages, the
//! API keeps its JSON errors, and the TOTP enrollment key stays the same until confirmed.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::require_tool;
use crate::server::{PASSWORD, Server, add_user, init, oathtool, set_cookie};

/// A fresh sign-in form: (login CSRF token, cookie header).
async fn login_form(server: &Server) -> (String, String) {
    let res = server
        .client
        .get(server.url("/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["referrer-policy"],
        "same-origin",
        "a policy that keeps the origin on our own form posts"
    );
    let (csrf, _) = set_cookie(res.headers(), "__Host-stockade_csrf").unwrap();
    let cookie = format!("__Host-stockade_csrf={csrf}");
    (csrf, cookie)
}

async fn post_login(server: &Server, email: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let (csrf, cookie) = login_form(server).await;
    let mut rb = server
        .client
        .post(server.url("/login"))
        .header("cookie", cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", PASSWORD),
        ]);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

fn is_page(res: &reqwest::Response) -> bool {
    res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html")
}

/// Regression: under `Referrer-Policy: no-referrer` Chromium sends `Origin:
/// null` with its own same-origin form posts; the server answered a JSON `cross_origin`
/// error. What the browser says in `Sec-Fetch-Site` now decides, and a real cross-site
/// post is still refused, with a page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_form_posts_pass_with_origin_null_and_cross_site_posts_get_a_page() {
    let sb = init("dev", "");
    let email = "viewer@shop.example";
    add_user(&sb, email, "viewer");
    let server = Server::start(&sb);
    let origin = server.base.clone();

    // What Chromium sent: Origin null, Sec-Fetch-Site same-origin.
    let res = post_login(
        &server,
        email,
        &[("origin", "null"), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/mfa/enroll");
    // Our own origin, and a non-browser client without either header, pass too.
    for headers in [
        vec![
            ("origin", origin.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![("origin", origin.as_str())],
        vec![],
    ] {
        let res = post_login(&server, email, &headers).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{headers:?}");
    }

    // Another site, however it is labelled: refused with a page, no session.
    for headers in [
        vec![
            ("origin", "https://shop-offers.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![("origin", "null"), ("sec-fetch-site", "cross-site")],
        vec![("origin", origin.as_str()), ("sec-fetch-site", "same-site")],
        vec![("origin", "https://shop-offers.example")],
        vec![("origin", "null")],
    ] {
        let res = post_login(&server, email, &headers).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(is_page(&res), "{headers:?}");
        assert!(set_cookie(res.headers(), "__Host-stockade").is_none());
        let html = res.text().await.unwrap();
        assert!(
            html.contains("<h1>Request refused</h1>") && html.contains("another site"),
            "{html}"
        );
    }
    assert!(server.log_text().contains("cross-site POST /login refused"));

    // A wrong CSRF token on a form: a page too, naming what to do.
    let (_, cookie) = login_form(&server).await;
    let res = server
        .client
        .post(server.url("/login"))
        .header("cookie", cookie)
        .form(&[("csrf", "forged"), ("email", email), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(is_page(&res));
    assert!(res.text().await.unwrap().contains("reload the page"));

    // The API answers JSON, as before.
    let res = server
        .client
        .post(server.url("/api/v1/auth/login"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "cross_origin");
}

async fn enroll_page(server: &Server, sid: &str) -> String {
    server
        .client
        .get(server.url("/mfa/enroll"))
        .header("cookie", format!("__Host-stockade={sid}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn key_of(html: &str) -> String {
    html.split("Key: <code>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned()
}

/// Regression: every load of the enrollment page, and every wrong code, made
/// a new TOTP secret, so the QR code a user had scanned stopped working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enrollment_key_stays_the_same_until_it_is_confirmed() {
    if !require_tool("oathtool", "oathtool", "TOTP sign-in") {
        return;
    }
    let sb = init("dev", "");
    let email = "viewer@shop.example";
    add_user(&sb, email, "viewer");
    let server = Server::start(&sb);
    let c = &server.client;

    let res = post_login(&server, email, &[]).await;
    let (sid, _) = set_cookie(res.headers(), "__Host-stockade").unwrap();
    let first = enroll_page(&server, &sid).await;
    let key = key_of(&first);
    assert_eq!(
        key_of(&enroll_page(&server, &sid).await),
        key,
        "a reload kept the key"
    );

    // A wrong code: refused, naming the code from the app, and the same key.
    let csrf = first
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let wrong = if oathtool(&key, 0) == "000000" {
        "999999"
    } else {
        "000000"
    };
    let res = c
        .post(server.url("/mfa/enroll"))
        .header("cookie", format!("__Host-stockade={sid}"))
        .form(&[("csrf", csrf.as_str()), ("code", wrong)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let html = res.text().await.unwrap();
    assert!(html.contains("6-digit code your authenticator app shows"));
    assert_eq!(key_of(&html), key, "a wrong code kept the key");

    // Signing in again before confirming: the key already scanned still holds.
    let res = post_login(&server, email, &[]).await;
    let (sid2, _) = set_cookie(res.headers(), "__Host-stockade").unwrap();
    assert_ne!(sid2, sid);
    assert_eq!(
        key_of(&enroll_page(&server, &sid2).await),
        key,
        "a new sign-in kept the key"
    );

    // The API's enrollment is stable the same way.
    let (_, _, body) = server
        .post_json(
            "/api/v1/auth/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let token = body["enrollment_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, _, e) = server
            .post_json(
                "/api/v1/auth/mfa/enroll",
                json!({"enrollment_token": token}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(e["secret"], key.as_str());
    }
    let (status, _, _) = server
        .post_json(
            "/api/v1/auth/mfa/confirm",
            json!({"enrollment_token": token, "totp": oathtool(&key, 0)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let export = sb.run(&["audit", "export"]).expect_code(0).stdout();
    assert!(export.contains("mfa.enroll.resume") && !export.contains(&key));
}
