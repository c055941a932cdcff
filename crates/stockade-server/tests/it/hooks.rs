//! Webhooks in: deliveries reach the sink without a session or API key, the sink's answer
//! passes through, bad signatures are 401 and feed the `webhook` jail, unknown and revoked
//! connections are 404/410 and logged only, oversized bodies are 413, unknown
//! marketplaces and names are 404, and a missing
//! or unavailable sink is 503. Nothing of the request is echoed or logged.

use std::sync::{Arc, Mutex};

use aws_lc_rs::{digest, hmac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade_core::order::Marketplace;
use stockade_marketplaces::{HookAnswer, HookError, HookFuture, HookSink, InboundRequest};
use stockade_server::routes::{Gate, ROUTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Backend, Options, TestServer, require_tool};

const SECRET: &[u8] = b"test-webhook-secret-0f3a";
/// Put in bodies to show they are never echoed or logged.
const MARKER: &str = "buyer-street-7731-marker";
const ENDPOINT: &str = "https://stockade.example/hooks/ebay/";

/// What the sink saw of one accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    marketplace: Marketplace,
    connection: String,
    method: String,
    path_and_query: String,
    body: Vec<u8>,
}

/// A sink with real accept/reject logic: a POST is accepted only when `x-test-signature`
/// is the hex HMAC-SHA256 of its body under [`SECRET`], and then only if the body is a
/// JSON object; eBay's GET challenge is answered as eBay specifies (SHA-256 of code,
/// token and endpoint). Connection `down` verifies but its store is "down".
struct TestSink {
    key: hmac::Key,
    connections: &'static [&'static str],
    seen: Mutex<Vec<Seen>>,
}

impl TestSink {
    fn new() -> Arc<TestSink> {
        Arc::new(TestSink {
            key: hmac::Key::new(hmac::HMAC_SHA256, SECRET),
            connections: &["shop-1", "EU_main", "down", "gone", "busy"],
            seen: Mutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn handle(
        &self,
        marketplace: Marketplace,
        connection: &str,
        request: &InboundRequest,
    ) -> Result<HookAnswer, HookError> {
        if !self.connections.contains(&connection) {
            return Err(HookError::UnknownConnection);
        }
        if connection == "gone" {
            return Err(HookError::RevokedConnection);
        }
        if request.method == "GET" {
            let code = request
                .path_and_query
                .split_once('?')
                .and_then(|(_, q)| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("challenge_code="))
                })
                .filter(|_| marketplace == Marketplace::Ebay)
                .ok_or_else(|| HookError::Malformed("no challenge code".into()))?;
            return Ok(HookAnswer::json(
                json!({"challengeResponse": challenge_response(code, connection)}).to_string(),
            ));
        }
        // Signature first, before anything looks at the body.
        let signature = request
            .header("x-test-signature")
            .ok_or(HookError::Signature("missing"))?;
        let tag = hex::decode(signature).map_err(|_| HookError::Signature("not hex"))?;
        hmac::verify(&self.key, &request.body, &tag)
            .map_err(|_| HookError::Signature("mismatch"))?;
        let event: Value = serde_json::from_slice(&request.body)
            .map_err(|_| HookError::Malformed("the body is not JSON".into()))?;
        if !event.is_object() {
            return Err(HookError::Malformed("the body is not a JSON object".into()));
        }
        if connection == "busy" {
            return Err(HookError::Overloaded);
        }
        if connection == "down" {
            return Err(HookError::Unavailable("the test store is down".into()));
        }
        let mut seen = self.seen.lock().unwrap();
        seen.push(Seen {
            marketplace,
            connection: connection.to_owned(),
            method: request.method.to_string(),
            path_and_query: request.path_and_query.clone(),
            body: request.body.clone(),
        });
        Ok(HookAnswer {
            status: 200,
            content_type: "application/json",
            body: json!({"received": seen.len()}).to_string().into_bytes(),
        })
    }
}

impl HookSink for TestSink {
    fn deliver(
        &self,
        marketplace: Marketplace,
        connection: String,
        request: InboundRequest,
    ) -> HookFuture {
        let result = self.handle(marketplace, &connection, &request);
        Box::pin(async move {
            tokio::task::yield_now().await;
            result
        })
    }
}

fn challenge_response(code: &str, connection: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(code.as_bytes());
    ctx.update(SECRET);
    ctx.update(format!("{ENDPOINT}{connection}").as_bytes());
    hex::encode(ctx.finish())
}

fn sign(body: &[u8]) -> String {
    hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), body))
}

