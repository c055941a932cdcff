//! Triggers on both backends: schedules fire once per tick across two schedulers and
//! across a restart, with the `missed` catch-up rule; events enqueue one execution per
//! matching workflow, none for others, and never twice for a batch delivered again.

use serde_json::{Value, json};
use stockade_core::event::{Event, EventColumns, WorkflowFailure};
use stockade_core::{Actor, Environment};
use stockade_store::{AuditDetails, AuditEntry, Store, StoreOptions, sql_params};
use stockade_workflows::registry;
use stockade_workflows::triggers::{EventTriggers, Scheduler};

use crate::exec_support::{Backend, Env, both};

fn ops() -> Actor {
    Actor::User("usr_ops".into())
}

async fn apply(store: &Store, file: &str, text: &str) {
    let out = registry::apply(store, &ops(), &[(file.into(), text.into())])
        .await
        .unwrap();
    assert!(
        matches!(out[0].applied, registry::Applied::Stored { .. }),
        "{:?}",
        out[0]
    );
}

fn scheduled(name: &str, missed: &str) -> String {
    format!(
        "name: {name}\ntrigger: {{ schedule: {{ cron: \"* * * * *\", missed: {missed} }} }}\nsteps:\n  - id: a\n    uses: audit.note\n    with: {{ message: \"tick\" }}\n"
    )
}

fn listener(name: &str, kind: &str) -> String {
    format!(
        "name: {name}\ntrigger: {{ event: {{ kind: {kind} }} }}\npermissions: {{ events: [{kind}] }}\nsteps:\n  - id: a\n    uses: audit.note\n    with: {{ message: \"seen\" }}\n"
    )
}

