//! The library in `examples/workflows/` runs, on both backends: each example is applied
//! through the registry as shipped (only connection names are changed to the test's),
//! started the way it is in production — events through the trigger subscriber, a
//! schedule tick as the scheduler's trigger data — and run by an executor on the stored
//! definitions, with alerts going through the real pipeline to the loopback DingTalk
//! and Feishu simulators (`alert_rig`). The reports (`examples_reports`) and the order
//! pull (`examples_pull`) have their own files.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use stockade_core::Actor;
use stockade_core::event::{ConnectionRef, Event};
use stockade_store::{AuditDetails, AuditEntry, Change, JobState, Store, sql_params};
use stockade_workflows::engine::StoredDefinitions;
use stockade_workflows::exec::{AlertChannels, ExecutionPayload, Executor, JOB_KIND, RunOutcome};
use stockade_workflows::registry::{self, Applied};
use stockade_workflows::triggers::EventTriggers;

use crate::alert_rig::{DING, FEISHU, Rig};
use crate::exec_support::{Backend, Env, both, open_vault, put_credential};

both!(
    nocodb_order_mirror_copies_new_orders_without_buyer_data,
    low_stock_feishu_tells_feishu_at_each_skus_own_threshold,
    error_escalation_pages_once_on_the_third_failure_in_ten_minutes,
    token_expiry_reminder_reminds_on_feishu_and_notes_it,
    order_created_note_notes_every_order_and_alerts_on_large_ones
);

/// The text of `examples/workflows/NAME.yaml`, with `renames` (from, to) applied.
pub fn example(name: &str, renames: &[(&str, &str)]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/workflows")
        .join(format!("{name}.yaml"));
    let mut text = std::fs::read_to_string(&path).expect("example");
    for (from, to) in renames {
        text = text.replace(from, to);
    }
    text
}

/// Apply `texts` through the registry (dev: active at once); each must be stored.
pub async fn apply(store: &Store, texts: &[String]) {
    let files: Vec<(String, String)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("example-{i}.yaml"), t.clone()))
        .collect();
    let actor = Actor::System("test");
    for o in registry::apply(store, &actor, &files).await.expect("apply") {
        assert!(o.problems.is_empty(), "{}: {:?}", o.file, o.problems);
        assert!(
            matches!(o.applied, Applied::Stored { .. }),
            "{:?}",
            o.applied
        );
    }
}

/// An executor on the stored definitions that knows the rig's two alert channels.
pub struct Runner {
    pub defs: Arc<StoredDefinitions>,
    pub exec: Executor,
}

impl Runner {
    pub fn new(store: &Store) -> Runner {
        let defs = Arc::new(StoredDefinitions::new(store.clone()));
        let channels = AlertChannels::fixed(vec![DING.into(), FEISHU.into()]);
        let exec = Executor::new(store.clone(), defs.clone()).with_alert_channels(channels);
        Runner { defs, exec }
    }

    /// With the egress gateway and vault (`http.request`, `nocodb.*`).
    pub fn with_services(
        store: &Store,
        egress: stockade_egress::Gateway,
        vault: Arc<stockade_vault::Vault>,
    ) -> Runner {
        let r = Runner::new(store);
        Runner {
            defs: r.defs,
            exec: r.exec.with_services(egress, vault),
        }
    }

    /// Run every queued workflow job to its end, oldest first: (workflow, outcome).
    pub async fn drain(&self, store: &Store) -> Vec<(String, RunOutcome)> {
        let mut out = Vec::new();
        while let Some(lease) = store.claim("test", &[JOB_KIND], 30_000).await.unwrap() {
            let name = lease.payload["workflow"].as_str().unwrap_or("").to_owned();
            self.defs.prepare(&lease.payload).await.unwrap();
            out.push((name, self.exec.run_claimed(lease).await.unwrap()));
        }
        out
    }
}

