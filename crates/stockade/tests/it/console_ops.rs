//! The Connections and Security pages and their API against a real `stockade serve`, on
//! SQLite and PostgreSQL: both pages in English and Chinese with nothing untranslated;
//! pause, resume and revoke (typed name) through the page and the API with the CLI's
//! audit rows written as the acting user, and refusals that write nothing and show
//! inline; bans added and lifted, an API key and sessions revoked; viewers, operators and
//! auditors neither see nor reach what their role may not do; no token, key or hash on a
//! page or in a JSON answer.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console::{assert_translated, get};
use crate::harness::{Sandbox, drop_schema, pg_schema_url, require_tool};
use crate::server::{Auth, Server, add_user, enroll, init};
use crate::sync::credentials_file;

/// Add a TikTok connection `name` pointed at a port nothing listens on.
pub(crate) fn add_tiktok(sb: &Sandbox, name: &str, account: &str) {
    let creds = credentials_file(
        sb,
        name,
        json!({"app_key": "6a1b2c3d4e5f", "app_secret": format!("secret-of-{name}"),
               "refresh_token": "ROW_not-a-real-token"}),
    );
    sb.run(&[
        "connection",
        "add",
        "--marketplace",
        "tiktok",
        "--name",
        name,
        "--account",
        account,
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
}

fn csrf(auth: &Auth) -> String {
    match auth {
        Auth::Cookie { csrf, .. } => csrf.clone(),
        _ => String::new(),
    }
}

/// Post a form; the status and the page.
async fn post_page(server: &Server, auth: &Auth, path: &str, body: &str) -> (StatusCode, String) {
    let res = auth
        .apply(server.client.post(server.url(path)))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept-language", "en")
        .body(format!("csrf={}&{body}", csrf(auth)))
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn api_post(
    server: &Server,
    auth: &Auth,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut rb = auth.apply(server.client.post(server.url(path)));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let res = rb.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The audit rows of `action` (newest first).
async fn audit(server: &Server, admin: &Auth, action: &str) -> Vec<Value> {
    let (s, body) = server
        .get_with(&format!("/api/v1/audit?action={action}&limit=100"), admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == action)
        .cloned()
        .collect()
}

async fn actor_of(server: &Server, auth: &Auth) -> String {
    let (_, who) = server.get_with("/api/v1/whoami", auth).await;
    format!("user:{}", who["user"]["id"].as_str().unwrap())
}

fn status_of(sb: &Sandbox, name: &str) -> String {
    let list = sb.run(&["connection", "list"]).expect_code(0).stdout();
    list.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in\n{list}"))
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_owned()
}

fn session_of(auth: &Auth) -> String {
    match auth {
        Auth::Cookie { session, .. } => session.clone(),
        _ => panic!("not a session"),
    }
}

fn sha256_hex(s: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_security_on_sqlite() {
    if !require_tool("oathtool", "oathtool", "the console ops test") {
        return;
    }
    ops_pages(init("dev", "")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_security_on_postgres() {
    if !require_tool("oathtool", "oathtool", "the console ops test") {
        return;
    }
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let sb = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    ops_pages(sb).await;
    drop_schema(&schema).await;
}

struct Users {
    admin: Auth,
    op: Auth,
    viewer: Auth,
    auditor: Auth,
}

async fn ops_pages(sb: Sandbox) {
    add_tiktok(&sb, "shop-a", "7495000000001");
    add_tiktok(&sb, "shop-b", "7495000000002");
    for (email, role) in [
        ("admin@shop.example", "admin"),
        ("op@shop.example", "operator"),
        ("view@shop.example", "viewer"),
        ("audit@shop.example", "auditor"),
    ] {
        add_user(&sb, email, role);
    }
    let server = Server::start(&sb);
    let u = Users {
        admin: enroll(&server, "admin@shop.example").await.1,
        op: enroll(&server, "op@shop.example").await.1,
        viewer: enroll(&server, "view@shop.example").await.1,
        auditor: enroll(&server, "audit@shop.example").await.1,
    };
    pages_in_both_languages(&server, &u).await;
    roles_see_and_reach_only_their_own(&server, &u).await;
    crate::console_incidents::incident_actions(&server, &u.admin, &u.op, &u.auditor).await;
    connection_actions(&sb, &server, &u).await;
    security_actions(&sb, &server, &u).await;
    sb.run(&["audit", "verify"]).expect_code(0);
}

async fn pages_in_both_languages(server: &Server, u: &Users) {
    // A delivery with a bad signature: received and refused, counted for shop-a.
    let res = server
        .client
        .post(server.url("/hooks/tiktok/shop-a"))
        .header("authorization", "deadbeef")
        .header("content-type", "application/json")
        .body(r#"{"type":1,"shop_id":"7495000000001","timestamp":1700000000,"data":{}}"#)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    for path in ["/connections", "/security"] {
        let (s, zh) = get(server, &u.admin, path, "zh-CN,zh;q=0.9").await;
        assert_eq!(s, StatusCode::OK, "{path}: {zh}");
        let (s, en) = get(server, &u.admin, path, "en").await;
        assert_eq!(s, StatusCode::OK, "{path}: {en}");
        assert_translated(path, &zh, &en);
        assert!(
            en.contains("Development — sandbox marketplaces only"),
            "{path}"
        );
        // Both pages are in the navigation of an administrator.
        assert!(en.contains("href=\"/connections\"") && en.contains("href=\"/security\""));
    }
    let (_, en) = get(server, &u.admin, "/connections", "en").await;
    assert!(
        en.contains("shop-a") && en.contains("7495000000002"),
        "{en}"
    );
    assert!(en.contains("action=\"/connections/revoke\""), "{en}");
    let (_, zh) = get(server, &u.admin, "/connections", "zh").await;
    assert!(zh.contains("店铺连接") && zh.contains("撤销并清除"), "{zh}");
    let (_, zh) = get(server, &u.admin, "/security", "zh").await;
    assert!(zh.contains("双重验证") && zh.contains("当前封禁"), "{zh}");
    // The API: every connection with the webhook it received, paged by cursor.
    let (s, page) = server
        .get_with("/api/v1/connections?limit=1", &u.viewer)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["connections"][0]["name"], "shop-a", "{page}");
    assert_eq!(page["connections"][0]["webhooks"]["received"], 1, "{page}");
    assert_eq!(page["connections"][0]["webhooks"]["refused"], 1, "{page}");
    assert_eq!(page["connections"][0]["authorization"], "ok", "{page}");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, next) = server
        .get_with(
            &format!("/api/v1/connections?limit=1&cursor={cursor}"),
            &u.viewer,
        )
        .await;
    assert_eq!(next["connections"][0]["name"], "shop-b", "{next}");
    assert!(next["next_cursor"].is_null(), "{next}");
    let (s, bad) = server
        .get_with("/api/v1/connections?cursor=bm90LW91cnM", &u.viewer)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(bad["error"]["code"], "invalid_cursor");
    // No credential on the page or in the answer.
    assert!(!en.contains("secret-of-shop-a") && !page.to_string().contains("secret-of"));
}

async fn roles_see_and_reach_only_their_own(server: &Server, u: &Users) {
    // A viewer sees the connections, no action, and no Security page.
    let (s, page) = get(server, &u.viewer, "/connections", "en").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("shop-a") && !page.contains("<form method=\"post\" action=\"/connections"),
        "{page}"
    );
    assert!(!page.contains("href=\"/security\""), "{page}");
    for path in [
        "/connections/pause",
        "/connections/resume",
        "/connections/revoke",
    ] {
        let (s, _) = post_page(server, &u.viewer, path, "name=shop-a&confirm=shop-a").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    let (s, _) = api_post(server, &u.viewer, "/api/v1/connections/shop-a/pause", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        get(server, &u.viewer, "/security", "en").await.0,
        StatusCode::FORBIDDEN
    );
    // An operator manages connections but not security.
    let (_, page) = get(server, &u.op, "/connections", "en").await;
    assert!(page.contains("action=\"/connections/pause\""), "{page}");
    assert!(!page.contains("href=\"/security\""), "{page}");
    assert_eq!(
        get(server, &u.op, "/security", "en").await.0,
        StatusCode::FORBIDDEN
    );
    let (s, _) = post_page(
        server,
        &u.op,
        "/security/bans/add",
        "ip=203.0.113.7&duration=1h",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        server.get_with("/api/v1/security/sessions", &u.op).await.0,
        StatusCode::FORBIDDEN
    );
    // An auditor reads the bans, and nothing else of the page, with no form.
    let (s, page) = get(server, &u.auditor, "/security", "en").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(
        page.contains("Bans in force") && page.contains("href=\"/security\""),
        "{page}"
    );
    for hidden in [
        "<form method=\"post\" action=\"/security",
        "admin@shop.example",
        "id=\"sessions\"",
        "id=\"keys\"",
    ] {
        assert!(!page.contains(hidden), "an auditor sees {hidden}: {page}");
    }
    for (path, body) in [
        ("/security/bans/add", "ip=203.0.113.7&duration=1h"),
        ("/security/bans/lift", "ip=203.0.113.7"),
        ("/security/sessions/revoke", "id=0123456789abcdef"),
        ("/security/sessions/revoke-user", "id=x"),
        ("/security/apikeys/revoke", "id=x"),
    ] {
        assert_eq!(
            post_page(server, &u.auditor, path, body).await.0,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(
        get(server, &u.auditor, "/connections", "en").await.0,
        StatusCode::FORBIDDEN
    );
    assert!(audit(server, &u.admin, "ban.add").await.is_empty());
}

async fn connection_actions(sb: &Sandbox, server: &Server, u: &Users) {
    let op_actor = actor_of(server, &u.op).await;
    let admin_actor = actor_of(server, &u.admin).await;
    // Pause through the page (as the operator), resume through the API (as the admin).
    let (s, _) = post_page(server, &u.op, "/connections/pause", "name=shop-a").await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(status_of(sb, "shop-a"), "paused");
    let rows = audit(server, &u.admin, "connection.pause").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["actor"], op_actor.as_str());
    assert_eq!(rows[0]["resource"], "connection:shop-a");
    let (_, page) = get(server, &u.op, "/connections?done=paused&name=shop-a", "en").await;
    assert!(
        page.contains("Paused: nothing is pushed")
            && page.contains("action=\"/connections/resume\""),
        "{page}"
    );
    let (s, body) = api_post(server, &u.admin, "/api/v1/connections/shop-a/resume", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(status_of(sb, "shop-a"), "active");
    let rows = audit(server, &u.admin, "connection.resume").await;
    assert_eq!(rows[0]["actor"], admin_actor.as_str(), "{rows:?}");
    // Unknown names are refused, in the page's language, and nothing is written.
    let (s, page) = post_page(server, &u.op, "/connections/pause", "name=no-such").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("There is no connection with this name"),
        "{page}"
    );
    let (s, body) = api_post(server, &u.op, "/api/v1/connections/no-such/pause", None).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_connection"))
    );
    // Revoke with the wrong name typed: refused inline, nothing changes.
    let (s, page) = post_page(
        server,
        &u.op,
        "/connections/revoke",
        "name=shop-b&confirm=shop-a",
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("role=\"alert\">The name typed is not this connection&#39;s name")
            || page.contains("The name typed is not this connection"),
        "{page}"
    );
    let res =
        u.op.apply(server.client.post(server.url("/connections/revoke")))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept-language", "zh-CN")
            .body(format!("csrf={}&name=shop-b&confirm=SHOP-B", csrf(&u.op)))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("输入的名称与该连接名称不一致")
    );
    let (s, body) = api_post(
        server,
        &u.op,
        "/api/v1/connections/shop-b/revoke",
        Some(json!({"confirm": "shop-"})),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("not_confirmed"))
    );
    let (s, _) = api_post(server, &u.op, "/api/v1/connections/shop-b/revoke", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(status_of(sb, "shop-b"), "active");
    assert!(audit(server, &u.admin, "connection.purge").await.is_empty());
    // The right name: revoked and purged, the CLI's audit row, as the operator.
    let (s, _) = post_page(
        server,
        &u.op,
        "/connections/revoke",
        "name=shop-b&confirm=shop-b",
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(status_of(sb, "shop-b"), "revoked");
    let rows = audit(server, &u.admin, "connection.purge").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["actor"], op_actor.as_str());
    assert_eq!(rows[0]["details"]["reason"], "revoked by operator");
    let (_, page) = get(server, &u.op, "/connections", "en").await;
    assert!(page.contains("Revoked: add a new connection"), "{page}");
    // A revoked connection cannot be resumed (409 in the API, inline on the page).
    let (s, body) = api_post(server, &u.admin, "/api/v1/connections/shop-b/resume", None).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("revoked"))
    );
    let (s, _) = post_page(server, &u.op, "/connections/resume", "name=shop-b").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(audit(server, &u.admin, "connection.resume").await.len() == 1);
    // The API's revoke, right name: the receipt's counts.
    let (s, body) = api_post(
        server,
        &u.admin,
        "/api/v1/connections/shop-a/revoke",
        Some(json!({"confirm": "shop-a"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["credentials"], 3, "{body}");
    assert_eq!(
        audit(server, &u.admin, "connection.purge").await[0]["actor"],
        admin_actor.as_str()
    );
}

async fn security_actions(sb: &Sandbox, server: &Server, u: &Users) {
    let admin_actor = actor_of(server, &u.admin).await;
    // Ban and lift through the page.
    let (s, _) = post_page(
        server,
        &u.admin,
        "/security/bans/add",
        "ip=203.0.113.7&duration=1d",
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        sb.run(&["ban", "list"])
            .expect_code(0)
            .stdout()
            .contains("203.0.113.7")
    );
    let rows = audit(server, &u.admin, "ban.add").await;
    assert_eq!(
        (rows.len(), rows[0]["actor"].as_str()),
        (1, Some(admin_actor.as_str()))
    );
    let (_, page) = get(server, &u.admin, "/security?done=banned", "en").await;
    assert!(
        page.contains("Address banned")
            && page.contains("203.0.113.7")
            && page.contains("Added by an administrator"),
        "{page}"
    );
    for (body, msg) in [
        (
            "ip=not-an-address&duration=1h",
            "That is not an address that can be banned",
        ),
        (
            "ip=0.0.0.0&duration=1h",
            "That is not an address that can be banned",
        ),
        (
            "ip=203.0.113.8&duration=9999d",
            "Choose one of the listed ban lengths",
        ),
        (
            "ip=127.0.0.1&duration=1h",
            "That is the address you are connected from",
        ),
    ] {
        let (s, page) = post_page(server, &u.admin, "/security/bans/add", body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(page.contains(msg), "{body}: {page}");
    }
    assert_eq!(audit(server, &u.admin, "ban.add").await.len(), 1);
    let (s, _) = post_page(server, &u.admin, "/security/bans/lift", "ip=203.0.113.7").await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        !sb.run(&["ban", "list"])
            .expect_code(0)
            .stdout()
            .contains("203.0.113.7")
    );
    assert_eq!(
        audit(server, &u.admin, "ban.remove").await[0]["actor"],
        admin_actor.as_str()
    );
    let (s, page) = post_page(server, &u.admin, "/security/bans/lift", "ip=203.0.113.7").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("That address is not banned"), "{page}");
    assert_eq!(audit(server, &u.admin, "ban.remove").await.len(), 1);

    // An API key: listed without its secret, revoked by id, refused afterwards.
    let key = sb
        .run(&["apikey", "create", "--name", "ci-robot", "--role", "viewer"])
        .expect_code(0)
        .stdout()
        .trim()
        .to_owned();
    let (_, page) = get(server, &u.admin, "/security", "en").await;
    assert!(page.contains("ci-robot") && !page.contains(&key), "{page}");
    assert!(!page.contains(&sha256_hex(&key)));
    let (_, keys) = server.get_with("/api/v1/apikeys", &u.admin).await;
    let id = keys["api_keys"][0]["id"].as_str().unwrap().to_owned();
    let (s, _) = post_page(server, &u.admin, "/security/apikeys/revoke", "id=ci-robot").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "by id only");
    assert!(audit(server, &u.admin, "apikey.revoke").await.is_empty());
    assert_eq!(
        server
            .get_with("/api/v1/whoami", &Auth::Key(key.clone()))
            .await
            .0,
        StatusCode::OK
    );
    // A key named like the first key's id: revoking by id leaves it alone.
    let decoy = sb
        .run(&["apikey", "create", "--name", &id, "--role", "viewer"])
        .expect_code(0)
        .stdout()
        .trim()
        .to_owned();
    let (s, _) = post_page(
        server,
        &u.admin,
        "/security/apikeys/revoke",
        &format!("id={id}"),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        server
            .get_with("/api/v1/whoami", &Auth::Key(key.clone()))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let decoy_ok = server.get_with("/api/v1/whoami", &Auth::Key(decoy)).await.0;
    assert_eq!(
        decoy_ok,
        StatusCode::OK,
        "revoking by id revoked the key named like it"
    );
    assert_eq!(
        audit(server, &u.admin, "apikey.revoke").await[0]["actor"],
        admin_actor.as_str()
    );
    let (s, body) = api_post(
        server,
        &u.admin,
        &format!("/api/v1/apikeys/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("api_key_not_found"))
    );

    sessions(server, u, &admin_actor).await;
}

async fn sessions(server: &Server, u: &Users, admin_actor: &str) {
    // Sessions: listed by public id, never by token or hash.
    let (s, list) = server
        .get_with("/api/v1/security/sessions?limit=2", &u.admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2);
    let cursor = list["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = server
        .get_with(
            &format!("/api/v1/security/sessions?cursor={cursor}"),
            &u.admin,
        )
        .await;
    let all: Vec<Value> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["sessions"].as_array().unwrap())
        .cloned()
        .collect();
    assert!(all.len() >= 4, "{all:?}");
    let (_, page) = get(server, &u.admin, "/security", "en").await;
    let texts = [page.clone(), list.to_string(), rest.to_string()];
    for who in [&u.admin, &u.op, &u.viewer, &u.auditor] {
        let token = session_of(who);
        let hash = sha256_hex(&token);
        for text in &texts {
            assert!(
                !text.contains(&token) && !text.contains(&hash),
                "a session token or hash is shown"
            );
        }
        if !std::ptr::eq(who, &u.admin) {
            assert!(
                !page.contains(&csrf(who)),
                "another user's CSRF token is shown"
            );
        }
    }
    let op_id = &sha256_hex(&session_of(&u.op))[..16];
    assert!(page.contains(op_id), "{page}");
    // End the operator's session through the API; an unknown id is refused, writes nothing.
    let (s, body) = api_post(
        server,
        &u.admin,
        "/api/v1/security/sessions/0123456789abcdef/revoke",
        None,
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("session_not_found"))
    );
    assert!(audit(server, &u.admin, "session.revoke").await.is_empty());
    let (s, _) = api_post(
        server,
        &u.admin,
        &format!("/api/v1/security/sessions/{op_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        server.get_with("/api/v1/whoami", &u.op).await.0,
        StatusCode::UNAUTHORIZED
    );
    let rows = audit(server, &u.admin, "session.revoke").await;
    assert_eq!(rows[0]["actor"], admin_actor);
    assert_eq!(rows[0]["resource"], format!("session:{op_id}"));
    // End all of the viewer's sessions through the page.
    let (_, who) = server.get_with("/api/v1/whoami", &u.viewer).await;
    let viewer_id = who["user"]["id"].as_str().unwrap().to_owned();
    let (s, page) = post_page(
        server,
        &u.admin,
        "/security/sessions/revoke-user",
        "id=no-such-user",
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("There is no such user"), "{page}");
    let (s, _) = post_page(
        server,
        &u.admin,
        "/security/sessions/revoke-user",
        &format!("id={viewer_id}"),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        server.get_with("/api/v1/whoami", &u.viewer).await.0,
        StatusCode::UNAUTHORIZED
    );
    let rows = audit(server, &u.admin, "session.end_all").await;
    assert!(
        rows.iter()
            .any(|r| r["actor"] == admin_actor && r["resource"] == format!("user:{viewer_id}")),
        "{rows:?}"
    );
    // The admin's own session still works.
    assert_eq!(
        server.get_with("/api/v1/whoami", &u.admin).await.0,
        StatusCode::OK
    );
}
