//! The mirror against the sandbox's NocoDB simulator, on SQLite and PostgreSQL: init
//! creates the table; rows are copied in order in batches of at most 100, paced within
//! the configured rate; 429s are waited out; verify passes, then names a row deleted or
//! edited by hand (which the mirror does not put back); a dropped column stops the mirror
//! with "run `stockade audit mirror init`"; a refused token is reported with its fix.

use std::time::Duration;

use serde_json::json;
use stockade_mirror::columns::ColumnProblem;
use stockade_mirror::verify::{Difference, verify};
use stockade_mirror::{InitOutcome, Mirror, MirrorConfig, Noco, NocoSinkConfig, init, state};
use stockade_sandbox::{NocoSim, SIM_BASE_TITLE};

use crate::support::{Backend, Env, gateway, wait_for};

const TOKEN: &str = "sim-token-0123456789abcdefghijklmnopqrstu";

fn config(sim: &NocoSim, credential: &str) -> NocoSinkConfig {
    NocoSinkConfig::new(
        &sim.base_url,
        SIM_BASE_TITLE,
        None,
        credential,
        Some(5.0),
        None,
    )
    .unwrap()
}

/// The `seq` cells of the simulator's table, in insertion order.
fn seqs(sim: &NocoSim, table: &str) -> Vec<i64> {
    sim.rows(table)
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect()
}