fn event_body() -> Vec<u8> {
    json!({"type": "order", "order_id": "576461413038785752", "note": MARKER})
        .to_string()
        .into_bytes()
}

async fn with_sink(maxretry: u32, backend: Backend) -> Option<(TestServer, Arc<TestSink>)> {
    let sink = TestSink::new();
    let server = TestServer::spawn(Options {
        backend,
        hooks: Some(sink.clone()),
        maxretry,
        ..Options::default()
    })
    .await?;
    Some((server, sink))
}

/// POST `body` to `path` from client address `ip`, with `signature` if given.
async fn post(
    server: &TestServer,
    path: &str,
    ip: &str,
    body: Vec<u8>,
    signature: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut rb = server
        .client
        .post(server.url(path))
        .header("x-forwarded-for", ip)
        .header("content-type", "application/json")
        .body(body);
    if let Some(s) = signature {
        rb = rb.header("x-test-signature", s);
    }
    let res = rb.send().await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.bytes().await.unwrap().to_vec())
}

fn failure_lines(server: &TestServer, ip: &str) -> usize {
    let line = format!("WARN authentication failure jail=webhook kind=webhook_signature ip={ip}");
    server
        .logs
        .text()
        .lines()
        .filter(|l| l.trim_end().ends_with(&line))
        .count()
}

fn assert_nothing_echoed(text: &str, signature: &str) {
    assert!(!text.contains(MARKER), "the body is echoed: {text}");
    assert!(!text.contains(signature), "the signature is echoed: {text}");
    assert!(
        !text.contains("576461413038785752"),
        "the body is echoed: {text}"
    );
}

#[tokio::test]
async fn a_signed_delivery_reaches_the_sink_without_session_or_api_key_and_its_answer_passes_through()
 {
    let (server, sink) = with_sink(5, Backend::Sqlite).await.unwrap();
    let body = event_body();
    let signature = sign(&body);
    for (i, (marketplace, path)) in [
        (Marketplace::TikTok, "/hooks/tiktok/shop-1"),
        (Marketplace::Amazon, "/hooks/amazon/EU_main?source=sqs"),
        (Marketplace::Ebay, "/hooks/ebay/shop-1"),
    ]
    .into_iter()
    .enumerate()
    {
        // A stray bearer token or cookie is not an API key check here: the signature rules.
        let res = server
            .client
            .post(server.url(path))
            .header("x-forwarded-for", "203.0.113.10")
            .header("x-test-signature", &signature)
            .header("authorization", "Bearer stk_dev_garbage")
            .header("cookie", "__Host-stockade=garbage")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        let answer: Value = res.json().await.unwrap();
        assert_eq!(answer, json!({"received": i + 1}), "the sink's body as is");
        let seen = sink.seen();
        let last = seen.last().unwrap();
        assert_eq!(
            (last.marketplace, last.method.as_str(), last.body.as_slice()),
            (marketplace, "POST", body.as_slice())
        );
        assert_eq!(
            last.path_and_query, path,
            "path and query exactly as received"
        );
    }
    assert_eq!(sink.seen()[1].connection, "EU_main");
    let logs = server.logs.text();
    assert!(!logs.contains("authentication failure"), "{logs}");
    // Accepted deliveries are logged at debug (the sync engine logs one line per stored
    // batch), so the default INFO log has no line per webhook.
    assert!(!logs.contains("outcome=accepted"), "{logs}");
    assert_nothing_echoed(&logs, &signature);
    server.cleanup().await;
}

