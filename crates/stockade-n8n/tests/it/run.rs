//! Converted workflows run on the executor (fresh SQLite and PostgreSQL stores, the
//! loopback sandbox for HTTP) and give the results the original n8n logic gives: n8n's
//! own test workflows carry those results as pinned data.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stockade_core::{Actor, Environment};
use stockade_egress::{EgressConfig, Gateway};
use stockade_sandbox::{Bots, BotsConfig};
use stockade_store::{StepOutput, StepRecord, Store, StoreOptions};
use stockade_testkit::Db;
use stockade_workflows::Workflow;
use stockade_workflows::exec::{Catalog, ExecutionPayload, Executor, JOB_KIND, RunOutcome};

use crate::{fixture, import};

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

both!(
    the_converted_merge_gives_n8ns_pinned_result,
    the_converted_if_routes_items_as_n8n_did,
    the_converted_switch_routes_items_as_n8n_did,
    the_converted_edit_fields_give_n8ns_pinned_result,
    the_converted_order_sync_reserves_and_alerts_as_n8n_did,
    an_unsupported_step_fails_naming_node_and_type,
    the_converted_webhook_answers_what_n8n_answered,
    the_converted_reminder_builds_n8ns_fields_then_stops_at_the_email,
);

struct Env {
    db: Db,
    store: Store,
}

async fn env(b: Backend) -> Option<Env> {
    let db = match b {
        Backend::Sqlite => Db::sqlite(),
        Backend::Postgres => Db::postgres()?,
    };
    let store = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
        .await
        .expect("init")
        .0;
    Some(Env { db, store })
}

impl Env {
    async fn run(
        &self,
        exec: &Executor,
        name: &str,
        trigger: Value,
    ) -> (RunOutcome, Vec<StepRecord>) {
        let job = ExecutionPayload::new(name, json!({}), trigger).job();
        let id = self
            .store
            .enqueue(&Actor::System("test"), &job)
            .await
            .expect("enqueue")
            .id;
        let lease = self
            .store
            .claim("w1", &[JOB_KIND], 30_000)
            .await
            .expect("claim")
            .expect("a job");
        let outcome = exec.run_claimed(lease).await.expect("runs");
        (outcome, self.store.journal(&id).await.expect("journal"))
    }

    async fn cleanup(self) {
        self.store.close().await;
        self.db.cleanup().await;
    }
}

fn catalog(import: &stockade_n8n::Import) -> Arc<Catalog> {
    let mut c = Catalog::new();
    for w in &import.workflows {
        c = c.with(Workflow::parse(&w.yaml).expect("converted YAML parses"), 1);
    }
    Arc::new(c)
}

fn output<'a>(journal: &'a [StepRecord], step: &str) -> &'a Value {
    let r = journal
        .iter()
        .rev()
        .find(|r| r.step_id == step)
        .unwrap_or_else(|| panic!("no step {step}: {journal:?}"));
    match &r.output {
        StepOutput::Json(v) => v,
        other => panic!("{step}: {other:?}"),
    }
}

/// n8n's pinned items (`[{json: …}]`) of a node, as plain jsons.
fn pinned(file: &str, node: &str) -> Vec<Value> {
    let raw: Value = serde_json::from_slice(&fixture(file)).unwrap();
    raw["pinData"][node]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["json"].clone())
        .collect()
}

async fn the_converted_merge_gives_n8ns_pinned_result(b: Backend) {
    let Some(env) = env(b).await else { return };
    let i = import("n8n-merge-append.json");
    let exec = Executor::new(env.store.clone(), catalog(&i));
    let (outcome, journal) = env.run(&exec, "merge-tests", json!({})).await;
    assert_eq!(outcome, RunOutcome::Succeeded, "{journal:?}");
    let items = output(&journal, "merge")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items, pinned("n8n-merge-append.json", "Merge"));
    env.cleanup().await;
}

