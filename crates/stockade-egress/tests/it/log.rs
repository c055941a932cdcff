//! The request log and events on both backends: what is recorded, what never is, and
//! retention.

use std::sync::Arc;

use stockade_core::SecretString;
use stockade_egress::{Caller, Gateway, Request};
use stockade_store::sql_params;

use crate::harness::{Backend, Pki, TestDb, TestServer, both, config};

const QUERY_SECRET: &str = "QUERYSECRET-5b1e";
const HEADER_SECRET: &str = "HEADERSECRET-77ac";
const BODY_SECRET: &str = "BODYSECRET-c0de";

/// An `egress_log` row: (at_ms, environment, caller, method, host, path_template),
/// (operation, status, outcome), (latency_us, bytes_sent, bytes_received, attempt).
type LogRow = (
    (i64, String, String, String, String, String),
    (String, Option<i64>, String),
    (i64, i64, i64, i64),
);
/// An `events` row: (source, kind, caller, host, path_template, operation),
/// (detail, status, delivered_at_ms).
type EventRow = (
    (String, String, String, String, String, String),
    (String, Option<i64>, Option<i64>),
);

/// Every text column of the rows, one a line.
fn all_text(rows: &[LogRow], events: &[EventRow]) -> String {
    let logs = rows
        .iter()
        .flat_map(|((_, a, b, c, d, e), (f, _, g), _)| [a, b, c, d, e, f, g]);
    let events = events
        .iter()
        .flat_map(|((a, b, c, d, e, f), (g, ..))| [a, b, c, d, e, f, g]);
    logs.chain(events).map(|t| format!("{t}\n")).collect()
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

    let rows: Vec<LogRow> = store
        .query_as(
            "SELECT at_ms, environment, caller, method, host, path_template, operation, status, outcome, latency_us, bytes_sent, bytes_received, attempt FROM egress_log ORDER BY id",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 4, "one row per attempt and per refusal");
    let (
        (at, env, caller, method, h, path),
        (op, status, outcome),
        (latency, sent, received, attempt),
    ) = &rows[0];
    assert!(*at > 1_700_000_000_000);
    assert_eq!(
        [env, caller, method, h, path, op, outcome].map(String::as_str),
        [
            "dev",
            "connection:ebay-main",
            "POST",
            host.as_str(),
            "/ok/orders",
            "searchOrders",
            "ok"
        ]
    );
    assert_eq!(*status, Some(200));
    assert!(*latency > 0);
    assert_eq!(
        *sent,
        format!(r#"{{"secret":"{BODY_SECRET}"}}"#).len() as i64
    );
    assert_eq!(*received, br#"{"ok":true}"#.len() as i64);
    assert_eq!(*attempt, 1);
    for (i, want) in [(1, 1), (2, 2)] {
        let (_, (_, status, outcome), (.., attempt)) = &rows[i];
        assert_eq!(
            (*status, outcome.as_str(), *attempt),
            (Some(503), "http_error", want)
        );
    }
    let ((.., h, _), (_, status, outcome), _) = &rows[3];
    assert_eq!(
        (h.as_str(), outcome.as_str(), *status),
        ("elsewhere.example", "blocked", None)
    );

    let events: Vec<EventRow> = store
        .query_as(
            "SELECT source, kind, caller, host, path_template, operation, detail, status, delivered_at_ms FROM events ORDER BY id",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 2, "the final 503 and the blocked request");
    let ((source, kind, _, _, path, _), (_, status, delivered)) = &events[0];
    assert_eq!(
        [source, kind, path].map(String::as_str),
        ["egress", "server_error", "/status/{code}"]
    );
    assert_eq!((*status, *delivered), (Some(503), None));
    let ((_, kind, _, h, ..), _) = &events[1];
    assert_eq!(
        (kind.as_str(), h.as_str()),
        ("blocked", "elsewhere.example")
    );

    let text = all_text(&rows, &events);
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
        async move { store.count(table, vec![]).await.unwrap() }
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