#[tokio::test]
async fn ebay_challenge_is_answered_with_the_sinks_json() {
    let (server, sink) = with_sink(5, Backend::Sqlite).await.unwrap();
    let code = "a8628072-3d33-45ee-9004-bee86830a22d";
    let res = server
        .client
        .get(server.url(&format!("/hooks/ebay/shop-1?challenge_code={code}")))
        .header("x-forwarded-for", "203.0.113.11")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["challengeResponse"].as_str().unwrap(),
        challenge_response(code, "shop-1")
    );
    assert!(sink.seen().is_empty(), "a challenge is not an event");
    let res = server
        .client
        .head(server.url(&format!("/hooks/ebay/shop-1?challenge_code={code}")))
        .header("x-forwarded-for", "203.0.113.11")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "HEAD is not a delivery"
    );
    // Only eBay has a GET route; a method missing from the route table is refused.
    let res = server
        .client
        .get(server.url(&format!("/hooks/tiktok/shop-1?challenge_code={code}")))
        .header("x-forwarded-for", "203.0.113.11")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    server.cleanup().await;
}

#[tokio::test]
async fn a_bad_signature_is_a_generic_401_recorded_as_a_failure_fail2ban_matches() {
    let (server, sink) = with_sink(10, Backend::Sqlite).await.unwrap();
    let body = event_body();
    let forged = sign(b"some other body");
    let ip = "203.0.113.7";
    for signature in [Some(forged.as_str()), Some("zz-not-hex"), None] {
        let (status, _, answer) =
            post(&server, "/hooks/tiktok/shop-1", ip, body.clone(), signature).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(
            answer,
            json!({"error": {"code": "invalid_signature", "message": "the delivery's signature does not verify"}}),
            "one generic answer whatever was wrong"
        );
    }
    assert!(sink.seen().is_empty());
    assert_eq!(failure_lines(&server, ip), 3);
    let logs = server.logs.text();
    assert!(
        logs.contains("webhook tiktok connection=shop-1 status=401 outcome=bad_signature"),
        "{logs}"
    );
    assert_nothing_echoed(&logs, &forged);
    assert!(
        server
            .access
            .banned(ip.parse().unwrap(), stockade_access::Jail::Webhook)
            .is_none(),
        "3 < maxretry"
    );

    // The host-level Fail2Ban filter matches the new kind.
    let log_file = std::env::temp_dir().join(format!(
        "stockade-hooks-{}.log",
        crate::harness::random_hex()
    ));
    std::fs::write(&log_file, &logs).unwrap();
    let filter = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/fail2ban/filter.d/stockade.conf")
        .canonicalize()
        .unwrap();
    // Both jails by default, the webhook jail by name, not the interactive one.
    let jails = [
        ("", 3),
        ("[stockade_jail=webhook]", 3),
        ("[stockade_jail=interactive]", 0),
    ];
    let check = require_tool("fail2ban-regex", "fail2ban", "the Fail2Ban filter check");
    for (jail, matched) in jails.into_iter().filter(|_| check) {
        let out = std::process::Command::new("fail2ban-regex")
            .arg(&log_file)
            .arg(format!("{}{jail}", filter.display()))
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{report}");
        assert!(
            report.contains(&format!(" {matched} matched")),
            "{jail}: {report}"
        );
    }
    let _ = std::fs::remove_file(&log_file);
    server.cleanup().await;
}

