//! Workflow webhooks through the real server: a good HMAC is `202 {"execution"}` with
//! one job carrying the body; a bad or missing signature is 401, enqueues nothing and
//! counts in the `webhook` jail until the address is banned; an unknown path is 404 and
//! not counted; a body that is not JSON is 400; a 100 MB declared body is 413 before it
//! is read; an API-key webhook takes a valid key only; `respond: result` answers with
//! the execution's output.

use std::time::Duration;

use aws_lc_rs::hmac;
use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade_core::{Actor, SecretString};
use stockade_store::Store;
use stockade_vault::{CredentialScopes, KeyOwner, NewCredential};
use stockade_workflows::engine::{Engine, EngineConfig};
use stockade_workflows::registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Backend, Options, TestServer};

const SECRET: &str = "whsec-test-4e1f0c9a";

const ACCEPTED: &str = "name: supplier-stock\ntrigger:\n  webhook:\n    path: supplier/stock\n    auth: { hmac: supplier-hook }\npermissions: { credentials: [supplier-hook] }\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"supplier {{ trigger.body.supplier }}\" }\n";
const RESULT: &str = "name: quote\ntrigger:\n  webhook:\n    path: quote\n    auth: { hmac: supplier-hook }\n    respond: result\npermissions: { credentials: [supplier-hook] }\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"quote\" }\n";
const KEYED: &str = "name: keyed\ntrigger:\n  webhook:\n    path: keyed\n    auth: api_key\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"keyed\" }\n";

async fn setup(options: Options) -> Option<TestServer> {
    let server = TestServer::spawn(options).await?;
    let store = server.vault.store().clone();
    let files: Vec<(String, String)> =
        [("a.yaml", ACCEPTED), ("r.yaml", RESULT), ("k.yaml", KEYED)]
            .iter()
            .map(|(f, t)| ((*f).to_owned(), (*t).to_owned()))
            .collect();
    let out = registry::apply(&store, &Actor::User("usr_ops".into()), &files)
        .await
        .unwrap();
    for o in &out {
        assert!(
            matches!(o.applied, registry::Applied::Stored { .. }),
            "{o:?}"
        );
    }
    server
        .vault
        .put_credential(
            &NewCredential {
                name: "supplier-hook",
                kind: "webhook_hmac",
                secret: &SecretString::from(SECRET.to_owned()),
                owner: &KeyOwner::system(),
                // A webhook's key must be scoped to the workflows that use it.
                scopes: &CredentialScopes {
                    workflows: vec!["supplier-stock".into(), "quote".into()],
                    hosts: vec![],
                },
                account: None,
            },
            &Actor::System("test"),
        )
        .await
        .unwrap();
    Some(server)
}

