//! `http.request` against a real HTTPS receiver on loopback (the sandbox's signed webhook
//! receiver): the same idempotency key on a retry, a credential injected by name and
//! never persisted, an undeclared host refused with nothing sent, a 4xx failing for good
//! with its status in the error event.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stockade_core::Environment;
use stockade_core::event::WorkflowFailure;
use stockade_egress::{EgressConfig, Gateway};
use stockade_sandbox::bots::{BotFault, WebhookSpec, webhook_signature};
use stockade_sandbox::{Bots, BotsConfig};
use stockade_vault::Vault;
use stockade_workflows::exec::{Executor, RunOutcome};

use crate::exec_support::{Backend, Env, both, catalog, open_vault, put_credential};

both!(http_requests_are_keyed_credentialed_and_confined);

const SECRET: &str = "tok-Sup3rS3cret-9f8e7d6c";

/// A vault on `env`'s store holding the `supplier-token` credential scoped to `caller`.
async fn vault(env: &Env) -> Arc<Vault> {
    let vault = open_vault(env).await;
    put_credential(
        &vault,
        "supplier-token",
        SECRET,
        &["caller"],
        &["127.0.0.1"],
    )
    .await;
    vault
}

fn caller(url: &str, ts: &str, signature: &str) -> String {
    format!(
        r#"
name: caller
trigger: manual
permissions:
  hosts: [127.0.0.1]
  credentials: [supplier-token]
steps:
  - id: post
    uses: http.request
    retry: {{ attempts: 3, initial: PT0.3S, jitter: false }}
    with:
      url: "{url}"
      method: POST
      headers: {{ x-stockade-timestamp: "{ts}", x-stockade-signature: "{signature}" }}
      body: {{ sku: MUG-1, qty: 3 }}
      credential: supplier-token
"#
    )
}

fn stray(url: &str) -> String {
    format!(
        "name: stray\ntrigger: manual\npermissions:\n  hosts: [127.0.0.1]\nsteps:\n  - id: out\n    uses: http.request\n    with: {{ url: \"{url}\" }}\n"
    )
}

fn unsigned(url: &str) -> String {
    format!(
        "name: unsigned\ntrigger: manual\npermissions:\n  hosts: [127.0.0.1]\nsteps:\n  - id: post\n    uses: http.request\n    retry: {{ attempts: 3, initial: PT0.1S }}\n    with: {{ url: \"{url}\", method: POST, body: {{ a: 1 }} }}\n"
    )
}

async fn run(env: &Env, exec: &Executor, name: &str) -> (String, RunOutcome) {
    let id = env.enqueue(name, json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    (id, exec.run_claimed(lease).await.expect("runs"))
}

async fn http_requests_are_keyed_credentialed_and_confined(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let vault = vault(&env).await;
    let bots = Arc::new(Bots::start(BotsConfig::default()).await.expect("bots"));
    let hook = bots.add_webhook(WebhookSpec {
        name: "supplier".into(),
    });
    let authority = bots.base_url.trim_start_matches("https://").to_owned();
    let mut cfg = EgressConfig::new(Environment::Dev);
    cfg.allowed_hosts = vec![authority];
    cfg.extra_root_pems = vec![bots.ca_pem.clone()];
    cfg.max_attempts = 1;
    cfg.request_timeout = Duration::from_secs(5);
    let gateway = Gateway::new(cfg, Some(env.store.clone())).expect("gateway");

    let ts = (stockade_core::time::now_ms() / 1000).to_string();
    let body = serde_json::to_vec(&json!({ "qty": 3, "sku": "MUG-1" })).unwrap();
    let sig = webhook_signature(&hook.secret, &ts, &body);
    let wf_caller = caller(&hook.url, &ts, &sig);
    let wf_stray = stray("https://evil.example.com/steal");
    let wf_unsigned = unsigned(&hook.url);
    let defs = catalog(&[&wf_caller, &wf_stray, &wf_unsigned]);
    let exec = Executor::new(env.store.clone(), defs).with_services(gateway, vault);

    // The receiver is down for the first attempt: the step retries with the same key.
    bots.set_fault("supplier", BotFault::Down);
    let watcher = {
        let bots = bots.clone();
        tokio::spawn(async move {
            while bots.received().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            bots.set_fault("supplier", BotFault::None);
        })
    };
    let (id, outcome) = run(&env, &exec, "caller").await;
    watcher.await.unwrap();
    assert_eq!(outcome, RunOutcome::Succeeded);
    let got = bots.received();
    assert_eq!(got.len(), 2, "one 503, then the delivery");
    assert_eq!(got[0].http_status, 503);
    assert!(got[1].accepted, "{:?}", got[1]);
    let key = format!("{id}/post");
    for r in &got {
        assert_eq!(r.header("idempotency-key"), Some(key.as_str()));
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {SECRET}").as_str())
        );
    }
    let journal = env.store.journal(&id).await.unwrap();
    let last = journal.last().expect("a journal row");
    assert_eq!(last.attempt, 2);
    match &last.output {
        stockade_store::StepOutput::Json(v) => assert_eq!(v["status"], json!(204)),
        other => panic!("output {other:?}"),
    }

    // An undeclared host: refused before anything is sent or resolved.
    let before = bots.received().len();
    let (_, outcome) = run(&env, &exec, "stray").await;
    let RunOutcome::Failed(WorkflowFailure { class, message, .. }) = outcome else {
        panic!("the stray request fails");
    };
    assert_eq!(class, "permission");
    assert!(message.contains("permissions.hosts"), "{message}");
    assert_eq!(bots.received().len(), before);

    // A 4xx fails for good (no retry under `on: transient`), its status in the event.
    let (_, outcome) = run(&env, &exec, "unsigned").await;
    let RunOutcome::Failed(failure) = outcome else {
        panic!("a 401 fails the execution");
    };
    assert_eq!(
        (failure.class.as_str(), failure.status),
        ("http", Some(401))
    );
    assert_eq!(failure.attempts, 1);
    assert_eq!(bots.received().len(), before + 1);

    // The secret is nowhere in what was persisted.
    for sql in [
        "SELECT COALESCE(output, '') || COALESCE(error, '') FROM job_steps",
        "SELECT payload || COALESCE(last_error, '') FROM jobs",
        "SELECT action || details FROM audit",
        "SELECT detail FROM events",
    ] {
        let rows: Vec<(String,)> = env.store.query_as(sql, vec![]).await.unwrap();
        assert!(!rows.is_empty() || sql.contains("events"), "{sql}");
        for (text,) in rows {
            assert!(!text.contains(SECRET), "{sql}: the secret was persisted");
        }
    }
    if b == Backend::Sqlite {
        let bytes = env.db.sqlite_bytes();
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    }
    if let Ok(bots) = Arc::try_unwrap(bots) {
        bots.shutdown().await;
    }
    env.cleanup().await;
}
