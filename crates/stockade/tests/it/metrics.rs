//! `GET /metrics` on the running application (`TestApp`: server, sync, workflow engine
//! on the marketplace simulators), on both backends: after a sandbox order is ingested
//! and pushed to the channels and two workflow executions ran, the counters moved; the
//! text passes `promtool check metrics`; no buyer data, order id or address is in it.
//! The gate: loopback without credentials is admitted, a bad key is refused even from
//! loopback, a key without the metrics permission is refused, an operator key is
//! admitted. (A remote caller without credentials is refused: the server crate's tests
//! check that through `X-Forwarded-For`, and the gate function's unit test.)

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use stockade_access::{Access, AccessConfig, Role};
use stockade_core::Actor;
use stockade_sandbox::{Marketplace, SandboxConfig};
use stockade_store::sql_params;
use stockade_sync::SyncOptions;
use stockade_testkit::{Db, TestApp, require_tool};
use stockade_workflows::exec::ExecutionPayload;

const ACTOR: Actor = Actor::System("test");
const NOTE: &str = "name: metrics-note\ntrigger: manual\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"counted\" }\n";
const BROKEN: &str = "name: metrics-broken\ntrigger: manual\nsteps:\n  - id: stop\n    uses: fail\n    with: { message: \"no stock feed today\" }\n";

/// The value of the sample `name` whose labels include every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        if n != name {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

fn client(app: &TestApp) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(app.sb.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

async fn scrape(app: &TestApp, key: Option<&str>) -> (reqwest::StatusCode, String, String) {
    scrape_as(app, key, "application/openmetrics-text; version=1.0.0").await
}

async fn scrape_as(
    app: &TestApp,
    key: Option<&str>,
    accept: &str,
) -> (reqwest::StatusCode, String, String) {
    let mut req = client(app)
        .get(format!("https://{}/metrics", app.addr))
        .header("accept", accept);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ct, res.text().await.unwrap())
}

