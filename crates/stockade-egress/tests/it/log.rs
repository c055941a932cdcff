//! The request log and events on both backends: what is recorded, what never is, and
//! retention.

use std::sync::Arc;

use stockade_core::SecretString;
use stockade_egress::{Caller, Gateway, Request};
use stockade_store::{SqlRow, sql_params};

use crate::harness::{Backend, Pki, TestDb, TestServer, both, config};

const QUERY_SECRET: &str = "QUERYSECRET-5b1e";
const HEADER_SECRET: &str = "HEADERSECRET-77ac";
const BODY_SECRET: &str = "BODYSECRET-c0de";

fn all_text(rows: &[SqlRow], cols: usize) -> String {
    let mut s = String::new();
    for r in rows {
        for i in 0..cols {
            if let Ok(Some(t)) = r.opt_text(i) {
                s.push_str(&t);
                s.push('\n');
            }
        }
    }
    s
}

async fn log_rows_name_the_request_but_hold_no_secret(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init().await;
    let pki = Arc::new(Pki::new());
    let srv = TestServer::start(pki.clone()).await;
    let host = srv.host();
    let mut cfg = config(&pki, std::slice::from_ref(&host));
    cfg.max_attempts = 2;
    cfg.breaker_failures = 100;
    let g = Gateway::new(cfg, Some(store.clone())).unwrap();
    let c = g.client(Caller::Connection("ebay-main".into()), &[host.as_str()]);
    let token = SecretString::from(format!("Bearer {HEADER_SECRET}"));

    let r = c
        .send(
            Request::post(
                srv.url(&format!("/ok/orders?token={QUERY_SECRET}&limit=5")),
                "/ok/orders",
                "searchOrders",
            )
            .secret_header("authorization", &token)
            .header("x-api-key", HEADER_SECRET)
            .json(&serde_json::json!({ "secret": BODY_SECRET })),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // A 503 retried once, then a blocked request with a secret in its query.
    c.send(
        Request::get(
            srv.url(&format!("/status/503?sig={QUERY_SECRET}")),
            "/status/{code}",
            "getOrder",
        )
        .secret_header("authorization", &token),
    )
    .await
    .unwrap();
    let _ = c
        .send(Request::get(
            format!("https://elsewhere.example/leak?token={QUERY_SECRET}"),
            "/leak",
            "leak",
        ))
        .await;
    g.flush().await.unwrap();

    let rows = store
        .query(
            "SELECT at_ms, environment, caller, method, host, path_template, operation, status, outcome, latency_us, bytes_sent, bytes_received, attempt FROM egress_log ORDER BY id",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 4, "one row per attempt and per refusal");
    let r0 = &rows[0];
    assert!(r0.int(0).unwrap() > 1_700_000_000_000);
    assert_eq!(r0.text(1).unwrap(), "dev");
    assert_eq!(r0.text(2).unwrap(), "connection:ebay-main");
    assert_eq!(r0.text(3).unwrap(), "POST");
    assert_eq!(r0.text(4).unwrap(), host);
    assert_eq!(r0.text(5).unwrap(), "/ok/orders");
    assert_eq!(r0.text(6).unwrap(), "searchOrders");
    assert_eq!(r0.opt_int(7).unwrap(), Some(200));
    assert_eq!(r0.text(8).unwrap(), "ok");
    assert!(r0.int(9).unwrap() > 0);
    assert_eq!(
        r0.int(10).unwrap(),
        format!(r#"{{"secret":"{BODY_SECRET}"}}"#).len() as i64
    );
    assert_eq!(r0.int(11).unwrap(), br#"{"ok":true}"#.len() as i64);
    assert_eq!(r0.int(12).unwrap(), 1);
    for (i, attempt) in [(1, 1), (2, 2)] {
        assert_eq!(rows[i].opt_int(7).unwrap(), Some(503));
        assert_eq!(rows[i].text(8).unwrap(), "http_error");
        assert_eq!(rows[i].int(12).unwrap(), attempt);
    }
    assert_eq!(rows[3].text(4).unwrap(), "elsewhere.example");
    assert_eq!(rows[3].text(8).unwrap(), "blocked");
    assert_eq!(rows[3].opt_int(7).unwrap(), None);

    let events = store
        .query(
            "SELECT source, kind, caller, host, path_template, operation, detail, status, delivered_at_ms FROM events ORDER BY id",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 2, "the final 503 and the blocked request");
    assert_eq!(events[0].text(0).unwrap(), "egress");
    assert_eq!(events[0].text(1).unwrap(), "server_error");
    assert_eq!(events[0].text(4).unwrap(), "/status/{code}");
    assert_eq!(events[0].opt_int(7).unwrap(), Some(503));
    assert_eq!(events[0].opt_int(8).unwrap(), None);
    assert_eq!(events[1].text(1).unwrap(), "blocked");
    assert_eq!(events[1].text(3).unwrap(), "elsewhere.example");

    let mut text = all_text(&rows, 13);
    text.push_str(&all_text(&events, 9));
    for secret in [QUERY_SECRET, HEADER_SECRET, BODY_SECRET, "token=", "?"] {
        assert!(!text.contains(secret), "{secret} in the log: {text}");
    }
    if let Some(bytes) = db.sqlite_bytes() {
        for secret in [QUERY_SECRET, HEADER_SECRET, BODY_SECRET] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} is in the database file"
            );
        }
    }
    // The server did get them (the test planted them for real).
    let hit = srv.hits().into_iter().next().unwrap();
    assert!(hit.query.unwrap().contains(QUERY_SECRET));
    drop(g);
    store.close().await;
    db.cleanup().await;
}

