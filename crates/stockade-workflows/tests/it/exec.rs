//! The executor on both backends: runs to completion with journal rows, resumes after a
//! crash without repeating committed steps, honours retry and continue_on_error, refuses
//! missing values, fails a parent with its sub-workflow, and is fenced.

use std::time::Duration;

use serde_json::json;
use stockade_store::{JobState, StepStatus, sql_params};
use stockade_workflows::exec::{ExecError, RunOutcome};

use crate::exec_support::{Act, Backend, Env, Probe, both, catalog, executor};

both!(
    five_steps_run_to_completion_with_journal_rows,
    a_crash_after_step_three_resumes_at_step_four_with_the_same_key,
    retry_then_continue_on_error_are_both_honoured,
    a_missing_value_fails_the_step_instead_of_reading_null,
    a_failing_sub_workflow_fails_its_parent,
    a_stale_fencing_token_cannot_commit_a_step,
    control_steps_choose_their_branches_and_bound_their_loops,
    a_crash_inside_a_loop_resumes_at_the_item_in_flight,
    a_step_longer_than_the_lease_keeps_its_lease,
);

const FIVE: &str = r#"
name: five
trigger: manual
inputs:
  sku: { type: string, default: MUG-1 }
steps:
  - id: a
    uses: audit.note
    with: { message: "a {{ inputs.sku }}" }
  - id: b
    uses: audit.note
    with: { message: "b after {{ steps.a.output.noted }}" }
  - id: c
    uses: audit.note
    with: { message: "c" }
  - id: d
    uses: http.request
    with: { url: "https://example.com/hook" }
  - id: e
    uses: audit.note
    with: { message: "e saw {{ steps.d.output.status }}" }
"#;

async fn five_steps_run_to_completion_with_journal_rows(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let probe = Probe::new(&env.store, &[Act::Succeed]);
    let exec = executor(&env, catalog(&[FIVE]), Some(probe.clone()));
    let id = env.enqueue("five", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    assert_eq!(
        exec.run_claimed(lease).await.expect("runs"),
        RunOutcome::Succeeded
    );
    let job = env.store.job(&id).await.unwrap().expect("job");
    assert_eq!(job.state, JobState::Succeeded);
    let journal = env.store.journal(&id).await.unwrap();
    let steps: Vec<(&str, StepStatus)> = journal
        .iter()
        .map(|r| (r.step_id.as_str(), r.status))
        .collect();
    assert_eq!(
        steps,
        ["a", "b", "c", "d", "e"].map(|s| (s, StepStatus::Succeeded))
    );
    assert_eq!(env.actions("workflow.note").await, 4);
    let actors: Vec<(String, String)> = env
        .store
        .query_as(
            "SELECT actor, details FROM audit WHERE action = 'workflow.note' ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    for (actor, _) in &actors {
        assert_eq!(actor, &format!("workflow:five@1/{id}"));
    }
    assert!(actors[0].1.contains("a MUG-1"), "{}", actors[0].1);
    assert!(actors[1].1.contains("b after True"), "{}", actors[1].1);
    assert!(actors[3].1.contains("e saw 200"), "{}", actors[3].1);
    env.cleanup().await;
}

async fn a_crash_after_step_three_resumes_at_step_four_with_the_same_key(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    // Step d hangs on its first call: the process "dies" there (the run is dropped).
    let probe = Probe::new(&env.store, &[Act::Hang, Act::Succeed]);
    let exec = executor(&env, catalog(&[FIVE]), Some(probe.clone())).lease_ms(300);
    let id = env.enqueue("five", json!({})).await;
    let lease = env.claim("w1", 300).await.expect("a job");
    let first = tokio::time::timeout(Duration::from_millis(1500), exec.run_claimed(lease)).await;
    assert!(first.is_err(), "the first run died in step d");
    assert_eq!(
        env.actions("workflow.note").await,
        3,
        "a, b and c committed"
    );
    // Its lease expires; the reaper re-queues the job; another worker resumes it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(env.store.reap_expired(100).await.unwrap().requeued, 1);
    let lease = env.claim("w2", 30_000).await.expect("re-queued");
    let exec2 = executor(&env, catalog(&[FIVE]), Some(probe.clone()));
    assert_eq!(
        exec2.run_claimed(lease).await.expect("resumes"),
        RunOutcome::Succeeded
    );
    // a, b, c ran once each; e once; d twice under one idempotency key.
    assert_eq!(env.actions("workflow.note").await, 4);
    let resource_count = |r: &'static str| {
        env.store.count(
            "SELECT COUNT(*) FROM audit WHERE action = 'workflow.note' AND details LIKE $1",
            sql_params![r],
        )
    };
    for msg in ["%\"a MUG-1\"%", "%\"c\"%"] {
        assert_eq!(resource_count(msg).await.unwrap(), 1, "{msg}");
    }
    let calls = probe.calls();
    assert_eq!(calls, vec![(format!("{id}/d"), 1), (format!("{id}/d"), 2)]);
    assert_eq!(env.actions("probe.effect").await, 1);
    let d: Vec<StepStatus> = env
        .store
        .journal(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.step_id == "d")
        .map(|r| r.status)
        .collect();
    assert_eq!(d, vec![StepStatus::Running, StepStatus::Succeeded]);
    env.cleanup().await;
}