async fn second_handle(env: &Env) -> Store {
    Store::open(&env.db.url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap()
}

/// Payloads of the workflow jobs of `workflow`.
async fn jobs_of(store: &Store, workflow: &str) -> Vec<Value> {
    let rows: Vec<String> = store
        .query_as(
            "SELECT payload FROM jobs WHERE kind = 'workflow' ORDER BY created_at_ms",
            vec![],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .filter(|p| p["workflow"] == json!(workflow))
        .collect()
}

/// The first whole minute (ms) after now plus a minute: after every test workflow's
/// activation.
fn next_minute() -> i64 {
    let now = stockade_core::time::now_ms();
    (now / 60_000 + 2) * 60_000
}

async fn two_schedulers_fire_one_job_per_tick(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    apply(&env.store, "tick.yaml", &scheduled("tick", "skip")).await;
    let other = second_handle(&env).await;
    let (a, b) = (
        Scheduler::new(env.store.clone(), 1_000),
        Scheduler::new(other.clone(), 1_000),
    );
    let t = next_minute();
    for tick in [t, t + 60_000, t + 120_000] {
        let (fa, fb) = tokio::join!(a.fire_due(tick + 200), b.fire_due(tick + 300));
        let fired = fa.unwrap().len() + fb.unwrap().len();
        assert_eq!(fired, 1, "tick {tick}");
        // Asking again, from either handle, fires nothing.
        assert!(a.fire_due(tick + 400).await.unwrap().is_empty());
        assert!(b.fire_due(tick + 500).await.unwrap().is_empty());
    }
    let jobs = jobs_of(&env.store, "tick").await;
    let ticks: Vec<_> = jobs
        .iter()
        .map(|p| p["trigger"]["tick_ms"].clone())
        .collect();
    assert_eq!(ticks, [json!(t), json!(t + 60_000), json!(t + 120_000)]);
    assert_eq!(jobs[0]["trigger"]["previous_fire"], Value::Null);
    assert_eq!(
        jobs[1]["trigger"]["previous_fire"],
        jobs[0]["trigger"]["scheduled_at"]
    );
    assert!(jobs.iter().all(|p| p["version"] == json!(1)));
    assert!(
        jobs.iter()
            .all(|p| p["trigger"]["catch_up"] == json!(false))
    );
    other.close().await;
    env.cleanup().await;
}

async fn a_restarted_scheduler_fires_a_tick_once(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    apply(&env.store, "tick.yaml", &scheduled("tick", "run_once")).await;
    let t = next_minute();
    let first = second_handle(&env).await;
    let fired = Scheduler::new(first.clone(), 1_000)
        .fire_due(t + 100)
        .await
        .unwrap();
    assert_eq!(fired.len(), 1);
    first.close().await;
    // A new process (new handle, same database) over the same tick.
    let again = second_handle(&env).await;
    let s = Scheduler::new(again.clone(), 1_000);
    assert!(s.fire_due(t + 900).await.unwrap().is_empty());
    assert_eq!(jobs_of(&env.store, "tick").await.len(), 1);
    // Its own clock behind the first one's cannot fire an older tick.
    assert!(s.fire_due(t - 60_000 + 100).await.unwrap().is_empty());
    assert_eq!(jobs_of(&env.store, "tick").await.len(), 1);
    again.close().await;
    env.cleanup().await;
}

async fn missed_ticks_run_once_or_are_skipped(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    apply(&env.store, "once.yaml", &scheduled("once", "run_once")).await;
    apply(&env.store, "skip.yaml", &scheduled("skip", "skip")).await;
    let s = Scheduler::new(env.store.clone(), 1_000);
    let t = next_minute();
    assert_eq!(s.fire_due(t + 100).await.unwrap().len(), 2);
    // Down for ten minutes: ticks t+1 … t+10 minutes were missed.
    let back = t + 10 * 60_000 + 30_000;
    let fired = s.fire_due(back).await.unwrap();
    let once = fired.iter().find(|f| f.workflow == "once").unwrap();
    assert!(once.job.is_some() && once.catch_up);
    let skip = fired.iter().find(|f| f.workflow == "skip").unwrap();
    assert!(skip.job.is_none());
    assert!(s.fire_due(back + 100).await.unwrap().is_empty());
    let once_jobs = jobs_of(&env.store, "once").await;
    assert_eq!(once_jobs.len(), 2, "one on time, one catch-up");
    assert_eq!(once_jobs[1]["trigger"]["missed"], json!(10));
    assert_eq!(once_jobs[1]["trigger"]["tick_ms"], json!(t + 10 * 60_000));
    assert_eq!(
        jobs_of(&env.store, "skip").await.len(),
        1,
        "nothing caught up"
    );
    // The next tick on time fires for both again.
    assert_eq!(s.fire_due(t + 11 * 60_000 + 100).await.unwrap().len(), 2);
    assert_eq!(jobs_of(&env.store, "skip").await.len(), 2);
    env.cleanup().await;
}

fn order_created(order: &str) -> Event {
    Event::Other(EventColumns {
        source: "order".into(),
        kind: "created".into(),
        caller: "connection:shop".into(),
        operation: "order.ingest".into(),
        detail: json!({ "connection": "shop", "order": order }).to_string(),
        ..EventColumns::default()
    })
}

async fn append(store: &Store, event: &Event) {
    store
        .append_event(
            &Actor::System("test"),
            event,
            AuditEntry::new("test.event", "events", AuditDetails::new()),
        )
        .await
        .unwrap();
}

async fn events_enqueue_one_execution_per_matching_workflow(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    for (file, text) in [
        ("a.yaml", listener("note-a", "order.created")),
        ("b.yaml", listener("note-b", "order.created")),
        ("off.yaml", listener("off", "order.created")),
        ("over.yaml", listener("over", "oversell")),
    ] {
        apply(&env.store, file, &text).await;
    }
    registry::set_enabled(&env.store, &ops(), "off", false)
        .await
        .unwrap();
    let subscriber = EventTriggers::subscribe(env.store.clone()).await.unwrap();
    append(&env.store, &order_created("o-1")).await;
    assert_eq!(subscriber.handle_batch(100).await.unwrap(), 1);
    assert_eq!(subscriber.handle_batch(100).await.unwrap(), 0);
    for name in ["note-a", "note-b"] {
        let jobs = jobs_of(&env.store, name).await;
        assert_eq!(jobs.len(), 1, "{name}");
        assert_eq!(jobs[0]["trigger"]["event"]["order"], json!("o-1"));
        assert_eq!(jobs[0]["trigger"]["event_kind"], json!("order.created"));
    }
    assert!(jobs_of(&env.store, "off").await.is_empty());
    assert!(jobs_of(&env.store, "over").await.is_empty());

    // A crash after the jobs were written but before the cursor moved: the batch is
    // delivered again and enqueues nothing new (dedup by workflow and event id).
    append(&env.store, &order_created("o-2")).await;
    let stream = stockade_store::events::EventStream::subscribe(
        &env.store,
        stockade_workflows::triggers::events::SUBSCRIBER,
    )
    .await
    .unwrap();
    let batch = stream.next_batch(100).await.unwrap();
    for job in subscriber.plan(&batch).await.unwrap() {
        env.store
            .enqueue(&Actor::System("test"), &job)
            .await
            .unwrap();
    }
    let replay = EventTriggers::subscribe(second_handle(&env).await)
        .await
        .unwrap();
    let (x, y) = tokio::join!(replay.handle_batch(100), subscriber.handle_batch(100));
    // Whichever reads first handles the batch; the other finds it handled or empty.
    assert!(x.unwrap() + y.unwrap() >= 1);
    for name in ["note-a", "note-b"] {
        assert_eq!(jobs_of(&env.store, name).await.len(), 2, "{name}");
    }
    let cursor = env
        .store
        .count(
            "SELECT last_id FROM event_cursors WHERE subscriber = $1",
            sql_params!["workflow-triggers"],
        )
        .await
        .unwrap();
    assert_eq!(Some(cursor), batch.last_id());
    env.cleanup().await;
}

async fn workflow_failed_listeners_cannot_loop(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    apply(&env.store, "l.yaml", &listener("watch", "workflow.failed")).await;
    let subscriber = EventTriggers::subscribe(env.store.clone()).await.unwrap();
    let failed = |workflow: &str| {
        Event::WorkflowFailed(WorkflowFailure {
            workflow: workflow.into(),
            execution: format!("job_{workflow}"),
            ..WorkflowFailure::default()
        })
    };
    append(&env.store, &failed("nightly")).await;
    append(&env.store, &failed("watch")).await;
    subscriber.handle_batch(100).await.unwrap();
    let jobs = jobs_of(&env.store, "watch").await;
    assert_eq!(jobs.len(), 1, "its own failure triggers nothing");
    assert_eq!(jobs[0]["trigger"]["event"]["workflow"], json!("nightly"));
    assert_eq!(jobs[0]["error_depth"], json!(1));
    env.cleanup().await;
}

both!(
    two_schedulers_fire_one_job_per_tick,
    a_restarted_scheduler_fires_a_tick_once,
    missed_ticks_run_once_or_are_skipped,
    events_enqueue_one_execution_per_matching_workflow,
    workflow_failed_listeners_cannot_loop
);
