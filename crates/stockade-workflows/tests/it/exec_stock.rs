//! The stock steps on both backends: `stock.adjust` moves on hand by its delta exactly
//! once across a crash after its commit, audited as the workflow and retargeting the
//! listings; an unknown SKU, a result below zero and a stale fencing token write
//! nothing; `stock.get` returns what the catalog shows; a reason derived from buyer data
//! is refused at run time without `allow_pii`; `marketplace.set_stock` sets a declared
//! connection's listing target for the pusher.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stockade_store::{StepOutput, StepStatus, sql_params};
use stockade_sync::catalog;
use stockade_sync::stock::sku_stock;
use stockade_workflows::exec::{
    ExecError, JOB_KIND, RunOutcome, StepCtx, StepFuture, StepHandler, StockAdjust,
};
use stockade_workflows::expr::Evaluated;

use crate::exec_support::{Act, Backend, Env, Probe, both, catalog, executor, import_sku};

both!(
    an_adjustment_applies_once_across_a_crash_after_its_commit,
    an_unknown_sku_or_a_result_below_zero_writes_nothing,
    a_stale_fencing_token_adjusts_nothing,
    stock_get_returns_the_catalog_figures,
    a_reason_from_buyer_data_needs_allow_pii_at_run_time,
    set_stock_sets_a_declared_listing_target_for_the_pusher,
);

const RESTOCK: &str = r#"
name: restock
trigger: manual
inputs:
  sku: { type: string, default: MUG-1 }
  delta: { type: integer, default: 5 }
steps:
  - id: adj
    uses: stock.adjust
    with: { sku: "{{ inputs.sku }}", delta: "{{ inputs.delta }}", reason: "delivery D-1" }
  - id: d
    uses: http.request
    with: { url: "https://example.com/hook" }
  - id: note
    uses: audit.note
    with: { message: "now {{ steps.adj.output.on_hand }}" }
"#;

/// A catalog with MUG-1 at 10 on hand (set by the import path) and one listing on a
/// connection with a buffer of 2, its target (8) confirmed by the channel.
async fn seed(env: &Env) {
    import_sku(env, "MUG-1", 10).await;
    env.store
        .tamper_for_tests(
            "INSERT INTO connections (id, name, marketplace, endpoint, account, settings, status, created_at_ms, updated_at_ms)
             VALUES (1, 'shop', 'ebay', 'https://api.ebay.com', 'acct', '{}', 'active', 1, 1)",
        )
        .await
        .expect("connection");
    env.store
        .tamper_for_tests(
            "INSERT INTO listings (connection_id, sku, listing_id, listing_ref, buffer, target_qty, target_version, pushed_version, acked_qty)
             VALUES (1, 'MUG-1', '-', '{}', 2, 8, 1, 1, 8)",
        )
        .await
        .expect("listing");
}

async fn on_hand(env: &Env) -> i64 {
    env.count("SELECT on_hand FROM skus WHERE sku = 'MUG-1'")
        .await
}

async fn ledger_adjusts(env: &Env) -> i64 {
    env.count("SELECT COUNT(*) FROM stock_ledger WHERE sku = 'MUG-1' AND movement = 'adjust'")
        .await
}