async fn repeated_bad_signatures_ban_the_address(backend: Backend) {
    let Some((server, sink)) = with_sink(3, backend).await else {
        return;
    };
    let body = event_body();
    let (bad, good) = (sign(b"forged"), sign(&body));
    let ip = "203.0.113.21";
    for _ in 0..3 {
        let (status, _, _) =
            post(&server, "/hooks/ebay/shop-1", ip, body.clone(), Some(&bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Banned now: even a valid delivery is refused before it reaches the sink.
    let (status, _, answer) =
        post(&server, "/hooks/ebay/shop-1", ip, body.clone(), Some(&good)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["error"]["code"], "banned");
    let res = server
        .client
        .get(server.url("/hooks/ebay/shop-1?challenge_code=x"))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "the challenge too");
    assert!(sink.seen().is_empty());
    let bans = server.access.bans(false).await.unwrap();
    assert!(
        bans.iter().any(|b| b.ip.to_string() == ip),
        "the ban is persisted: {bans:?}"
    );
    // Another address is not affected.
    let (status, _, _) = post(
        &server,
        "/hooks/ebay/shop-1",
        "203.0.113.22",
        body.clone(),
        Some(&good),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sink.seen().len(), 1);
    server.cleanup().await;
}

#[tokio::test]
async fn repeated_bad_signatures_ban_the_address_sqlite() {
    repeated_bad_signatures_ban_the_address(Backend::Sqlite).await;
}

#[tokio::test]
async fn repeated_bad_signatures_ban_the_address_postgres() {
    repeated_bad_signatures_ban_the_address(Backend::Postgres).await;
}

/// Regression: a marketplace posting to a stale URL is not an attacker. Deliveries to
/// unknown connections (404) and revoked ones (410) are logged, never counted, so they
/// cannot ban the marketplace's address (or anyone sharing it).
#[tokio::test]
async fn unknown_and_revoked_connections_are_404_410_and_not_counted() {
    let (server, sink) = with_sink(3, Backend::Sqlite).await.unwrap();
    let body = event_body();
    let good = sign(&body);
    let ip = "203.0.113.30";
    for _ in 0..4 {
        for name in ["shop-2", "admin", "bad.name"] {
            let (status, _, answer) = post(
                &server,
                &format!("/hooks/amazon/{name}"),
                ip,
                body.clone(),
                Some(&good),
            )
            .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{name}");
            assert_nothing_echoed(&String::from_utf8_lossy(&answer), &good);
        }
        let (status, _, answer) =
            post(&server, "/hooks/amazon/gone", ip, body.clone(), Some(&good)).await;
        assert_eq!(status, StatusCode::GONE);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["error"]["code"], "connection_revoked");
    }
    assert_eq!(failure_lines(&server, ip), 0, "not authentication failures");
    let (status, _, _) = post(&server, "/hooks/amazon/shop-1", ip, body, Some(&good)).await;
    assert_eq!(status, StatusCode::OK, "16 stale deliveries ban nobody");
    assert_eq!(sink.seen().len(), 1);
    let logs = server.logs.text();
    assert!(
        logs.contains("webhook amazon connection=shop-2 status=404 outcome=unknown_connection"),
        "{logs}"
    );
    assert!(
        logs.contains("webhook amazon connection=gone status=410 outcome=revoked_connection"),
        "{logs}"
    );
    assert!(
        logs.contains("webhook amazon connection=<invalid> status=404"),
        "a malformed name is not logged: {logs}"
    );
    assert!(!logs.contains("bad.name"), "{logs}");
    assert!(server.access.bans(true).await.unwrap().is_empty());
    server.cleanup().await;
}

/// Regression: the webhook jail and the interactive jail ban separately. Bad signatures
/// ban the address from the webhook routes only (staff behind the same address still
/// sign in); wrong passwords ban it from everything but the webhook routes.
#[tokio::test]
async fn webhook_bans_do_not_lock_staff_out_and_staff_bans_do_not_stop_deliveries() {
    let (server, sink) = with_sink(3, Backend::Sqlite).await.unwrap();
    let body = event_body();
    let (bad, good) = (sign(b"forged"), sign(&body));
    let shared = "203.0.113.40";
    for _ in 0..3 {
        let (status, _, _) = post(
            &server,
            "/hooks/ebay/shop-1",
            shared,
            body.clone(),
            Some(&bad),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = post(
        &server,
        "/hooks/ebay/shop-1",
        shared,
        body.clone(),
        Some(&good),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "banned from the webhooks");
    let res = server
        .client
        .get(server.url("/login"))
        .header("x-forwarded-for", shared)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the sign-in page still opens");
    let res = server
        .client
        .post(server.url("/api/v1/auth/login"))
        .header("x-forwarded-for", shared)
        .json(&json!({"email": "nobody@shop.example", "password": "Wrong-Password-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "sign-in is not banned"
    );

    // Staff typos from another address: banned from sign-in, deliveries still accepted.
    let office = "203.0.113.41";
    for i in 0..3 {
        server
            .client
            .post(server.url("/api/v1/auth/login"))
            .header("x-forwarded-for", office)
            .json(
                &json!({"email": "nobody@shop.example", "password": format!("Wrong-Password-{i}")}),
            )
            .send()
            .await
            .unwrap();
    }
    let res = server
        .client
        .get(server.url("/login"))
        .header("x-forwarded-for", office)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().contains_key("retry-after"));
    let page = res.text().await.unwrap();
    assert!(
        page.contains("/static/app.css")
            && page.contains("The ban ends at")
            && page.contains(office),
        "a styled page that says when the ban ends: {page}"
    );
    let css = server
        .client
        .get(server.url("/static/app.css"))
        .header("x-forwarded-for", office)
        .send()
        .await
        .unwrap();
    assert_eq!(
        css.status(),
        StatusCode::OK,
        "the ban page's stylesheet loads"
    );
    let res = server
        .client
        .get(server.url("/api/v1/whoami"))
        .header("x-forwarded-for", office)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "banned");
    assert!(answer["error"]["until"].is_string(), "{answer}");
    let (status, _, _) = post(&server, "/hooks/ebay/shop-1", office, body, Some(&good)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "deliveries from the office still pass"
    );
    assert_eq!(sink.seen().len(), 1);
    let jails: Vec<_> = server
        .access
        .bans(false)
        .await
        .unwrap()
        .iter()
        .map(|b| (b.ip.to_string(), b.jail()))
        .collect();
    assert!(
        jails.contains(&(shared.to_owned(), Some(stockade_access::Jail::Webhook)))
            && jails.contains(&(office.to_owned(), Some(stockade_access::Jail::Interactive))),
        "{jails:?}"
    );
    server.cleanup().await;
}

#[tokio::test]
async fn unknown_marketplaces_and_malformed_connection_names_are_404() {
    let (server, sink) = with_sink(100, Backend::Sqlite).await.unwrap();
    let body = event_body();
    let good = sign(&body);
    let long = "x".repeat(65);
    for path in [
        "/hooks/shopify/shop-1".to_owned(),
        "/hooks/TikTok/shop-1".to_owned(),
        "/hooks/tiktok".to_owned(),
        "/hooks/tiktok/".to_owned(),
        "/hooks/tiktok/shop-1/extra".to_owned(),
        format!("/hooks/tiktok/{long}"),
        "/hooks/tiktok/shop%201".to_owned(),
        "/hooks/tiktok/shop%2F1".to_owned(),
        "/hooks/tiktok/%FF".to_owned(),
        "/hooks/tiktok/%7Bconnection%7D".to_owned(),
    ] {
        let (status, _, _) = post(&server, &path, "203.0.113.31", body.clone(), Some(&good)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    // 64 characters is still a name (unknown here, so also 404, but through the sink).
    let (status, _, _) = post(
        &server,
        &format!("/hooks/tiktok/{}", "x".repeat(64)),
        "203.0.113.31",
        body.clone(),
        Some(&good),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(sink.seen().is_empty());
    server.cleanup().await;
}

#[tokio::test]
async fn bodies_over_256_kib_are_refused_with_413_and_not_counted() {
    let (server, sink) = with_sink(2, Backend::Sqlite).await.unwrap();
    let ip = "203.0.113.40";
    let big = format!("{{\"note\":\"{}\"}}", "a".repeat(300 * 1024 - 11)).into_bytes();
    assert_eq!(big.len(), 300 * 1024);
    let signature = sign(&big);
    for _ in 0..3 {
        let (status, _, _) = post(
            &server,
            "/hooks/tiktok/shop-1",
            ip,
            big.clone(),
            Some(&signature),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }
    // Exactly the limit is accepted.
    let exact = format!(
        "{{\"note\":\"{}\"}}",
        "a".repeat(stockade_marketplaces::MAX_EVENT_BODY - 11)
    )
    .into_bytes();
    let (status, _, _) = post(
        &server,
        "/hooks/tiktok/shop-1",
        ip,
        exact.clone(),
        Some(&sign(&exact)),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "size is not a signature failure: no ban"
    );
    assert_eq!(sink.seen().len(), 1);
    assert_eq!(failure_lines(&server, ip), 0);
    server.cleanup().await;
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_at_the_limit() {
    let sink = TestSink::new();
    let server = TestServer::spawn(Options {
        hooks: Some(sink.clone()),
        tls: false,
        ..Options::default()
    })
    .await
    .unwrap();
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /hooks/tiktok/shop-1 HTTP/1.1\r\nhost: 127.0.0.1\r\nx-forwarded-for: 203.0.113.41\r\nx-test-signature: 00\r\ntransfer-encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'a'; 16 * 1024];
    // 300 KiB without a declared length; the server may stop reading (and close) early.
    for _ in 0..(300 / 16 + 1) {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        if stream.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        answer.lines().next().unwrap_or_default()
    );
    assert!(sink.seen().is_empty());
    server.cleanup().await;
}

#[tokio::test]
async fn without_a_sink_hooks_answer_503() {
    let server = TestServer::spawn(Options::default()).await.unwrap();
    let body = event_body();
    for path in [
        "/hooks/tiktok/shop-1",
        "/hooks/amazon/shop-1",
        "/hooks/ebay/shop-1",
    ] {
        let (status, headers, answer) = post(
            &server,
            path,
            "203.0.113.50",
            body.clone(),
            Some(&sign(&body)),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(headers["retry-after"], "5");
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(
            answer,
            json!({"error": {"code": "unavailable", "message": "sync is not running"}})
        );
    }
    let res = server
        .client
        .get(server.url("/hooks/ebay/shop-1?challenge_code=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // As the binary's route walk calls them (the path template as is, no credentials):
    // reachable, not asking for a session or a key.
    for spec in ROUTES {
        let Gate::MarketplaceSignature(_) = spec.gate else {
            continue;
        };
        let rb = match spec.method {
            "GET" => server.client.get(server.url(spec.path)),
            "POST" => server.client.post(server.url(spec.path)).json(&json!({})),
            m => panic!("method {m} not covered"),
        };
        let status = rb.send().await.unwrap().status();
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{} {}",
            spec.method,
            spec.path
        );
    }
    server.cleanup().await;
}

#[tokio::test]
async fn an_unavailable_sink_answers_503_with_retry_after_and_is_not_counted() {
    let (server, _sink) = with_sink(1, Backend::Sqlite).await.unwrap();
    let body = event_body();
    let ip = "203.0.113.60";
    for _ in 0..2 {
        let (status, headers, answer) = post(
            &server,
            "/hooks/ebay/down",
            ip,
            body.clone(),
            Some(&sign(&body)),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["retry-after"], "5");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            !text.contains("test store"),
            "the cause stays in the log: {text}"
        );
    }
    // One line for both refusals (at most one a second; the next says how many more).
    let logs = server.logs.text();
    assert!(
        logs.contains(
            "webhook ebay connection=down status=503 unavailable: the test store is down"
        ),
        "{logs}"
    );
    assert_eq!(
        logs.matches("unavailable: the test store is down").count(),
        1,
        "{logs}"
    );
    assert_eq!(failure_lines(&server, ip), 0);
    server.cleanup().await;
}

#[tokio::test]
async fn a_shed_delivery_answers_503_with_retry_after_and_no_line_per_delivery() {
    let (server, _sink) = with_sink(1, Backend::Sqlite).await.unwrap();
    let body = event_body();
    let ip = "203.0.113.61";
    for _ in 0..3 {
        let (status, headers, _) = post(
            &server,
            "/hooks/ebay/busy",
            ip,
            body.clone(),
            Some(&sign(&body)),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["retry-after"], "5");
    }
    // The sink counts and summarises shed deliveries once a second; the server adds no
    // line per delivery.
    let logs = server.logs.text();
    assert!(!logs.contains("connection=busy"), "{logs}");
    assert_eq!(failure_lines(&server, ip), 0);
    server.cleanup().await;
}

#[tokio::test]
async fn a_malformed_delivery_is_400_with_the_sinks_message_only() {
    let (server, sink) = with_sink(1, Backend::Sqlite).await.unwrap();
    let ip = "203.0.113.70";
    for body in [
        format!("not json {MARKER}").into_bytes(),
        format!("[\"{MARKER}\"]").into_bytes(),
    ] {
        let signature = sign(&body);
        let (status, _, answer) =
            post(&server, "/hooks/tiktok/shop-1", ip, body, Some(&signature)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let text = String::from_utf8_lossy(&answer);
        assert_nothing_echoed(&text, &signature);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["error"]["code"], "malformed");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("the body is not")
        );
    }
    assert!(sink.seen().is_empty());
    assert_eq!(failure_lines(&server, ip), 0, "verified, so not counted");
    assert_nothing_echoed(&server.logs.text(), "not-a-signature");
    server.cleanup().await;
}
