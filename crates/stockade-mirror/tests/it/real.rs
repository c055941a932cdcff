//! The mirror against a REAL NocoDB 0.301.3 (installed by `./scripts/test`; see
//! `stockade_sandbox::nocodb_real`): init creates the table; rows are copied in order;
//! NocoDB killed while rows are written and started again → the mirror catches up with
//! no duplicate and no gap (verify passes); a row deleted by hand → verify names its seq
//! and the mirror does not put it back; a column deleted by hand → init names it.
//!
//! Without an install the test prints `SKIPPED: …` and passes, except under CI /
//! `STOCKADE_REQUIRE_ALL`, where it fails.

use std::time::Duration;

use serde_json::json;
use stockade_egress::Method;
use stockade_mirror::columns::ColumnProblem;
use stockade_mirror::verify::{Difference, verify};
use stockade_mirror::{InitOutcome, Mirror, MirrorConfig, Noco, NocoSinkConfig, init, state};
use stockade_sandbox::nocodb_real::{RealNoco, installed_nocodb};

use crate::support::{Backend, Env, gateway, wait_for};

async fn caught_up(env: &Env, noco: &Noco, table: &str, secs: u64) -> i64 {
    wait_for(secs, "the mirror caught up", || async {
        let head = env.head().await;
        noco.max_seq(table).await.is_ok_and(|m| m >= head)
    })
    .await;
    env.head().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_to_a_real_nocodb() {
    let Some(dir) = installed_nocodb() else {
        let how = "run ./scripts/test --setup-only (installs NocoDB 0.301.3 into \
                   ~/.cache/stockade/nocodb-0.301.3), or set STOCKADE_TEST_NOCODB_DIR";
        assert!(
            !stockade_testkit::require_all(),
            "real NocoDB not installed and CI forbids skipping: {how}"
        );
        stockade_testkit::skipped(&format!("real NocoDB not installed ({how})"));
        return;
    };
    let mut real = RealNoco::start(&dir).await.expect("NocoDB starts");
    let (token, _base_id) = real.set_up("audit").await.expect("NocoDB set-up");
    let env = Env::new(Backend::Sqlite).await.unwrap();
    env.credential("noco", &token, "127.0.0.1").await;
    let gw = gateway(
        &real.authority(),
        &real.proxy.ca_pem,
        Some(env.store.clone()),
        false,
    );
    let cfg = NocoSinkConfig::new(real.base_url(), "audit", None, "noco", None, None).unwrap();
    let noco = Noco::connect(&gw, &env.vault, &cfg).await.unwrap();
    let InitOutcome::Created(table) = init(&noco).await.unwrap() else {
        panic!("not created")
    };
    assert_eq!(
        init(&noco).await.unwrap(),
        InitOutcome::Ready(table.clone()),
        "{}",
        real.log_tail()
    );

    env.append(250).await;
    let mcfg = MirrorConfig {
        nocodb: Some(cfg.clone()),
        ..MirrorConfig::default()
    };
    let mirror = Mirror::start(env.deps(&gw), &mcfg);
    let head = caught_up(&env, &noco, &table, 60).await;
    let v = verify(&env.store, &noco, &table).await.unwrap();
    assert_eq!(v.difference, None, "{}", real.log_tail());
    assert!(v.rows_compared as i64 >= head);

    // NocoDB down (killed) while rows are written, then back: caught up, no dup, no gap.
    real.kill();
    env.append(300).await;
    wait_for(30, "the outage recorded", || async {
        let s = state::get(&env.store, "nocodb").await.unwrap().unwrap();
        s.failing_since_ms.is_some() && s.last_error.is_some_and(|e| e.contains("unreachable"))
    })
    .await;
    real.restart().await.expect("NocoDB restarts");
    let head = caught_up(&env, &noco, &table, 120).await;
    let v = verify(&env.store, &noco, &table).await.unwrap();
    assert_eq!(v.difference, None);
    assert_eq!(v.nocodb_max, head);
    assert_eq!(v.rows_compared as i64, head, "every row exactly once");
    let s = state::get(&env.store, "nocodb").await.unwrap().unwrap();
    assert_eq!((s.failing_since_ms, s.failures), (None, 0), "recovered");

    // A row deleted by hand: verify names it; the mirror never re-inserts it.
    let admin = real.gateway().unwrap();
    let q = format!("/api/v2/tables/{table}/records?where=(seq,eq,10)&fields=Id");
    let found = real
        .request(&admin, Method::GET, &q, &token, None)
        .await
        .unwrap();
    let id = found["list"][0]["Id"].clone();
    let path = format!("/api/v2/tables/{table}/records");
    real.request(
        &admin,
        Method::DELETE,
        &path,
        &token,
        Some(json!([{ "Id": id }])),
    )
    .await
    .unwrap();
    env.append(20).await;
    caught_up(&env, &noco, &table, 60).await;
    let v = verify(&env.store, &noco, &table).await.unwrap();
    assert_eq!(v.difference, Some(Difference::Missing { seq: 10 }));
    mirror.stop(Duration::from_secs(5)).await;

    // A column deleted by hand: init names it, changes nothing.
    let meta = real
        .request(
            &admin,
            Method::GET,
            &format!("/api/v2/meta/tables/{table}"),
            &token,
            None,
        )
        .await
        .unwrap();
    let col = meta["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["title"] == json!("prev_hash"))
        .unwrap();
    let col_id = col["id"].as_str().unwrap();
    real.request(
        &admin,
        Method::DELETE,
        &format!("/api/v2/meta/columns/{col_id}"),
        &token,
        None,
    )
    .await
    .unwrap();
    let InitOutcome::Problems(_, p) = init(&noco).await.unwrap() else {
        panic!("the deleted column was not found")
    };
    assert_eq!(
        p,
        vec![ColumnProblem::Missing {
            title: "prev_hash",
            uidt: "SingleLineText"
        }]
    );
    env.cleanup().await;
    drop(real);
}
