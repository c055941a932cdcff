//! The order steps on both backends: buyer fields masked unless the workflow declares
//! `buyer_fields`; unmasked outputs sealed under the vault in the journal (the database
//! file never shows a buyer's name) and opened again on resume; undeclared connections
//! refused at run time; a trigger sealed by its producer is opened by the run, marked as
//! buyer data, and never stored plain.

use std::time::Duration;

use serde_json::json;
use stockade_core::order::{Address, Buyer, Marketplace, Order, OrderLine, OrderStatus};
use stockade_core::{Actor, Environment, Pii};
use stockade_egress::{EgressConfig, Gateway};
use stockade_store::{StepOutput, sql_params};
use stockade_sync::ingest::{Source, order_change, seal_buyer};
use stockade_vault::{KeyOwner, Vault};
use stockade_workflows::exec::{Executor, RunOutcome};

use crate::exec_support::{Act, Backend, Env, Probe, both, catalog, open_vault};

both!(
    buyer_fields_are_masked_or_sealed_never_plain,
    a_sealed_trigger_is_opened_marked_and_never_stored_plain
);

const BUYER: &str = "Zebulon Quixote-Buyer";
const STREET: &str = "17 Hidden Lantern Lane";

const PEEK: &str = r#"
name: peek
trigger: manual
permissions: { connections: [shop] }
steps:
  - id: o
    uses: order.get
    with: { order: ORD-1, connection: shop }
  - id: note
    uses: audit.note
    with: { message: "buyer {{ steps.o.output.buyer.name }} at {{ steps.o.output.shipping_address }}" }
"#;

const REVEAL: &str = r#"
name: reveal
trigger: manual
permissions: { connections: [shop], buyer_fields: true }
steps:
  - id: o
    uses: order.get
    with: { order: ORD-1 }
  - id: all
    uses: marketplace.fetch_orders
    with: { connection: shop, status: placed, limit: 10 }
  - id: after
    uses: http.request
    with: { url: "https://example.com/after" }
  - id: note
    uses: audit.note
    with: { message: "sku {{ steps.o.output.lines[0].sku }}, {{ steps.all.output.count }} open" }
"#;

const STRAY: &str = r#"
name: stray
trigger: manual
steps:
  - id: o
    uses: order.get
    with: { order: ORD-1, connection: shop }
"#;

async fn seed(env: &Env, vault: &Vault) {
    env.store
        .tamper_for_tests(
            "INSERT INTO connections (id, name, marketplace, endpoint, account, settings, status, created_at_ms, updated_at_ms)
             VALUES (1, 'shop', 'ebay', 'https://api.ebay.com', 'acct', '{}', 'active', 1, 1)",
        )
        .await
        .expect("connection");
    let order = Order {
        marketplace: Marketplace::Ebay,
        external_id: "ORD-1".into(),
        status: OrderStatus::Placed,
        marketplace_status: "NOT_STARTED".into(),
        created_at_ms: 1000,
        updated_at_ms: 2000,
        lines: vec![OrderLine {
            line_id: "L1".into(),
            sku: "MUG-1".into(),
            quantity: 2,
            listing_id: None,
        }],
        buyer: Buyer {
            name: Some(Pii::new(BUYER.to_owned())),
            email: Some(Pii::new("zq@example.com".to_owned())),
            phone: None,
            address: Some(Address {
                line1: Some(Pii::new(STREET.to_owned())),
                country_code: "DE".into(),
                ..Address::default()
            }),
        },
    };
    let actor = Actor::System("test");
    let key = vault
        .data_key_for(&KeyOwner::connection("shop").unwrap(), &actor)
        .await
        .expect("data key");
    let buyer = seal_buyer(&key, 1, &order).expect("sealed");
    let change = order_change(1, "shop", &order, buyer, Source::Poll, 3000);
    env.store.commit(&actor, vec![change]).await.expect("order");
}