fn sign(body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

async fn post(
    server: &TestServer,
    path: &str,
    ip: &str,
    body: &[u8],
    signature: Option<&str>,
) -> (StatusCode, Value) {
    let mut rb = server
        .client
        .post(server.url(path))
        .header("x-forwarded-for", ip)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        rb = rb.header("x-stockade-signature", s);
    }
    let res = rb.send().await.unwrap();
    let status = res.status();
    let bytes = res.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn jobs(store: &Store) -> Vec<Value> {
    let rows: Vec<String> = store
        .query_as(
            "SELECT payload FROM jobs WHERE kind = 'workflow' ORDER BY created_at_ms",
            vec![],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect()
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

async fn hmac_webhooks(backend: Backend) {
    let Some(server) = setup(Options {
        backend,
        maxretry: 3,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let store = server.vault.store().clone();
    let body = br#"{"supplier":"acme","sku":"A-1","units":12}"#;

    // A good signature: 202 with the execution id, one job with the body as input.
    let (status, answer) = post(
        &server,
        "/hooks/workflows/supplier/stock?batch=7",
        "203.0.113.60",
        body,
        Some(&sign(body)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id = answer["execution"].as_str().unwrap().to_owned();
    let queued = jobs(&store).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["workflow"], json!("supplier-stock"));
    assert_eq!(queued[0]["version"], json!(1));
    assert_eq!(queued[0]["trigger"]["body"]["supplier"], json!("acme"));
    assert_eq!(queued[0]["trigger"]["path"], json!("supplier/stock"));
    assert_eq!(queued[0]["trigger"]["query"], json!({ "batch": "7" }));
    assert_eq!(
        queued[0]["trigger"]["headers"],
        json!({ "content-type": "application/json" }),
        "no signature, no forwarded-for"
    );
    assert!(store.job(&id).await.unwrap().is_some());

    // Not JSON (signed): 400, nothing enqueued, not counted.
    let bad_json = b"{\"supplier\": ";
    let (status, answer) = post(
        &server,
        "/hooks/workflows/supplier/stock",
        "203.0.113.61",
        bad_json,
        Some(&sign(bad_json)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{answer}"
    );

    // Unknown or malformed paths: 404, not counted.
    for path in [
        "/hooks/workflows/nope",
        "/hooks/workflows/supplier//stock",
        "/hooks/workflows/Supplier/stock",
    ] {
        let (status, _) = post(&server, path, "203.0.113.61", body, Some(&sign(body))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(failure_lines(&server, "203.0.113.61"), 0);
    assert_eq!(jobs(&store).await.len(), 1);

    // Bad, missing and replayed-stale signatures: 401, nothing enqueued, counted; the
    // third bans the address from the webhook routes.
    let ip = "203.0.113.62";
    let forged = sign(b"another body");
    for signature in [Some(forged.as_str()), None, Some("sha256=zz")] {
        let (status, answer) = post(
            &server,
            "/hooks/workflows/supplier/stock",
            ip,
            body,
            signature,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    }
    assert_eq!(failure_lines(&server, ip), 3);
    assert_eq!(jobs(&store).await.len(), 1);
    assert!(
        server
            .access
            .banned(ip.parse().unwrap(), stockade_access::Jail::Webhook)
            .is_some(),
        "banned after maxretry"
    );
    let (status, _) = post(
        &server,
        "/hooks/workflows/supplier/stock",
        ip,
        body,
        Some(&sign(body)),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a banned address is refused even when signed"
    );

    // A timestamped signature: `TIMESTAMP.BODY`; an old timestamp is refused.
    let now = stockade_core::time::now_ms() / 1000;
    for (ts, expect) in [
        (now, StatusCode::ACCEPTED),
        (now - 3600, StatusCode::UNAUTHORIZED),
    ] {
        let mut signed = format!("{ts}.").into_bytes();
        signed.extend_from_slice(body);
        let res = server
            .client
            .post(server.url("/hooks/workflows/supplier/stock"))
            .header("x-forwarded-for", "203.0.113.63")
            .header("x-stockade-signature", sign(&signed))
            .header("x-stockade-timestamp", ts.to_string())
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expect);
    }
    assert_eq!(jobs(&store).await.len(), 2);

    // An API-key webhook without a key, or with a wrong one: 401, counted.
    let (status, _) = post(
        &server,
        "/hooks/workflows/keyed",
        "203.0.113.64",
        b"{}",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(failure_lines(&server, "203.0.113.64"), 1);
    // A key of another environment: refused and counted like any bad key, and audited
    // (and alerted) as on the API.
    let prod_key = format!("stk_prod_{}_{}", "a1".repeat(8), "b2".repeat(32));
    let res = server
        .client
        .post(server.url("/hooks/workflows/keyed"))
        .header("x-forwarded-for", "203.0.113.64")
        .header("authorization", format!("Bearer {prod_key}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(failure_lines(&server, "203.0.113.64"), 2);
    let audited: i64 = store
        .count(
            "SELECT COUNT(*) FROM audit WHERE action = 'security.apikey_wrong_environment'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(audited, 1);
    assert!(
        !server.logs.text().contains(&prod_key),
        "the key is never logged"
    );
    let logs = server.logs.text();
    assert!(
        logs.contains("workflow webhook path=supplier/stock status=202 outcome=accepted"),
        "{logs}"
    );
    assert!(!logs.contains("acme"), "the body is never logged");

    // A second workflow applied later with the same path: nothing runs, 409.
    let twin = KEYED.replace("name: keyed", "name: keyed-twin");
    registry::apply(
        &store,
        &Actor::User("usr_ops".into()),
        &[("twin.yaml".into(), twin)],
    )
    .await
    .unwrap();
    // The webhook reads the registry at most this long ago.
    tokio::time::sleep(stockade_workflows::triggers::WEBHOOK_TARGETS_MAX_AGE).await;
    let before = jobs(&store).await.len();
    let (status, _) = post(
        &server,
        "/hooks/workflows/keyed",
        "203.0.113.65",
        b"{}",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(jobs(&store).await.len(), before);
    server.cleanup().await;
}

async fn result_mode_answers_with_the_output(backend: Backend) {
    let Some(server) = setup(Options {
        backend,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let store = server.vault.store().clone();
    let engine = Engine::start(
        store.clone(),
        EngineConfig {
            workers: 1,
            lease_ms: 5_000,
            poll: Duration::from_millis(50),
            reap_every: Duration::from_millis(500),
            ..EngineConfig::default()
        },
    );
    let body = br#"{"sku":"A-1"}"#;
    let (status, answer) = post(
        &server,
        "/hooks/workflows/quote",
        "203.0.113.70",
        body,
        Some(&sign(body)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], json!("succeeded"));
    assert_eq!(answer["output"], json!({ "noted": true }));
    let id = answer["execution"].as_str().unwrap();
    assert_eq!(
        store.job(id).await.unwrap().unwrap().state,
        stockade_store::JobState::Succeeded
    );
    engine.stop(Duration::from_secs(2)).await;
    server.cleanup().await;
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(crate::harness::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(crate::harness::Backend::Postgres).await
            }
        }
    )*};
}

both!(hmac_webhooks, result_mode_answers_with_the_output);

#[tokio::test]
async fn a_100_mb_body_is_refused_before_it_is_read() {
    let server = setup(Options {
        tls: false,
        ..Options::default()
    })
    .await
    .unwrap();
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /hooks/workflows/supplier/stock HTTP/1.1\r\nhost: 127.0.0.1\r\nx-forwarded-for: 203.0.113.80\r\nx-stockade-signature: sha256=00\r\ncontent-length: {}\r\n\r\n",
        100 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b'a'; 4096]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(jobs(server.vault.store()).await.is_empty());
    assert_eq!(failure_lines(&server, "203.0.113.80"), 0);
    server.cleanup().await;
}