async fn run_to_end(app: &TestApp, workflow: &str) -> String {
    let store = app.store();
    let job = ExecutionPayload::new(workflow, json!({}), json!({ "kind": "manual" })).job();
    let id = store.enqueue(&ACTOR, &job).await.unwrap().id;
    let start = Instant::now();
    loop {
        let state: Option<(String,)> = store
            .query_one_as(
                "SELECT state FROM jobs WHERE id = $1",
                sql_params![id.as_str()],
            )
            .await
            .unwrap();
        match state {
            Some((s,)) if s != "queued" && s != "running" => return s,
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{workflow} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `promtool check metrics` on `text`: its complaints, or None when it is not installed.
fn promtool(text: &str) -> Option<(bool, String)> {
    if !require_tool("promtool", "prometheus", "the /metrics format check") {
        return None;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

async fn metrics_move_and_pass_promtool(db: Db) {
    let config = SandboxConfig {
        seed: 17,
        skus: 4,
        initial_quantity: 50,
        rate_limits: false,
        feed_step: Duration::from_millis(20),
        ..SandboxConfig::default()
    };
    let sync = SyncOptions {
        poll_interval: None,
        reconcile_interval: None,
        lift_rate_limits: true,
        ..SyncOptions::default()
    };
    let app = TestApp::start(db, config, sync).await;

    // Before: loopback without a key is admitted; nothing ingested yet.
    let (status, ct, before) = scrape(&app, None).await;
    assert_eq!(status, 200, "{before}");
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(before.ends_with("# EOF\n"), "{before}");
    assert_eq!(
        sample(
            &before,
            "stockade_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &before,
            "stockade_orders_ingested_total",
            &[("channel", "tiktok")]
        ),
        None
    );
    let head_before = sample(&before, "stockade_audit_head_sequence", &[]).unwrap();

    // Activity: orders in through signed webhooks, their quantities pushed, two runs.
    // The listings opened first, so the orders' quantities are pushes of their own.
    app.settle().await;
    let placed = app.sb.generate_orders(Marketplace::TikTok, 3);
    assert!(!placed.is_empty());
    app.settle().await;
    let registry = stockade_workflows::registry::apply(
        app.store(),
        &ACTOR,
        &[
            ("n.yaml".into(), NOTE.into()),
            ("b.yaml".into(), BROKEN.into()),
        ],
    )
    .await
    .unwrap();
    assert!(
        registry.iter().all(|o| o.problems.is_empty()),
        "{registry:?}"
    );
    assert_eq!(run_to_end(&app, "metrics-note").await, "succeeded");
    assert_eq!(run_to_end(&app, "metrics-broken").await, "failed");

    let (status, _, text) = scrape(&app, None).await;
    assert_eq!(status, 200);
    let tiktok = [("channel", "tiktok"), ("marketplace", "tiktok")];
    let ingested = sample(&text, "stockade_orders_ingested_total", &tiktok).unwrap_or(0.0);
    assert!(ingested >= placed.len() as f64, "{ingested}\n{text}");
    for m in ["tiktok", "amazon", "ebay"] {
        let confirmed = sample(
            &text,
            "stockade_pushes_total",
            &[("channel", m), ("outcome", "confirmed")],
        );
        assert!(confirmed.unwrap_or(0.0) > 0.0, "{m}\n{text}");
        let lags = sample(&text, "stockade_push_lag_seconds_count", &[("channel", m)]);
        assert!(lags.unwrap_or(0.0) > 0.0, "{m}\n{text}");
    }
    assert!(
        sample(&text, "stockade_egress_requests_total", &[("class", "2xx")]).unwrap_or(0.0) > 0.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "stockade_workflow_runs_total",
            &[("outcome", "succeeded")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "stockade_workflow_runs_total",
            &[("outcome", "failed")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "stockade_workflow_queue_depth",
            &[("kind", "workflow")]
        ),
        Some(0.0),
        "{text}"
    );
    let head = sample(&text, "stockade_audit_head_sequence", &[]).unwrap();
    assert!(head > head_before, "{head} after {head_before}");
    let real_head = app.store().audit_head().await.unwrap().unwrap().0;
    assert!(head <= real_head as f64);
    assert_eq!(
        sample(&text, "stockade_bans_active", &[("jail", "interactive")]),
        Some(0.0),
        "{text}"
    );
    // The database is reachable (always on SQLite), and nothing failed for want of it.
    assert_eq!(
        sample(&text, "stockade_database_reachable", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "stockade_database_unavailable_total", &[]),
        Some(0.0),
        "{text}"
    );

    // No order id, buyer field or address in the text.
    for o in app.sb.orders(Marketplace::TikTok) {
        assert!(
            !text.contains(&o.order_id),
            "order id {} in the metrics",
            o.order_id
        );
    }
    // (Hosts are the allow-listed marketplace hosts, here the simulators on loopback.)
    for needle in ["@", "ip=", "email", "buyer"] {
        assert!(!text.contains(needle), "{needle:?} in the metrics:\n{text}");
    }

    // Without OpenMetrics in Accept (curl, promtool): the classic text format.
    let (status, ct, classic) = scrape_as(&app, None, "*/*").await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(!classic.contains("# EOF"));
    assert!(
        classic.contains("# TYPE stockade_orders_ingested_total counter"),
        "{classic}"
    );
    assert!(sample(&classic, "stockade_orders_ingested_total", &tiktok).unwrap_or(0.0) >= ingested);
    if let Some((ok, said)) = promtool(&classic) {
        assert!(ok, "promtool check metrics: {said}\n{classic}");
    }

    // The gate with credentials: checked even from loopback.
    let access = Access::new(app.vault.clone(), AccessConfig::default())
        .await
        .unwrap();
    let (status, _, body) = scrape(&app, Some("stk_not_a_key")).await;
    assert_eq!(status, 401, "{body}");
    let (_, auditor) = access
        .create_api_key("audit", Role::Auditor, None, &ACTOR)
        .await
        .unwrap();
    let (status, _, body) = scrape(&app, Some(auditor.expose_secret())).await;
    assert_eq!(status, 403, "{body}");
    let (_, operator) = access
        .create_api_key("scraper", Role::Operator, None, &ACTOR)
        .await
        .unwrap();
    let (status, _, body) = scrape(&app, Some(operator.expose_secret())).await;
    assert_eq!(status, 200, "{body}");
    drop(access);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_and_pass_promtool_sqlite() {
    metrics_move_and_pass_promtool(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_and_pass_promtool_postgres() {
    if let Some(db) = Db::postgres() {
        metrics_move_and_pass_promtool(db).await;
    }
}