async fn run(env: &Env, exec: &Executor, name: &str) -> (String, RunOutcome) {
    let id = env.enqueue(name, json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    (id, exec.run_claimed(lease).await.expect("runs"))
}

async fn buyer_fields_are_masked_or_sealed_never_plain(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let vault = open_vault(&env).await;
    seed(&env, &vault).await;
    let gateway = Gateway::new(EgressConfig::new(Environment::Dev), None).expect("gateway");
    let probe = Probe::new(&env.store, &[Act::Hang, Act::Succeed]);
    let defs = catalog(&[PEEK, REVEAL, STRAY]);
    let services = |lease_ms| {
        Executor::new(env.store.clone(), defs.clone())
            .with_services(gateway.clone(), vault.clone())
            .with_handler("http.request", probe.clone())
            .lease_ms(lease_ms)
    };
    let exec = services(30_000);

    // Masked: the fields read "[masked]", and the output is stored as plain JSON.
    let (id, outcome) = run(&env, &exec, "peek").await;
    assert_eq!(outcome, RunOutcome::Succeeded);
    let notes: Vec<(String,)> = env
        .store
        .query_as(
            "SELECT details FROM audit WHERE action = 'workflow.note'",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        notes[0].0.contains("buyer [masked] at [masked]"),
        "{}",
        notes[0].0
    );
    let journal = env.store.journal(&id).await.unwrap();
    let StepOutput::Json(o) = &journal[0].output else {
        panic!("plain output")
    };
    assert_eq!(o["lines"][0]["sku"], json!("MUG-1"));
    assert_eq!(o["status"], json!("placed"));

    // Unmasked: sealed in the journal; the run dies after it and resumes, reading the
    // sealed outputs back.
    let exec_short = services(300);
    let id = env.enqueue("reveal", json!({})).await;
    let lease = env.claim("w1", 300).await.expect("a job");
    let first =
        tokio::time::timeout(Duration::from_millis(1000), exec_short.run_claimed(lease)).await;
    assert!(first.is_err(), "the first run died in `after`: {first:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(env.store.reap_expired(100).await.unwrap().requeued, 1);
    let lease = env.claim("w2", 30_000).await.expect("re-queued");
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    let journal = env.store.journal(&id).await.unwrap();
    for step in ["o", "all"] {
        let row = journal.iter().find(|r| r.step_id == step).expect("row");
        assert!(
            matches!(row.output, StepOutput::Sealed(_)),
            "{step}: {:?}",
            row.output
        );
    }
    let note: Vec<(String,)> = env
        .store
        .query_as(
            "SELECT details FROM audit WHERE action = 'workflow.note' AND details LIKE $1",
            sql_params!["%sku MUG-1, 1 open%"],
        )
        .await
        .unwrap();
    assert_eq!(note.len(), 1, "the resumed run read the sealed outputs");
    for sql in [
        "SELECT COALESCE(output, '') || COALESCE(error, '') FROM job_steps",
        "SELECT action || details FROM audit",
        "SELECT payload FROM jobs",
    ] {
        let rows: Vec<(String,)> = env.store.query_as(sql, vec![]).await.unwrap();
        for (text,) in rows {
            assert!(
                !text.contains(BUYER) && !text.contains(STREET),
                "{sql}: buyer data stored plain"
            );
        }
    }
    if b == Backend::Sqlite {
        env.store
            .tamper_for_tests("PRAGMA wal_checkpoint(TRUNCATE)")
            .await
            .ok();
        let bytes = env.db.sqlite_bytes();
        for needle in [BUYER, STREET] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "the database file shows {needle}"
            );
        }
    }

    // A connection the workflow does not declare: refused at run time.
    let (_, outcome) = run(&env, &exec, "stray").await;
    let RunOutcome::Failed(f) = outcome else {
        panic!("refused")
    };
    assert_eq!(f.class, "permission");
    env.cleanup().await;
}

const HELLO: &str = r#"
name: hello_buyer
trigger: manual
steps:
  - id: check
    uses: if
    with: { condition: "trigger.buyer == 'Zebulon Quixote-Buyer'" }
    then:
      - id: matched
        uses: audit.note
        with: { message: "matched the buyer" }
  - id: leak
    uses: audit.note
    continue_on_error: true
    with: { message: "{{ trigger.buyer }}" }
"#;

async fn a_sealed_trigger_is_opened_marked_and_never_stored_plain(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let vault = open_vault(&env).await;
    let actor = Actor::System("test");
    let trigger = json!({ "order": "ORD-9", "buyer": BUYER });
    let sealed = stockade_workflows::exec::seal_trigger(&vault, &trigger, &actor)
        .await
        .expect("sealed");
    let enqueue = || async {
        let p = stockade_workflows::exec::ExecutionPayload::new(
            "hello_buyer",
            json!({}),
            sealed.clone(),
        );
        env.store.enqueue(&actor, &p.job()).await.unwrap().id
    };
    let gateway = Gateway::new(EgressConfig::new(Environment::Dev), None).expect("gateway");
    let defs = catalog(&[HELLO]);

    // Without the vault the run cannot open it: it fails, nothing of it is read.
    let plain_exec = Executor::new(env.store.clone(), defs.clone());
    enqueue().await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    let RunOutcome::Failed(f) = plain_exec.run_claimed(lease).await.unwrap() else {
        panic!("fails without a vault");
    };
    assert_eq!(f.class, "permission");

    let exec = Executor::new(env.store.clone(), defs).with_services(gateway, vault.clone());
    let id = enqueue().await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    let notes: Vec<(String,)> = env
        .store
        .query_as(
            "SELECT details FROM audit WHERE action = 'workflow.note'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(notes.len(), 1, "only the match is noted: {notes:?}");
    assert!(notes[0].0.contains("matched the buyer"), "{}", notes[0].0);
    let leak = env.store.journal(&id).await.unwrap();
    let leak = leak.iter().find(|r| r.step_id == "leak").expect("leak row");
    assert!(
        leak.error
            .as_deref()
            .unwrap_or("")
            .starts_with("permission"),
        "{leak:?}"
    );
    let payloads: Vec<(String,)> = env
        .store
        .query_as("SELECT payload FROM jobs", vec![])
        .await
        .unwrap();
    for (p,) in &payloads {
        assert!(p.contains("$sealed") && !p.contains(BUYER), "{p}");
    }
    if b == Backend::Sqlite {
        env.store
            .tamper_for_tests("PRAGMA wal_checkpoint(TRUNCATE)")
            .await
            .ok();
        let bytes = env.db.sqlite_bytes();
        assert!(!bytes.windows(BUYER.len()).any(|w| w == BUYER.as_bytes()));
    }
    env.cleanup().await;
}