async fn an_adjustment_applies_once_across_a_crash_after_its_commit(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    seed(&env).await;
    assert_eq!((on_hand(&env).await, ledger_adjusts(&env).await), (10, 1));
    // The step after the adjustment hangs: the process "dies" after adj's commit.
    let probe = Probe::new(&env.store, &[Act::Hang, Act::Succeed]);
    let exec = executor(&env, catalog(&[RESTOCK]), Some(probe.clone())).lease_ms(300);
    let id = env.enqueue("restock", json!({})).await;
    let lease = env.claim("w1", 300).await.expect("a job");
    let first = tokio::time::timeout(Duration::from_millis(1500), exec.run_claimed(lease)).await;
    assert!(first.is_err(), "the first run died in step d");
    assert_eq!((on_hand(&env).await, ledger_adjusts(&env).await), (15, 2));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(env.store.reap_expired(100).await.unwrap().requeued, 1);
    let lease = env.claim("w2", 30_000).await.expect("re-queued");
    let exec2 = executor(&env, catalog(&[RESTOCK]), Some(probe.clone()));
    assert_eq!(
        exec2.run_claimed(lease).await.expect("resumes"),
        RunOutcome::Succeeded
    );
    // On hand moved by the delta once: one more ledger row, not two.
    assert_eq!((on_hand(&env).await, ledger_adjusts(&env).await), (15, 2));
    assert!(catalog::verify_stock(&env.store).await.unwrap().is_empty());
    // The audit row names the workflow actor and keeps the reason.
    let rows: Vec<(String, String)> = env
        .store
        .query_as(
            "SELECT actor, details FROM audit WHERE action = 'stock.adjust'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, format!("workflow:restock@1/{id}"));
    assert!(rows[0].1.contains("delivery D-1"), "{}", rows[0].1);
    // The resumed run read adj's output from the journal.
    let note = env
        .store
        .count(
            "SELECT COUNT(*) FROM audit WHERE action = 'workflow.note' AND details LIKE $1",
            sql_params!["%now 15%"],
        )
        .await
        .unwrap();
    assert_eq!(note, 1);
    // The listing's target follows (available 15 − buffer 2) and is due for a push.
    let (target, version, pushed): (i64, i64, i64) = env
        .store
        .query_one_as(
            "SELECT target_qty, target_version, pushed_version FROM listings WHERE sku = 'MUG-1'",
            vec![],
        )
        .await
        .unwrap()
        .expect("listing");
    assert_eq!(target, 13);
    assert!(version > pushed, "the pusher has a new target to push");
    let journal = env.store.journal(&id).await.unwrap();
    let adj: Vec<_> = journal.iter().filter(|r| r.step_id == "adj").collect();
    assert_eq!(adj.len(), 1, "adj ran once");
    assert_eq!(adj[0].status, StepStatus::Succeeded);
    let StepOutput::Json(out) = &adj[0].output else {
        panic!("adj has a JSON output: {:?}", adj[0].output)
    };
    assert_eq!(
        (&out["on_hand"], &out["available"], &out["delta"]),
        (&json!(15), &json!(15), &json!(5))
    );
    assert_eq!(out["channels"][0]["target"], json!(13));
    env.cleanup().await;
}

const ADJUST_ONLY: &str = r#"
name: adjust
trigger: manual
inputs:
  sku: { type: string, required: true }
  delta: { type: integer, required: true }
steps:
  - id: adj
    uses: stock.adjust
    with: { sku: "{{ inputs.sku }}", delta: "{{ inputs.delta }}", reason: "count" }
"#;

async fn an_unknown_sku_or_a_result_below_zero_writes_nothing(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    seed(&env).await;
    let exec = executor(&env, catalog(&[ADJUST_ONLY]), None);
    for (inputs, says) in [
        (json!({ "sku": "NOPE", "delta": 3 }), "no SKU \"NOPE\""),
        (json!({ "sku": "MUG-1", "delta": -11 }), "below zero"),
    ] {
        let ledger = env.count("SELECT COUNT(*) FROM stock_ledger").await;
        env.enqueue("adjust", inputs).await;
        let lease = env.claim("w1", 30_000).await.expect("a job");
        let RunOutcome::Failed(f) = exec.run_claimed(lease).await.expect("runs") else {
            panic!("the step fails")
        };
        assert_eq!((f.step.as_str(), f.class.as_str()), ("adj", "invalid"));
        assert!(f.message.contains(says), "{}", f.message);
        assert_eq!(env.count("SELECT COUNT(*) FROM stock_ledger").await, ledger);
        assert_eq!(env.actions("stock.adjust").await, 0);
        assert_eq!(on_hand(&env).await, 10);
    }
    // Down to exactly zero is allowed.
    env.enqueue("adjust", json!({ "sku": "MUG-1", "delta": -10 }))
        .await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    assert_eq!(
        exec.run_claimed(lease).await.expect("runs"),
        RunOutcome::Succeeded
    );
    assert_eq!(on_hand(&env).await, 0);
    env.cleanup().await;
}

/// `stock.adjust` whose worker loses its lease to a second worker before committing.
struct Stale(StockAdjust);

impl StepHandler for Stale {
    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            ctx.store
                .tamper_for_tests("UPDATE jobs SET lease_expires_at_ms = 1 WHERE state = 'running'")
                .await
                .expect("expire the lease");
            assert_eq!(ctx.store.reap_expired(100).await.unwrap().requeued, 1);
            let next = ctx.store.claim("worker-2", &[JOB_KIND], 60_000).await;
            assert!(next.expect("claim").is_some(), "the second worker takes it");
            self.0.run(ctx, params).await
        })
    }
}

async fn a_stale_fencing_token_adjusts_nothing(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    seed(&env).await;
    let exec = executor(&env, catalog(&[ADJUST_ONLY]), None)
        .with_handler("stock.adjust", Arc::new(Stale(StockAdjust)));
    env.enqueue("adjust", json!({ "sku": "MUG-1", "delta": 4 }))
        .await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    let ledger = env.count("SELECT COUNT(*) FROM stock_ledger").await;
    let refused = exec.run_claimed(lease).await;
    assert!(matches!(refused, Err(ExecError::Fenced)), "{refused:?}");
    assert_eq!(env.count("SELECT COUNT(*) FROM stock_ledger").await, ledger);
    assert_eq!(env.actions("stock.adjust").await, 0);
    assert_eq!(on_hand(&env).await, 10);
    env.cleanup().await;
}