async fn old_rows_are_pruned(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init().await;
    let pki = Arc::new(Pki::new());
    let srv = TestServer::start(pki.clone()).await;
    let host = srv.host();
    let g = Gateway::new(
        config(&pki, std::slice::from_ref(&host)),
        Some(store.clone()),
    )
    .unwrap();
    g.flush().await.unwrap();
    let day = 86_400_000_i64;
    let now = stockade_core::time::now_ms();
    for age_days in [91, 120, 89] {
        store
            .write_unaudited(
                "INSERT INTO egress_log (at_ms, environment, caller, method, host, path_template, operation, status, outcome, latency_us, bytes_sent, bytes_received, attempt) VALUES ($1, 'dev', 'system:test', 'GET', 'h', '/', 'op', NULL, 'ok', 1, 0, 0, 1)",
                sql_params![now - age_days * day],
            )
            .await
            .unwrap();
        // Routed by the alert pipeline (delivered_at_ms set).
        store
            .write_unaudited(
                "INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail, delivered_at_ms) VALUES ($1, 'egress', 'blocked', 'system:test', 'h', '/', 'op', NULL, 'old', $1)",
                sql_params![now - age_days * day],
            )
            .await
            .unwrap();
    }
    // Events the alert pipeline has not routed are kept for a second retention period.
    for age_days in [120, 200] {
        store
            .write_unaudited(
                "INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail) VALUES ($1, 'egress', 'blocked', 'system:test', 'h', '/', 'op', NULL, 'unrouted')",
                sql_params![now - age_days * day],
            )
            .await
            .unwrap();
    }
    g.client(Caller::System("test"), &[host.as_str()])
        .send(Request::get(srv.url("/ok"), "/ok", "ok"))
        .await
        .unwrap();
    g.flush().await.unwrap();
    assert_eq!(
        g.prune().await.unwrap(),
        5,
        "two log rows and two routed events past 90 days, one unrouted event past 180 days"
    );
    let count = |table: &'static str| {
        let store = store.clone();
        async move { store.query(table, vec![]).await.unwrap()[0].int(0).unwrap() }
    };
    assert_eq!(count("SELECT COUNT(*) FROM egress_log").await, 2);
    assert_eq!(count("SELECT COUNT(*) FROM events").await, 2);
    assert_eq!(
        count("SELECT COUNT(*) FROM events WHERE delivered_at_ms IS NULL").await,
        1
    );
    drop(g);
    store.close().await;
    db.cleanup().await;
}

both!(
    log_rows_name_the_request_but_hold_no_secret,
    old_rows_are_pruned
);

#[tokio::test]
async fn a_gateway_refuses_a_store_of_another_environment() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let store = db.init().await;
    let pki = Pki::new();
    let mut cfg = config(&pki, &[]);
    cfg.environment = stockade_core::Environment::Prod;
    let err = Gateway::new(cfg, Some(store.clone())).unwrap_err();
    assert!(err.to_string().contains("environment"), "{err}");
    store.close().await;
    db.cleanup().await;
}
