//! Two engines, as two server processes on one database (two store handles, two workers
//! each, short leases): every execution runs to the end exactly once. Each step's effect
//! (an audit row under the execution's actor) is counted per execution, so a job run by
//! both engines, or a step repeated after a lease moved, shows as a count above one.
//! n8n #15878 / #28322: duplicate executions in queue mode.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use stockade_core::{Actor, Environment};
use stockade_store::{JobState, Store, StoreOptions};
use stockade_workflows::engine::{Engine, EngineConfig};
use stockade_workflows::exec::ExecutionPayload;
use stockade_workflows::registry;

use crate::exec_support::{Backend, Env, both};

const FLOW: &str = "name: pair\ntrigger: manual\nsteps:\n  - id: one\n    uses: audit.note\n    with: { message: \"one\" }\n  - id: two\n    uses: audit.note\n    with: { message: \"two\" }\n  - id: three\n    uses: audit.note\n    with: { message: \"three\" }\n";

/// Executions enqueued.
const RUNS: usize = 40;

fn config() -> EngineConfig {
    EngineConfig {
        workers: 2,
        // Short enough that a slow commit under load can lose its lease to the other
        // engine: the fencing token, not luck, keeps the count at one.
        lease_ms: 1_500,
        poll: Duration::from_millis(20),
        reap_every: Duration::from_millis(50),
        ..EngineConfig::default()
    }
}

async fn two_engines_never_run_one_execution_twice(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    let ops = Actor::User("usr_ops".into());
    registry::apply(&env.store, &ops, &[("pair.yaml".into(), FLOW.into())])
        .await
        .unwrap();
    // A second handle on the same database: another process, as far as the store knows.
    let other = Store::open(&env.db.url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap();
    let a = Engine::start(env.store.clone(), config());
    let b = Engine::start(other.clone(), config());

    let mut jobs = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        // Enqueue through both handles, as manual runs from either process would.
        let store = if i % 2 == 0 { &env.store } else { &other };
        let p = ExecutionPayload::new("pair", json!({}), json!({ "manual": true }));
        jobs.push(store.enqueue(&ops, &p.job()).await.unwrap().id);
    }

    let mut pending: Vec<&String> = jobs.iter().collect();
    for _ in 0..600 {
        let mut still = Vec::new();
        for j in pending {
            let state = env.store.job(j).await.unwrap().unwrap().state;
            assert_ne!(state, JobState::Failed, "execution {j} failed");
            if state != JobState::Succeeded {
                still.push(j);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        pending.is_empty(),
        "{} executions never finished",
        pending.len()
    );
    a.stop(Duration::from_secs(3)).await;
    b.stop(Duration::from_secs(3)).await;

    // Every execution noted each of its three steps exactly once.
    let mut per_run: BTreeMap<String, usize> = BTreeMap::new();
    for row in env.store.audit_rows(0, 100_000).await.unwrap() {
        if row.action == "workflow.note" {
            *per_run.entry(row.actor).or_default() += 1;
        }
    }
    for j in &jobs {
        let actor = format!("workflow:pair@1/{j}");
        assert_eq!(per_run.get(&actor), Some(&3), "{actor}: {per_run:?}");
    }
    assert_eq!(per_run.len(), RUNS, "no note under another actor");
    for j in &jobs {
        let journal = env.store.journal(j).await.unwrap();
        let ids: Vec<_> = journal.iter().map(|s| s.step_id.as_str()).collect();
        assert_eq!(ids, ["one", "two", "three"], "{j}");
    }
    // The audit chain is whole after two writers interleaved.
    let report = env.store.verify_audit(None).await.unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    other.close().await;
    env.cleanup().await;
}

both!(two_engines_never_run_one_execution_twice);