const GET: &str = r#"
name: level
trigger: manual
inputs:
  sku: { type: string, required: true }
steps:
  - id: level
    uses: stock.get
    with: { sku: "{{ inputs.sku }}" }
"#;

async fn stock_get_returns_the_catalog_figures(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    seed(&env).await;
    // Reserve 3 (an order line), so on hand, reserved and available all differ.
    env.store
        .tamper_for_tests(
            "INSERT INTO stock_ledger (sku, movement, on_hand_delta, reserved_delta, at_ms) VALUES ('MUG-1', 'reserve', 0, 3, 1)",
        )
        .await
        .expect("reserve");
    let exec = executor(&env, catalog(&[GET]), None);
    let id = env.enqueue("level", json!({ "sku": "MUG-1" })).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    assert_eq!(
        exec.run_claimed(lease).await.expect("runs"),
        RunOutcome::Succeeded
    );
    let journal = env.store.journal(&id).await.unwrap();
    let StepOutput::Json(out) = &journal[0].output else {
        panic!("a JSON output")
    };
    let row = catalog::stock(&env.store)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.sku == "MUG-1")
        .expect("row");
    assert_eq!((row.on_hand, row.reserved, row.available), (10, 3, 7));
    let expect = |v: i64| Value::from(v);
    assert_eq!(out["on_hand"], expect(row.on_hand));
    assert_eq!(out["reserved"], expect(row.reserved));
    assert_eq!(out["available"], expect(row.available));
    let listing = catalog::listings(&env.store).await.unwrap();
    assert_eq!(out["channels"][0]["connection"], json!("shop"));
    assert_eq!(out["channels"][0]["target"], expect(listing[0].target_qty));
    let read = sku_stock(&env.store, "MUG-1").await.unwrap().expect("sku");
    assert_eq!(out, &serde_json::to_value(&read).unwrap());
    // An unknown SKU fails the step.
    env.enqueue("level", json!({ "sku": "NOPE" })).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    let RunOutcome::Failed(f) = exec.run_claimed(lease).await.expect("runs") else {
        panic!("fails")
    };
    assert!(f.message.contains("no SKU"), "{}", f.message);
    env.cleanup().await;
}

async fn a_reason_from_buyer_data_needs_allow_pii_at_run_time(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    seed(&env).await;
    let actor = stockade_workflows::exec::actor("adjust", 1, "job_1");
    let permissions = stockade_workflows::definition::Permissions::default();
    let ctx = |allow_pii| StepCtx {
        store: &env.store,
        execution: "job_1",
        workflow: "adjust",
        version: 1,
        step: "adj",
        idempotency_key: "job_1/adj",
        attempt: 1,
        actor: &actor,
        allow_pii,
        permissions: &permissions,
    };
    let params = Evaluated {
        value: json!({ "sku": "MUG-1", "delta": 1, "reason": "for a buyer" }),
        pii: true,
    };
    let refused = StockAdjust.run(&ctx(false), &params).await;
    let e = refused.expect_err("refused without allow_pii");
    assert_eq!(e.class, stockade_workflows::exec::ErrorClass::Permission);
    let allowed = StockAdjust.run(&ctx(true), &params).await;
    assert_eq!(allowed.expect("allowed").changes.len(), 1);
    env.cleanup().await;
}

const SET_STOCK: &str = r#"
name: setter
trigger: manual
permissions: { connections: [shop] }
steps:
  - id: set
    uses: marketplace.set_stock
    with: { connection: shop, sku: MUG-1, quantity: 3 }
"#;

const SET_STRAY: &str = r#"
name: stray_setter
trigger: manual
steps:
  - id: set
    uses: marketplace.set_stock
    with: { connection: shop, sku: MUG-1, quantity: 0 }
"#;

async fn set_stock_sets_a_declared_listing_target_for_the_pusher(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    seed(&env).await;
    let exec = executor(&env, catalog(&[SET_STOCK, SET_STRAY]), None);
    let listing = || {
        env.store.query_as::<(i64, i64, i64)>(
            "SELECT target_qty, target_version, pushed_version FROM listings WHERE sku = 'MUG-1'",
            vec![],
        )
    };
    // Undeclared connection: refused, nothing written.
    env.enqueue("stray_setter", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    let RunOutcome::Failed(f) = exec.run_claimed(lease).await.unwrap() else {
        panic!("refused");
    };
    assert_eq!(f.class, "permission");
    assert_eq!(listing().await.unwrap(), vec![(8, 1, 1)]);
    // Declared: the target moves and is ahead of what the channel confirmed.
    env.enqueue("setter", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    assert_eq!(listing().await.unwrap(), vec![(3, 2, 1)]);
    assert_eq!(env.actions("workflow.set_stock").await, 1);
    env.cleanup().await;
}
