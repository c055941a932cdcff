//! Steps that reach nothing outside the database, on both backends: their attempts are
//! journaled whole with their effects in the run's next commit (a step that reads the
//! database first commits what the run holds, so it sees its own execution's effects);
//! a run lost before that commit left nothing and runs them again exactly once; a run
//! started by the engine's starter with its enqueue is one transaction from the enqueue
//! to its end, or nothing at all when the workflow was disabled meanwhile.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stockade_core::Actor;
use stockade_store::{JobState, StepOutput, StepStatus};
use stockade_sync::catalog;
use stockade_workflows::engine::{Commit, Engine, EngineConfig, StoredDefinitions};
use stockade_workflows::exec::{
    ExecError, ExecutionPayload, Executor, Reach, RunOutcome, StepCtx, StepFuture, StepHandler,
};
use stockade_workflows::expr::Evaluated;
use stockade_workflows::registry;
use stockade_workflows::triggers::ActiveSet;

use crate::exec_support::{Act, Backend, Env, Probe, both, catalog, executor, import_sku};

both!(
    a_database_step_sees_the_effects_the_run_has_not_committed_yet,
    steps_lost_before_their_commit_left_nothing_and_run_again_once,
    a_started_run_is_one_transaction_or_nothing,
    only_workflows_inside_the_database_without_retries_run_as_one_transaction,
);

const COUNT: &str = r#"
name: count
trigger: manual
steps:
  - id: adj
    uses: stock.adjust
    with: { sku: MUG-1, delta: 5, reason: "delivery D-2" }
  - id: get
    uses: stock.get
    with: { sku: MUG-1 }
  - id: note
    uses: audit.note
    with: { message: "now {{ steps.get.output.on_hand }}" }
"#;

const PAUSE: &str = r#"
name: pause
trigger: manual
steps:
  - id: adj
    uses: stock.adjust
    with: { sku: MUG-1, delta: 5, reason: "delivery D-3" }
  - id: hold
    uses: audit.note
    with: { message: "after the adjustment" }
"#;

/// MUG-1 at 10 on hand (one ledger row from the import).
async fn seed(env: &Env) {
    import_sku(env, "MUG-1", 10).await;
}

/// Jobs and audit rows in the database.
async fn footprint(env: &Env) -> (i64, i64) {
    (
        env.count("SELECT COUNT(*) FROM jobs").await,
        env.count("SELECT COUNT(*) FROM audit").await,
    )
}

async fn on_hand_and_adjusts(env: &Env) -> (i64, i64) {
    (
        env.count("SELECT on_hand FROM skus WHERE sku = 'MUG-1'")
            .await,
        env.count("SELECT COUNT(*) FROM stock_ledger WHERE sku = 'MUG-1' AND movement = 'adjust'")
            .await,
    )
}

/// A step that reaches nothing outside the database and never ends (the process dies in
/// it).
struct Hang;

impl StepHandler for Hang {
    fn reach(&self) -> Reach {
        Reach::Nothing
    }

    fn run<'a>(&'a self, _ctx: &'a StepCtx<'a>, _params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(std::future::pending())
    }
}

async fn a_database_step_sees_the_effects_the_run_has_not_committed_yet(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    seed(&env).await;
    let exec = executor(&env, catalog(&[COUNT]), None);
    let id = env.enqueue("count", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    let writes = env.store.writes();
    let before = *writes.borrow();
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    // Two commits: the adjustment before `get` reads, then the rest with the job's end
    // (a step at a time would have been a start and a commit per step, and the end).
    assert_eq!(writes.borrow().wrapping_sub(before), 2);
    assert_eq!(on_hand_and_adjusts(&env).await, (15, 2));
    let journal = env.store.journal(&id).await.unwrap();
    let steps: Vec<(&str, i64, StepStatus)> = journal
        .iter()
        .map(|r| (r.step_id.as_str(), r.attempt, r.status))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("adj", 1, StepStatus::Succeeded),
            ("get", 1, StepStatus::Succeeded),
            ("note", 1, StepStatus::Succeeded),
        ]
    );
    let got = journal
        .iter()
        .find(|r| r.step_id == "get")
        .map(|r| r.output.clone());
    match got {
        Some(StepOutput::Json(v)) => assert_eq!(v["on_hand"], json!(15), "{v}"),
        other => panic!("get's output: {other:?}"),
    }
    assert!(
        journal
            .iter()
            .all(|r| r.finished_at_ms >= Some(r.started_at_ms))
    );
    assert!(catalog::verify_stock(&env.store).await.unwrap().is_empty());
    assert!(
        env.store
            .verify_audit(None)
            .await
            .unwrap()
            .problem
            .is_none()
    );
    env.cleanup().await;
}

async fn steps_lost_before_their_commit_left_nothing_and_run_again_once(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    seed(&env).await;
    let id = env.enqueue("pause", json!({})).await;
    let lease = env.claim("w1", 300).await.expect("a job");
    let dying = executor(&env, catalog(&[PAUSE]), None)
        .lease_ms(300)
        .with_handler("audit.note", Arc::new(Hang));
    let first = tokio::time::timeout(Duration::from_millis(800), dying.run_claimed(lease)).await;
    assert!(first.is_err(), "the first run died in step hold");
    // The adjustment waited for the run's next commit: nothing of it exists.
    assert_eq!(on_hand_and_adjusts(&env).await, (10, 1));
    assert!(env.store.journal(&id).await.unwrap().is_empty());
    assert_eq!(env.actions("stock.adjust").await, 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(env.store.reap_expired(100).await.unwrap().requeued, 1);
    let lease = env.claim("w2", 30_000).await.expect("re-queued");
    let exec = executor(&env, catalog(&[PAUSE]), None);
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    // Adjusted once, by the run that committed; its first and only recorded attempt.
    assert_eq!(on_hand_and_adjusts(&env).await, (15, 2));
    assert_eq!(env.actions("stock.adjust").await, 1);
    let adj: Vec<i64> = env
        .store
        .journal(&id)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.step_id == "adj")
        .map(|r| r.attempt)
        .collect();
    assert_eq!(adj, vec![1]);
    env.cleanup().await;
}