async fn the_converted_if_routes_items_as_n8n_did(b: Backend) {
    let Some(env) = env(b).await else { return };
    // n8n's test feeds the IF from a test-only node; a Code node returning the same
    // items stands in for it (the IF and the expected results are n8n's).
    let i = with_code_data("n8n-if-v2-number.json");
    let w = &i.workflows[0];
    assert!(
        w.yaml
            .contains("condition: \"(item.count) == (1) or (item.count) > (10)\""),
        "{}",
        w.yaml
    );
    let exec = Executor::new(env.store.clone(), catalog(&i));
    let (outcome, journal) = env.run(&exec, "filter-test", json!({})).await;
    assert_eq!(outcome, RunOutcome::Succeeded, "{journal:?}");
    let items = output(&journal, "code")["items"]
        .as_array()
        .unwrap()
        .clone();
    let branch = |k: usize| {
        output(&journal, &format!("each_if#{k}/if"))["branch"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (mut then, mut other) = (Vec::new(), Vec::new());
    for (k, item) in items.iter().enumerate() {
        if branch(k) == "then" {
            then.push(item.clone())
        } else {
            other.push(item.clone())
        }
    }
    assert_eq!(then, pinned("n8n-if-v2-number.json", "Then"));
    assert_eq!(other, pinned("n8n-if-v2-number.json", "Else"));
    env.cleanup().await;
}

async fn the_converted_edit_fields_give_n8ns_pinned_result(b: Backend) {
    let Some(env) = env(b).await else { return };
    let i = import("n8n-set-number.json");
    let w = &i.workflows[0];
    assert_eq!(
        w.node("Sticky Note").unwrap().status,
        stockade_n8n::Status::LeftOut
    );
    let exec = Executor::new(env.store.clone(), catalog(&i));
    let (outcome, journal) = env.run(&exec, "my-workflow-31", json!({})).await;
    assert_eq!(outcome, RunOutcome::Succeeded, "{journal:?}");
    let items = output(&journal, "set2")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items, pinned("n8n-set-number.json", "Set2"));
    env.cleanup().await;
}

/// n8n's test workflow with its test-only data node replaced by a Code node returning
/// the same items (the node under test and the expected results are n8n's).
fn with_code_data(file: &str) -> stockade_n8n::Import {
    let mut raw: Value = serde_json::from_slice(&fixture(file)).unwrap();
    let data = raw["nodes"][1]["parameters"]["data"].clone();
    raw["nodes"][1]["type"] = json!("n8n-nodes-base.code");
    raw["nodes"][1]["typeVersion"] = json!(2);
    raw["nodes"][1]["parameters"] = json!({ "jsCode": format!("return {};", data) });
    stockade_n8n::import(raw.to_string().as_bytes(), &Default::default()).unwrap()
}

async fn the_converted_switch_routes_items_as_n8n_did(b: Backend) {
    let Some(env) = env(b).await else { return };
    let i = with_code_data("n8n-switch-v3-rules.json");
    let w = &i.workflows[0];
    assert!(
        w.yaml
            .contains(r#"\"0\" if ((item.output) == (\"first\")) else"#),
        "{}",
        w.yaml
    );
    assert_eq!(
        w.node("Switch1").unwrap().status,
        stockade_n8n::Status::Converted
    );
    let exec = Executor::new(env.store.clone(), catalog(&i));
    let (outcome, journal) = env.run(&exec, "my-workflow-64", json!({})).await;
    assert_eq!(outcome, RunOutcome::Succeeded, "{journal:?}");
    let items = output(&journal, "code")["items"]
        .as_array()
        .unwrap()
        .clone();
    let mut by_output: [Vec<Value>; 3] = Default::default();
    for (k, item) in items.iter().enumerate() {
        // A case taken is n8n's output number; the default is its fallback output (2).
        let case = output(&journal, &format!("each_switch1#{k}/switch1"))["case"]
            .as_str()
            .map(str::to_owned);
        let out: usize = case.map_or(2, |c| c.parse().unwrap());
        by_output[out].push(item.clone());
    }
    let file = "n8n-switch-v3-rules.json";
    assert_eq!(by_output[0], pinned(file, "No Operation, do nothing"));
    assert_eq!(by_output[1], pinned(file, "No Operation, do nothing1"));
    assert_eq!(by_output[2], pinned(file, "No Operation, do nothing2"));
    env.cleanup().await;
}

async fn the_converted_order_sync_reserves_and_alerts_as_n8n_did(b: Backend) {
    let Some(env) = env(b).await else { return };
    let bots = Bots::start(BotsConfig::default()).await.expect("bots");
    let wms = bots.add_bearer_webhook("wms", "wms-token-0123");
    // The seller export, pointed at the sandbox's receiver, without its NocoDB node
    // (NocoDB runs against a real server in the nocodb steps' own tests).
    let mut raw: Value = serde_json::from_slice(&fixture("seller-order-sync.json")).unwrap();
    let wf = &mut raw[0];
    wf["nodes"][3]["parameters"]["url"] = json!(format!("={}", wms.url));
    wf["nodes"].as_array_mut().unwrap().remove(4);
    wf["connections"]
        .as_object_mut()
        .unwrap()
        .remove("Reserve Stock");
    let i = stockade_n8n::import(raw.to_string().as_bytes(), &Default::default()).unwrap();
    let key_path = env.db.dir.join("master.key");
    let master = stockade_vault::MasterKeys::generate(
        Environment::Dev,
        stockade_vault::MasterKeySource::File(key_path.clone()),
    )
    .unwrap();
    master.write_new_file(&key_path).unwrap();
    let vault = Arc::new(
        stockade_vault::Vault::bootstrap(env.store.clone(), master, &Actor::System("test"))
            .await
            .unwrap(),
    );
    vault
        .put_credential(
            &stockade_vault::NewCredential {
                name: "wms-api",
                kind: "secret",
                secret: &stockade_core::SecretString::from("wms-token-0123".to_owned()),
                owner: &stockade_vault::KeyOwner::system(),
                scopes: &stockade_vault::CredentialScopes {
                    workflows: vec!["tiktok-order-sync".into()],
                    hosts: vec!["127.0.0.1".into()],
                },
                account: None,
            },
            &Actor::System("test"),
        )
        .await
        .unwrap();
    let mut cfg = EgressConfig::new(Environment::Dev);
    cfg.allowed_hosts = vec![bots.base_url.trim_start_matches("https://").to_owned()];
    cfg.extra_root_pems = vec![bots.ca_pem.clone()];
    cfg.max_attempts = 1;
    cfg.request_timeout = Duration::from_secs(5);
    let gateway = Gateway::new(cfg, Some(env.store.clone())).unwrap();
    let exec = Executor::new(env.store.clone(), catalog(&i)).with_services(gateway, vault);
    let body = json!({
        "order_id": "TT-1001",
        "line_items": [
            { "seller_sku": "MUG-RED", "quantity": 2, "sale_price": "9.90" },
            { "seller_sku": "MUG-BLUE", "quantity": 0, "sale_price": "9.90" },
            { "seller_sku": "CAP-1", "quantity": 1, "sale_price": "15.00" }
        ]
    });
    let trigger = json!({ "kind": "webhook", "body": body, "query": {}, "headers": {}, "path": "tiktok-orders" });
    let (outcome, journal) = env.run(&exec, "tiktok-order-sync", trigger).await;
    assert_eq!(outcome, RunOutcome::Succeeded, "{journal:?}");
    // What n8n did: one reservation per line with a quantity, with the credential …
    let got: Vec<Value> = bots
        .received()
        .iter()
        .filter(|r| r.bot == "wms")
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(
        got,
        [
            json!({ "sku": "MUG-RED", "quantity": 2, "reference": "TT-1001" }),
            json!({ "sku": "CAP-1", "quantity": 1, "reference": "TT-1001" })
        ]
    );
    assert!(
        bots.received()
            .iter()
            .filter(|r| r.bot == "wms")
            .all(|r| r.accepted)
    );
    // … and one DingTalk alert for the line without.
    let alerts: Vec<&StepRecord> = journal
        .iter()
        .filter(|r| r.step_id.ends_with("/dingtalk_alert"))
        .collect();
    assert_eq!(alerts.len(), 1, "{journal:?}");
    assert_eq!(
        alerts[0].step_id,
        "each_has_quantity#1/has_quantity/dingtalk_alert"
    );
    env.cleanup().await;
}

async fn an_unsupported_step_fails_naming_node_and_type(b: Backend) {
    let Some(env) = env(b).await else { return };
    let i = import("n8n-if-v2-number.json");
    let exec = Executor::new(env.store.clone(), catalog(&i));
    let (outcome, _) = env.run(&exec, "filter-test", json!({})).await;
    let RunOutcome::Failed(f) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        f.class,
        stockade_workflows::exec::ErrorClass::Invalid.as_str(),
        "{f:?}"
    );
    assert!(
        f.message.contains("\"Code\"") && f.message.contains("n8n-nodes-testing.testData"),
        "{}",
        f.message
    );
    env.cleanup().await;
}

async fn the_converted_webhook_answers_what_n8n_answered(b: Backend) {
    let Some(env) = env(b).await else { return };
    let i = import("mrumpold-webhook.json");
    let exec = Executor::new(env.store.clone(), catalog(&i));
    let trigger = json!({ "kind": "webhook", "body": { "name": "Michael" }, "query": {}, "headers": {}, "path": "hello-webhook" });
    let (outcome, journal) = env.run(&exec, "webhook", trigger).await;
    assert_eq!(outcome, RunOutcome::Succeeded, "{journal:?}");
    // The answer's body (the last step's output), as the repository's README expects.
    let items = output(&journal, "respond_to_webhook")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["message"],
        json!("Hello Michael! Your message was received.")
    );
    env.cleanup().await;
}

async fn the_converted_reminder_builds_n8ns_fields_then_stops_at_the_email(b: Backend) {
    let Some(env) = env(b).await else { return };
    let i = import("mrumpold-daily-email-reminder.json");
    let exec = Executor::new(env.store.clone(), catalog(&i));
    let trigger = json!({ "kind": "schedule", "scheduled_at": "2026-12-07T09:00:00Z", "at": "2026-12-07T09:00:00Z" });
    let (outcome, journal) = env.run(&exec, "daily-email-reminder", trigger).await;
    let items = output(&journal, "edit_fields")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        items,
        [json!({
            "emailTo": "you_to@yourdomain.at",
            "subject": "Daily Reminder",
            "body": "Good morning! This is your daily reminder from n8n. \u{1F680}",
            "emailFrom": "you_from@yourdomain.at"
        })]
    );
    let RunOutcome::Failed(f) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        f.message.contains("\"Send Email\"") && f.message.contains("n8n-nodes-base.emailSend"),
        "{}",
        f.message
    );
    env.cleanup().await;
}