/// Enqueue a run of `workflow` as the scheduler would for a tick at `tick_ms`; its id.
pub async fn enqueue_tick(store: &Store, workflow: &str, tick_ms: i64) -> String {
    let at = stockade_workflows::triggers::rfc3339(tick_ms);
    let trigger = json!({ "kind": "schedule", "at": at, "scheduled_at": at,
                          "previous_fire": null, "tick_ms": tick_ms, "missed": 0, "catch_up": false });
    let job = ExecutionPayload::new(workflow, json!({}), trigger).job();
    store
        .enqueue(&Actor::System("test"), &job)
        .await
        .unwrap()
        .id
}

/// The outputs stored in the journal of `workflow`'s executions, as one text.
pub async fn journal_text(store: &Store) -> String {
    let rows: Vec<(Option<String>,)> = store
        .query_as("SELECT output FROM job_steps ORDER BY job_id, seq", vec![])
        .await
        .unwrap();
    format!("{rows:?}")
}

async fn low_stock_feishu_tells_feishu_at_each_skus_own_threshold(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let rig = Rig::start(&env).await;
    apply(&env.store, &[example("low-stock-feishu", &[])]).await;
    let events = EventTriggers::subscribe(env.store.clone()).await.unwrap();
    // MUG has a reorder point of its own (20); CUP uses the global one (5).
    let csv = "sku,on_hand,low_stock_threshold\nMUG-RED-350,30,20\nCUP-BLUE-250,30,\n";
    stockade_sync::catalog::import_csv(&env.store, csv, &Actor::System("test"))
        .await
        .unwrap();
    for sku in ["MUG-RED-350", "CUP-BLUE-250"] {
        let a = stockade_sync::stock::Adjustment {
            sku,
            delta: -11,
            reason: "breakage",
            ukey: None,
        };
        let (change, _) = stockade_sync::stock::adjust_change(&env.store, &a)
            .await
            .unwrap();
        env.store
            .commit(&Actor::System("test"), vec![change])
            .await
            .unwrap();
    }
    while events.handle_batch(100).await.unwrap() > 0 {}
    let runs = Runner::new(&env.store).drain(&env.store).await;
    assert_eq!(
        runs,
        vec![("low-stock-feishu".to_owned(), RunOutcome::Succeeded)],
        "one SKU crossed its own threshold"
    );
    let got = rig
        .wait_text(FEISHU, &["Stockade low stock: MUG-RED-350"])
        .await;
    assert!(got.iter().all(|m| !m.contains("CUP-BLUE-250")), "{got:?}");
    assert!(
        got.iter().any(|m| m.contains("reorder point 20")),
        "{got:?}"
    );
    assert!(rig.got(DING).is_empty(), "only the named channel");
    rig.stop().await;
    env.cleanup().await;
}

const FLAKY: &str = r#"
name: flaky-supplier-sync
trigger: manual
on_error: builtin.alert
steps:
  - id: call
    uses: fail
    with: { message: "supplier API answered 502" }
"#;