/// Wait until NocoDB holds exactly rows 1..=head; the head.
async fn caught_up(env: &Env, sim: &NocoSim, table: &str, secs: u64) -> i64 {
    wait_for(secs, "the mirror caught up", || async {
        let head = env.head().await;
        seqs(sim, table).len() as i64 >= head
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let head = env.head().await;
    assert_eq!(
        seqs(sim, table),
        (1..=head).collect::<Vec<_>>(),
        "in order, no gap, no duplicate"
    );
    head
}

async fn mirror_end_to_end(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    let sim = NocoSim::start(TOKEN).await.unwrap();
    let authority = sim.base_url.trim_start_matches("https://").to_owned();
    env.credential("noco", TOKEN, "127.0.0.1").await;
    let gw = gateway(&authority, &sim.ca_pem, Some(env.store.clone()), false);
    let cfg = config(&sim, "noco");
    let noco = Noco::connect(&gw, &env.vault, &cfg).await.unwrap();
    let InitOutcome::Created(table) = init(&noco).await.unwrap() else {
        panic!("not created")
    };
    assert_eq!(
        init(&noco).await.unwrap(),
        InitOutcome::Ready(table.clone())
    );

    env.append(250).await;
    let mirror = Mirror::start(
        env.deps(&gw),
        &MirrorConfig {
            nocodb: Some(cfg.clone()),
            ..MirrorConfig::default()
        },
    );
    // In order, from 1, no duplicate, no gap (egress anomalies may append rows meanwhile).
    caught_up(&env, &sim, &table, 60).await;
    // Batches of at most 100, and never more than 5 requests in any second.
    let reqs = sim.requests();
    assert!(reqs.iter().all(|r| r.rows <= 100));
    assert!(
        reqs.iter()
            .filter(|r| r.method == "POST" && r.rows == 100)
            .count()
            >= 2,
        "full batches"
    );
    for (i, r) in reqs.iter().enumerate() {
        let in_window = reqs[i..]
            .iter()
            .take_while(|q| q.at.duration_since(r.at) < Duration::from_secs(1))
            .count();
        assert!(in_window <= 6, "{in_window} requests within one second");
    }

    // 429s with Retry-After: waited out, then caught up, still no duplicate.
    sim.throttle(6, Some(1));
    env.append(30).await;
    let head = caught_up(&env, &sim, &table, 60).await;
    let st = state::get(&env.store, "nocodb").await.unwrap().unwrap();
    assert_eq!(st.acked_seq, head);

    let clean = verify(&env.store, &noco, &table).await.unwrap();
    assert_eq!((clean.difference, clean.nocodb_max), (None, head));
    assert_eq!(clean.rows_compared, head as u64);

    // A row deleted by hand: named by verify, and never put back by the running mirror.
    assert_eq!(sim.delete_where(&table, "seq", &json!(7)), 1);
    env.append(5).await;
    let head = env.head().await;
    wait_for(30, "new rows after the deletion", || async {
        seqs(&sim, &table).contains(&head)
    })
    .await;
    assert!(
        !seqs(&sim, &table).contains(&7),
        "the deleted row was silently re-inserted"
    );
    let found = verify(&env.store, &noco, &table).await.unwrap();
    assert_eq!(found.difference, Some(Difference::Missing { seq: 7 }));
    assert!(
        found
            .difference
            .unwrap()
            .to_string()
            .contains("row seq 7 is missing")
    );
    mirror.stop(Duration::from_secs(5)).await;

    // Edited cell and duplicate: named with seq and column.
    sim.edit_where(&table, ("seq", &json!(3)), ("actor", json!("someone")));
    let d = verify(&env.store, &noco, &table).await.unwrap().difference;
    assert_eq!(
        d,
        Some(Difference::Cell {
            seq: 3,
            column: "actor"
        })
    );

    // A column dropped by hand: init names it; a restarted mirror stops and says what to run.
    sim.drop_column(&table, "hash");
    let InitOutcome::Problems(_, problems) = init(&noco).await.unwrap() else {
        panic!("no problem found")
    };
    assert_eq!(
        problems,
        vec![ColumnProblem::Missing {
            title: "hash",
            uidt: "SingleLineText"
        }]
    );
    let mirror = Mirror::start(
        env.deps(&gw),
        &MirrorConfig {
            nocodb: Some(cfg.clone()),
            ..MirrorConfig::default()
        },
    );
    wait_for(30, "the column error recorded", || async {
        let s = state::get(&env.store, "nocodb").await.unwrap().unwrap();
        s.last_error.is_some_and(|e| {
            e.contains("column hash (SingleLineText) is missing")
                && e.contains("stockade audit mirror init")
        })
    })
    .await;
    mirror.stop(Duration::from_secs(5)).await;
    sim.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_to_the_simulator_on_sqlite() {
    mirror_end_to_end(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_to_the_simulator_on_postgres() {
    mirror_end_to_end(Backend::Postgres).await;
}

/// A token NocoDB refuses: nothing is copied, the error names the credential and the fix,
/// holds no token, and an alert is raised once failing longer than `alert_after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_reported_and_alerted_on_sqlite() {
    refused_token(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_reported_and_alerted_on_postgres() {
    refused_token(Backend::Postgres).await;
}

async fn refused_token(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    let sim = NocoSim::start(TOKEN).await.unwrap();
    let authority = sim.base_url.trim_start_matches("https://").to_owned();
    let wrong = "wrong-token-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
    env.credential("noco", wrong, "127.0.0.1").await;
    let gw = gateway(&authority, &sim.ca_pem, Some(env.store.clone()), true);
    let cfg = MirrorConfig {
        nocodb: Some(config(&sim, "noco")),
        alert_after: Duration::ZERO,
        ..MirrorConfig::default()
    };
    let mirror = Mirror::start(env.deps(&gw), &cfg);
    wait_for(30, "the refusal recorded and alerted", || async {
        let alerted: i64 = env
            .store
            .count(
                "SELECT COUNT(*) FROM events WHERE source = 'audit_mirror' AND kind = 'failing'",
                vec![],
            )
            .await
            .unwrap();
        alerted == 1
    })
    .await;
    let st = state::get(&env.store, "nocodb").await.unwrap().unwrap();
    let err = st.last_error.unwrap();
    assert!(
        err.contains("refused the API token in credential noco (HTTP 401)"),
        "{err}"
    );
    assert!(err.contains("stockade credential set noco"), "{err}");
    assert!(st.failures >= 1);
    mirror.stop(Duration::from_secs(5)).await;
    let texts: Vec<(String,)> = env
        .store
        .query_as(
            "SELECT detail FROM events UNION ALL SELECT COALESCE(last_error, '') FROM audit_mirror_state
             UNION ALL SELECT details FROM audit",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        texts.iter().all(|(t,)| !t.contains(wrong)),
        "the token was persisted"
    );
    assert!(
        sim.rows(&sim.table_id("audit_mirror").unwrap_or_default())
            .is_empty()
    );
    sim.shutdown().await;
    env.cleanup().await;
}

/// Two mirrors on one database (as two processes on one PostgreSQL): the lease lets one
/// copy at a time, so NocoDB gets every row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mirrors_share_one_lease() {
    let Some(env) = Env::new(Backend::Postgres).await else {
        return;
    };
    let sim = NocoSim::start(TOKEN).await.unwrap();
    let authority = sim.base_url.trim_start_matches("https://").to_owned();
    env.credential("noco", TOKEN, "127.0.0.1").await;
    let gw = gateway(&authority, &sim.ca_pem, Some(env.store.clone()), false);
    let cfg = config(&sim, "noco");
    let noco = Noco::connect(&gw, &env.vault, &cfg).await.unwrap();
    let InitOutcome::Created(table) = init(&noco).await.unwrap() else {
        panic!("not created")
    };
    env.append(450).await;
    let mcfg = MirrorConfig {
        nocodb: Some(cfg),
        ..MirrorConfig::default()
    };
    let a = Mirror::start(env.deps(&gw), &mcfg);
    let b = Mirror::start(env.deps(&gw), &mcfg);
    caught_up(&env, &sim, &table, 60).await;
    a.stop(Duration::from_secs(5)).await;
    b.stop(Duration::from_secs(5)).await;
    sim.shutdown().await;
    env.cleanup().await;
}