async fn a_started_run_is_one_transaction_or_nothing(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    seed(&env).await;
    let ops = Actor::User("usr_ops".into());
    registry::apply(&env.store, &ops, &[("pause.yaml".into(), PAUSE.into())])
        .await
        .unwrap();
    let active = ActiveSet::new().load(&env.store).await.unwrap();
    let def = active[0].def.clone();
    let config = EngineConfig {
        workers: 2,
        poll: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    let engine = Engine::start(env.store.clone(), config.clone());
    let starter = engine.starter();
    let key = Actor::ApiKey("key_0123".into());
    let payload = ExecutionPayload::new("pause", json!({}), json!({ "kind": "webhook" }));

    let started = starter
        .start(&key, def.clone(), payload.clone(), Commit::WithRun)
        .await
        .unwrap();
    assert!(!started.committed, "the enqueue goes with the run's end");
    let ended = started.ended.expect("runs here").await.unwrap();
    let (outcome, output) = ended.expect("decided");
    assert_eq!(outcome, RunOutcome::Succeeded);
    assert_eq!(output, json!({ "noted": true }));
    let job = env.store.job(&started.id).await.unwrap().expect("stored");
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 1));
    assert_eq!(on_hand_and_adjusts(&env).await, (15, 2));
    // The enqueue is the key's, the steps the workflow's, in one verified chain.
    let actors: Vec<(String, String)> = env
        .store
        .audit_rows(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.resource == format!("job:{}", started.id) || r.action == "stock.adjust")
        .map(|r| (r.action, r.actor))
        .collect();
    let run_actor = format!("workflow:pause@1/{}", started.id);
    assert_eq!(actors[0], ("job.enqueue".into(), key.to_string()));
    assert!(
        actors[1..].iter().all(|(_, a)| *a == run_actor),
        "{actors:?}"
    );
    assert!(
        actors.iter().any(|(a, _)| a == "job.complete"),
        "{actors:?}"
    );
    assert!(
        env.store
            .verify_audit(None)
            .await
            .unwrap()
            .problem
            .is_none()
    );

    // A run lost before its end (the process dies in its last step) left nothing at all:
    // no job, no audit row, no adjustment — the caller never acknowledged it.
    let before = footprint(&env).await;
    let defs = Arc::new(StoredDefinitions::new(env.store.clone()));
    let dying =
        Executor::new(env.store.clone(), defs.clone()).with_handler("audit.note", Arc::new(Hang));
    let doomed = Engine::start_with(env.store.clone(), defs, Arc::new(dying), config.clone());
    let started = doomed
        .starter()
        .start(&key, def.clone(), payload.clone(), Commit::WithRun)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(env.store.job(&started.id).await.unwrap().is_none());
    doomed.stop(Duration::from_millis(100)).await;
    assert!(env.store.job(&started.id).await.unwrap().is_none());
    assert_eq!(footprint(&env).await, before);
    assert_eq!(on_hand_and_adjusts(&env).await, (15, 2));

    // Disabled since the caller read it: the run's commit is refused and nothing exists.
    registry::set_enabled(&env.store, &ops, "pause", false)
        .await
        .unwrap();
    let before = footprint(&env).await;
    let started = starter
        .start(&key, def, payload, Commit::WithRun)
        .await
        .unwrap();
    let ended = started.ended.expect("runs here").await.unwrap();
    assert!(matches!(ended, Err(ExecError::Store(_))), "{ended:?}");
    assert!(env.store.job(&started.id).await.unwrap().is_none());
    assert_eq!(footprint(&env).await, before);
    assert_eq!(on_hand_and_adjusts(&env).await, (15, 2));
    engine.stop(Duration::from_secs(5)).await;
    env.cleanup().await;
}

async fn only_workflows_inside_the_database_without_retries_run_as_one_transaction(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    // `http.request` as a server registers it (a handler reaching outside).
    let probe = Probe::new(&env.store, &[Act::Succeed]);
    let exec = executor(&env, catalog(&[COUNT]), Some(probe));
    let wf = |text: &str| crate::exec_support::parse(text);
    assert!(exec.stays_in_database(&wf(COUNT)));
    assert!(exec.stays_in_database(&wf(PAUSE)));
    // An outside step anywhere (here inside a branch), a retry, a concurrency limit: no.
    let branch = "name: b\ntrigger: manual\npermissions:\n  hosts: [example.com]\nsteps:\n  - id: pick\n    uses: if\n    with: { condition: \"{{ true }}\" }\n    then:\n      - id: call\n        uses: http.request\n        with: { url: \"https://example.com/x\" }\n";
    assert!(!exec.stays_in_database(&wf(branch)));
    let retried = PAUSE.replace(
        "    uses: audit.note\n",
        "    uses: audit.note\n    retry: { attempts: 3 }\n",
    );
    assert!(!exec.stays_in_database(&wf(&retried)));
    let limited = PAUSE.replace(
        "trigger: manual\n",
        "trigger: manual\nconcurrency: { limit: 1 }\n",
    );
    assert!(!exec.stays_in_database(&wf(&limited)));
    env.cleanup().await;
}