async fn error_escalation_pages_once_on_the_third_failure_in_ten_minutes(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let rig = Rig::start(&env).await;
    apply(
        &env.store,
        &[example("error-escalation", &[]), FLAKY.to_owned()],
    )
    .await;
    let events = EventTriggers::subscribe(env.store.clone()).await.unwrap();
    let runner = Runner::new(&env.store);
    for _ in 0..4 {
        let job = ExecutionPayload::new("flaky-supplier-sync", json!({}), json!({})).job();
        env.store
            .enqueue(&Actor::System("test"), &job)
            .await
            .unwrap();
        let runs = runner.drain(&env.store).await;
        assert!(matches!(runs[0].1, RunOutcome::Failed(_)), "{runs:?}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    while events.handle_batch(100).await.unwrap() > 0 {}
    let runs = runner.drain(&env.store).await;
    assert_eq!(runs.len(), 4, "one escalation run per failure: {runs:?}");
    assert!(
        runs.iter()
            .all(|(n, o)| n == "error-escalation" && *o == RunOutcome::Succeeded)
    );
    let got = rig
        .wait_text(DING, &["3 workflow failures in 10 minutes"])
        .await;
    let pages = got
        .iter()
        .filter(|m| m.contains("3 workflow failures in 10 minutes"))
        .count();
    assert_eq!(pages, 1, "paged once: {got:?}");
    assert!(got.iter().any(|m| m.contains("CRITICAL")), "{got:?}");
    let counts: Vec<(String,)> = env
        .store
        .query_as(
            "SELECT s.output FROM job_steps s WHERE s.step_id = 'recent' ORDER BY s.job_id",
            vec![],
        )
        .await
        .unwrap();
    let mut seen: Vec<i64> = counts
        .iter()
        .map(|(o,)| {
            serde_json::from_str::<Value>(o).unwrap()["count"]
                .as_i64()
                .unwrap()
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![1, 2, 3, 4],
        "each run counts the failures up to its own"
    );
    assert!(
        !rig.got(FEISHU)
            .iter()
            .any(|m| m.contains("3 workflow failures")),
        "the page goes to DingTalk only"
    );
    rig.stop().await;
    env.cleanup().await;
}

async fn token_expiry_reminder_reminds_on_feishu_and_notes_it(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let rig = Rig::start(&env).await;
    apply(&env.store, &[example("token-expiry-reminder", &[])]).await;
    let events = EventTriggers::subscribe(env.store.clone()).await.unwrap();
    let event = Event::AuthorizationExpiring(ConnectionRef {
        connection: "tiktok-sg".into(),
    });
    let change = Change::new(
        stockade_store::events::append(stockade_core::time::now_ms(), &event),
        AuditEntry::new("test.event", "connection:tiktok-sg", AuditDetails::new()),
    );
    env.store
        .commit(&Actor::System("test"), vec![change])
        .await
        .unwrap();
    while events.handle_batch(100).await.unwrap() > 0 {}
    let runs = Runner::new(&env.store).drain(&env.store).await;
    assert_eq!(
        runs,
        vec![("token-expiry-reminder".to_owned(), RunOutcome::Succeeded)]
    );
    rig.wait_text(FEISHU, &["Stockade: re-authorize tiktok-sg"])
        .await;
    let notes = env
        .store
        .count(
            "SELECT COUNT(*) FROM audit WHERE action = 'workflow.note' AND details LIKE $1",
            sql_params!["%re-authorization reminder%"],
        )
        .await
        .unwrap();
    assert_eq!(notes, 1);
    let state: Vec<(String,)> = env
        .store
        .query_as("SELECT state FROM jobs", vec![])
        .await
        .unwrap();
    assert!(state.iter().all(|(s,)| s == JobState::Succeeded.as_str()));
    rig.stop().await;
    env.cleanup().await;
}

async fn nocodb_order_mirror_copies_new_orders_without_buyer_data(b: Backend) {
    use crate::examples_reports::{BUYER, STREET, ingest, order, shop};
    use stockade_core::order::OrderStatus;
    let Some(env) = Env::new(b).await else { return };
    let vault = open_vault(&env).await;
    let token = "nc-Mirr0r-t0ken-5ecret-77aa";
    put_credential(&vault, "nocodb-token", token, &["*"], &["127.0.0.1"]).await;
    let sim = stockade_sandbox::NocoSim::start(token)
        .await
        .expect("simulator");
    let table = sim.add_table("orders");
    let mut cfg = stockade_egress::EgressConfig::new(stockade_core::Environment::Dev);
    cfg.allowed_hosts = vec![sim.base_url.trim_start_matches("https://").to_owned()];
    cfg.extra_root_pems = vec![sim.ca_pem.clone()];
    cfg.max_attempts = 1;
    let gateway = stockade_egress::Gateway::new(cfg, Some(env.store.clone())).expect("gateway");
    shop(&env.store).await;
    let text = example(
        "nocodb-order-mirror",
        &[
            ("https://nocodb.example.com", sim.base_url.as_str()),
            ("[nocodb.example.com]", "[127.0.0.1]"),
            ("m1abc2def3", table.as_str()),
        ],
    );
    apply(&env.store, &[text]).await;
    let events = EventTriggers::subscribe(env.store.clone()).await.unwrap();
    let now = stockade_core::time::now_ms();
    let o = order(
        "T-77",
        OrderStatus::Placed,
        now,
        &[("MUG-RED-350", 2), ("CUP-BLUE-250", 1)],
    );
    ingest(&env.store, &vault, 1, "tiktok-sg", &o).await;
    // A re-delivery is not a new order: no second row.
    ingest(&env.store, &vault, 1, "tiktok-sg", &o).await;
    while events.handle_batch(100).await.unwrap() > 0 {}
    let runner = Runner::with_services(&env.store, gateway, vault.clone());
    let runs = runner.drain(&env.store).await;
    assert_eq!(
        runs,
        vec![("nocodb-order-mirror".to_owned(), RunOutcome::Succeeded)]
    );
    let rows = sim.rows(&table);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["order_id"], "T-77");
    assert_eq!(row["channel"], "tiktok-sg");
    assert_eq!(row["status"], "placed");
    assert_eq!(row["line_skus"], "MUG-RED-350, CUP-BLUE-250");
    assert_eq!(row["units"], 3);
    assert_eq!(row["lines"][0]["sku"], "MUG-RED-350", "{row}");
    let all = format!("{rows:?}{}", journal_text(&env.store).await);
    for secret in [BUYER, STREET, token] {
        assert!(
            !all.contains(secret),
            "{secret} reached NocoDB or the journal: {all}"
        );
    }
    // Not even a masked buyer field is mirrored (the journal keeps order.get's masks).
    assert!(!format!("{rows:?}").contains("masked"), "{rows:?}");
    sim.shutdown().await;
    env.cleanup().await;
}

async fn order_created_note_notes_every_order_and_alerts_on_large_ones(b: Backend) {
    use crate::examples_reports::{BUYER, ingest, order, shop};
    use stockade_core::order::OrderStatus;
    let Some(env) = Env::new(b).await else { return };
    let rig = Rig::start(&env).await;
    let vault = rig.vault.clone();
    shop(&env.store).await;
    // Enough stock that no oversell alert joins the large-order alert in a digest.
    let csv = "sku,on_hand\nMUG-RED-350,500\nCUP-BLUE-250,500\n";
    stockade_sync::catalog::import_csv(&env.store, csv, &Actor::System("test"))
        .await
        .unwrap();
    apply(&env.store, &[example("order-created-note", &[])]).await;
    let events = EventTriggers::subscribe(env.store.clone()).await.unwrap();
    let now = stockade_core::time::now_ms();
    let small = order("T-SMALL", OrderStatus::Placed, now, &[("MUG-RED-350", 2)]);
    let large = order(
        "T-LARGE",
        OrderStatus::Placed,
        now,
        &[("MUG-RED-350", 15), ("CUP-BLUE-250", 9)],
    );
    ingest(&env.store, &vault, 1, "tiktok-sg", &small).await;
    ingest(&env.store, &vault, 1, "tiktok-sg", &large).await;
    while events.handle_batch(100).await.unwrap() > 0 {}
    let runs = Runner::new(&env.store).drain(&env.store).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(
        runs.iter().all(|(_, o)| *o == RunOutcome::Succeeded),
        "{runs:?}"
    );
    let notes: Vec<(String,)> = env
        .store
        .query_as(
            "SELECT details FROM audit WHERE action = 'workflow.note' ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    let text = format!("{notes:?}");
    assert!(
        text.contains("order T-SMALL") && text.contains("order T-LARGE"),
        "{text}"
    );
    assert!(text.contains("2 line(s) on tiktok-sg"), "{text}");
    // Only the 24-unit order is large; the alert goes to every channel.
    let got = rig
        .wait_text(DING, &["Order T-LARGE on tiktok-sg: 24 units"])
        .await;
    assert!(got.iter().all(|m| !m.contains("T-SMALL")), "{got:?}");
    assert!(!format!("{got:?}{text}").contains(BUYER));
    rig.stop().await;
    env.cleanup().await;
}