async fn retry_then_continue_on_error_are_both_honoured(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let wf = r#"
name: flaky
trigger: manual
steps:
  - id: call
    uses: http.request
    with: { url: "https://example.com/x" }
    retry: { attempts: 3, initial: PT0.01S, max: PT0.05S, on: transient }
    continue_on_error: true
  - id: after
    uses: audit.note
    with: { message: "call failed: {{ steps.call.output.failed }}" }
"#;
    let probe = Probe::new(&env.store, &[Act::FailTransient]);
    let exec = executor(&env, catalog(&[wf]), Some(probe.clone()));
    let id = env.enqueue("flaky", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    // Retried first (three attempts, each journaled), then continued.
    assert_eq!(
        probe.calls().iter().map(|c| c.1).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let call: Vec<StepStatus> = env
        .store
        .journal(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.step_id == "call")
        .map(|r| r.status)
        .collect();
    assert_eq!(call, vec![StepStatus::Failed; 3]);
    let details: Vec<String> = env
        .store
        .query_as(
            "SELECT details FROM audit WHERE action = 'workflow.note'",
            vec![],
        )
        .await
        .unwrap();
    assert!(details[0].contains("call failed: True"), "{details:?}");

    // Retried until it works: the third attempt's output is used.
    let wf = wf.replace(
        "call failed: {{ steps.call.output.failed }}",
        "answered by call {{ steps.call.output.call }}",
    );
    let probe = Probe::new(
        &env.store,
        &[Act::FailTransient, Act::FailTransient, Act::Succeed],
    );
    let exec = executor(&env, catalog(&[&wf]), Some(probe.clone()));
    env.enqueue("flaky", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    assert_eq!(probe.calls().len(), 3);
    assert_eq!(env.actions("probe.effect").await, 1);
    let details: Vec<String> = env
        .store
        .query_as(
            "SELECT details FROM audit WHERE action = 'workflow.note' ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    assert!(details[1].contains("answered by call 3"), "{details:?}");
    env.cleanup().await;
}

async fn a_missing_value_fails_the_step_instead_of_reading_null(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let wf = r#"
name: strict
trigger: manual
steps:
  - id: note
    uses: audit.note
    with: { message: "sku {{ inputs.nope }}" }
"#;
    let exec = executor(&env, catalog(&[wf]), None);
    let id = env.enqueue("strict", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    let RunOutcome::Failed(event) = exec.run_claimed(lease).await.unwrap() else {
        panic!("the execution fails")
    };
    assert_eq!(
        (event.class.as_str(), event.step.as_str()),
        ("expression", "note")
    );
    assert_eq!(
        env.actions("workflow.note").await,
        0,
        "nothing noted with a null"
    );
    let job = env.store.job(&id).await.unwrap().expect("job");
    assert_eq!(job.state, JobState::Failed);
    let journal = env.store.journal(&id).await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].status, StepStatus::Failed);
    assert!(
        journal[0]
            .error
            .as_deref()
            .unwrap_or("")
            .starts_with("expression:")
    );
    env.cleanup().await;
}

async fn a_failing_sub_workflow_fails_its_parent(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let child = r#"
name: child
trigger: manual
steps:
  - id: inner
    uses: audit.note
    with: { message: "child ran" }
  - id: stop
    uses: fail
    with: { message: "supplier feed is empty" }
"#;
    let parent = r#"
name: parent
trigger: manual
steps:
  - id: call
    uses: workflow.call
    with: { workflow: child }
  - id: after
    uses: audit.note
    with: { message: "parent went on" }
"#;
    let exec = executor(&env, catalog(&[child, parent]), None);
    let id = env.enqueue("parent", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    let RunOutcome::Failed(event) = exec.run_claimed(lease).await.unwrap() else {
        panic!("the parent fails with its child")
    };
    assert_eq!(
        (event.step.as_str(), event.class.as_str()),
        ("call", "subworkflow")
    );
    assert!(event.message.contains("call/stop"), "{}", event.message);
    assert!(
        event.message.contains("supplier feed is empty"),
        "{}",
        event.message
    );
    assert_eq!(
        env.actions("workflow.note").await,
        1,
        "only the child's note"
    );
    let child_actor: Vec<String> = env
        .store
        .query_as(
            "SELECT actor FROM audit WHERE action = 'workflow.note'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(child_actor, vec![format!("workflow:child@1/{id}")]);
    let steps: Vec<(String, StepStatus)> = env
        .store
        .journal(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.step_id, r.status))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("call".to_owned(), StepStatus::Failed),
            ("call/inner".to_owned(), StepStatus::Succeeded),
            ("call/stop".to_owned(), StepStatus::Failed),
        ]
    );
    assert_eq!(
        env.store.job(&id).await.unwrap().unwrap().state,
        JobState::Failed
    );
    env.cleanup().await;
}

async fn a_stale_fencing_token_cannot_commit_a_step(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let wf = r#"
name: slow
trigger: manual
steps:
  - id: grab
    uses: http.request
    with: { url: "https://example.com/x" }
"#;
    let probe = Probe::new(&env.store, &[Act::LoseLease]);
    let exec = executor(&env, catalog(&[wf]), Some(probe.clone()));
    let id = env.enqueue("slow", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    let before = env.count("SELECT COUNT(*) FROM audit").await;
    let refused = exec.run_claimed(lease).await;
    assert!(matches!(refused, Err(ExecError::Fenced)), "{refused:?}");
    // Nothing of the slow worker's step commit was written: no effect, no journal
    // outcome, no audit row.
    assert_eq!(env.actions("probe.effect").await, 0);
    assert_eq!(env.count("SELECT COUNT(*) FROM audit").await, before);
    let journal = env.store.journal(&id).await.unwrap();
    assert!(
        journal.iter().all(|r| r.status == StepStatus::Running),
        "{journal:?}"
    );
    let job = env.store.job(&id).await.unwrap().expect("job");
    assert_eq!(
        (job.state, job.lease_owner.as_deref()),
        (JobState::Running, Some("worker-2"))
    );
    env.cleanup().await;
}

async fn control_steps_choose_their_branches_and_bound_their_loops(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let wf = r#"
name: control
trigger: manual
inputs:
  skus: { type: array }
  mode: { type: string }
steps:
  - id: check
    uses: if
    with: { condition: "inputs.skus | length > 1" }
    then:
      - id: many
        uses: audit.note
        with: { message: "many" }
    else:
      - id: few
        uses: audit.note
        with: { message: "few" }
  - id: route
    uses: switch
    with: { value: "{{ inputs.mode }}" }
    cases:
      fast:
        - id: fast
          uses: audit.note
          with: { message: "fast" }
    default:
      - id: slow
        uses: audit.note
        with: { message: "slow" }
  - id: each
    uses: for_each
    with: { items: "{{ inputs.skus }}", max_items: 3 }
    steps:
      - id: per_sku
        uses: audit.note
        with: { message: "sku {{ item }} at {{ index }}" }
"#;
    let exec = executor(&env, catalog(&[wf]), None);
    let id = env
        .enqueue("control", json!({ "skus": ["A", "B"], "mode": "fast" }))
        .await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    let notes: Vec<String> = env
        .store
        .query_as(
            "SELECT details FROM audit WHERE action = 'workflow.note' ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    let texts: Vec<&str> = ["many", "fast", "sku A at 0", "sku B at 1"].to_vec();
    assert_eq!(notes.len(), texts.len(), "{notes:?}");
    for (n, t) in notes.iter().zip(texts) {
        assert!(n.contains(&format!("\"{t}\"")), "{n} / {t}");
    }
    let paths: Vec<String> = env
        .store
        .journal(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.step_id)
        .collect();
    assert!(paths.contains(&"each#1/per_sku".to_owned()), "{paths:?}");
    assert!(paths.contains(&"check/many".to_owned()), "{paths:?}");

    // More items than max_items: refused, nothing of the body runs.
    env.enqueue(
        "control",
        json!({ "skus": ["A", "B", "C", "D"], "mode": "x" }),
    )
    .await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    let RunOutcome::Failed(e) = exec.run_claimed(lease).await.unwrap() else {
        panic!("too many items")
    };
    assert_eq!((e.step.as_str(), e.class.as_str()), ("each", "invalid"));
    assert_eq!(
        env.actions("workflow.note").await,
        4 + 2,
        "many + slow only"
    );
    env.cleanup().await;
}

async fn a_crash_inside_a_loop_resumes_at_the_item_in_flight(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let wf = r#"
name: loop
trigger: manual
steps:
  - id: each
    uses: for_each
    with: { items: ["A", "B", "C"] }
    steps:
      - id: note
        uses: audit.note
        with: { message: "item {{ item }}" }
      - id: push
        uses: http.request
        with: { url: "https://example.com/{{ item }}" }
"#;
    // The push of item B (the second call) hangs: the process dies there.
    let probe = Probe::new(&env.store, &[Act::Succeed, Act::Hang, Act::Succeed]);
    let exec = executor(&env, catalog(&[wf]), Some(probe.clone())).lease_ms(300);
    let id = env.enqueue("loop", json!({})).await;
    let lease = env.claim("w1", 300).await.expect("a job");
    let first = tokio::time::timeout(Duration::from_millis(1500), exec.run_claimed(lease)).await;
    assert!(first.is_err(), "died in item B's push");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(env.store.reap_expired(100).await.unwrap().requeued, 1);
    let lease = env.claim("w2", 30_000).await.expect("re-queued");
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    // Each item's note once; B's push re-ran under its own key; A's push did not re-run.
    for item in ["A", "B", "C"] {
        let n = env
            .store
            .count(
                "SELECT COUNT(*) FROM audit WHERE action = 'workflow.note' AND details LIKE $1",
                sql_params![format!("%\"item {item}\"%")],
            )
            .await
            .unwrap();
        assert_eq!(n, 1, "{item}");
    }
    let keys: Vec<String> = probe.calls().into_iter().map(|c| c.0).collect();
    assert_eq!(
        keys,
        vec![
            format!("{id}/each#0/push"),
            format!("{id}/each#1/push"),
            format!("{id}/each#1/push"),
            format!("{id}/each#2/push"),
        ]
    );
    env.cleanup().await;
}

async fn a_step_longer_than_the_lease_keeps_its_lease(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let wf = r#"
name: long
trigger: manual
steps:
  - id: slow
    uses: http.request
    with: { url: "https://example.com/x" }
"#;
    let probe = Probe::new(&env.store, &[Act::Slow]);
    let exec = executor(&env, catalog(&[wf]), Some(probe)).lease_ms(200);
    env.enqueue("long", json!({})).await;
    let lease = env.claim("w1", 200).await.expect("a job");
    let store = env.store.clone();
    let reaper = tokio::spawn(async move {
        let mut requeued = 0;
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(70)).await;
            requeued += store.reap_expired(100).await.unwrap().requeued;
        }
        requeued
    });
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    assert_eq!(reaper.await.unwrap(), 0, "the heartbeat kept the lease");
    env.cleanup().await;
}
