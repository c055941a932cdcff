//! Scale-out on PostgreSQL, as an operator runs it: three `stockade serve` processes on
//! one database (two `--role all`, one `--role worker`), the simulators delivering
//! signed webhooks to the first, orders flowing, the second SIGKILLed mid-run and the
//! worker later. Then: every order stored exactly once, the ledger sums right, every
//! channel converges, each connection was pushed by one process at a time (the
//! simulators record the caller's process id from the User-Agent), connections were
//! shared one per process and taken over after the kills, the audit chain verifies, and
//! a revoked API key fails on every API process within one second. Through the kills a
//! workflow fires every second and alerts run across the processes: no step ran twice,
//! no alert was lost or sent twice (`scale_out_once`).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::harness::{Sandbox, drop_schema, pg_schema_url};
use crate::market_run::{check_stock, validate_ebay, wait_converged};
use crate::scale_out_rig::{Rig, orders_stored_once, start_node};
use crate::sync::{
    Admin, MARKETS, Proc, SandboxInfo, delivery_outcomes, drain, free_port, place, sandbox_orders,
    sku_list,
};
use reqwest::StatusCode;

/// Orders per marketplace per round (Amazon's own order-read limit, which the
/// connector keeps to, is what bounds this).
const PER_ROUND: usize = 4;
const ROUNDS: usize = 16;
const KILL_SECOND_AT: usize = 5;
const KILL_WORKER_AT: usize = 10;

pub(crate) async fn rows<T: stockade_store::FromRow>(url: &str, sql: &'static str) -> Vec<T> {
    let url = stockade_store::DatabaseUrl::parse(url).unwrap();
    let store =
        stockade_store::Store::open(&url, stockade_core::Environment::Dev, &Default::default())
            .await
            .unwrap();
    let rows = store.query_as(sql, vec![]).await.unwrap();
    store.close().await;
    rows
}

/// The quantity pushes the simulators recorded: (started, ended, node) per marketplace.
async fn pushes(admin: &Admin, info: &SandboxInfo) -> BTreeMap<String, Vec<(i64, i64, String)>> {
    let mut out = BTreeMap::new();
    for name in MARKETS {
        let calls = admin
            .get(format!("{}/_sandbox/callers", info.m(name).base))
            .await;
        let mut v: Vec<(i64, i64, String)> = calls
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                let p = c["path"].as_str().unwrap();
                p.contains("inventory/update")
                    || p.contains("bulk_update_price_quantity")
                    || p.starts_with("/listings/")
                    || p.starts_with("/feeds/")
            })
            .map(|c| {
                let ua = c["user_agent"].as_str().unwrap();
                let node = ua
                    .split_once(" node/")
                    .map(|(_, n)| n.to_owned())
                    .unwrap_or_else(|| panic!("no process id in the User-Agent {ua:?}"));
                (
                    c["started_ms"].as_i64().unwrap(),
                    c["ended_ms"].as_i64().unwrap(),
                    node,
                )
            })
            .collect();
        v.sort();
        out.insert(name.to_owned(), v);
    }
    out
}

/// The node id's process id (`ROLE-HOST-PID-RANDOM`; an alert sender's `PID-RANDOM`).
pub(crate) fn pid_of(node: &str) -> u32 {
    let parts: Vec<&str> = node.rsplitn(3, '-').collect();
    parts[1].parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_one_postgres_share_the_work_and_survive_two_sigkills() {
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let started = Instant::now();
    let Rig {
        sb,
        ports,
        hook_base,
        server_ca,
        info,
        admin,
        once,
        _sandbox: sandbox,
    } = Rig::start(&url, 3).await;
    let base = |name: &str| info.m(name).base.clone();
    let key = sb
        .run(&["apikey", "create", "--name", "probe", "--role", "viewer"])
        .expect_code(0)
        .stdout()
        .trim()
        .to_owned();

    // Three processes: two serve everything, one only works. b starts first and takes
    // the alert channel, so its kill hands the channel over.
    let b = start_node(&sb, ports[1], "b", "all");
    once.wait_for_channel_holder(&url, b.pid()).await;
    let mut nodes: Vec<Option<Proc>> = vec![
        Some(start_node(&sb, ports[0], "a", "all")),
        Some(b),
        Some(start_node(&sb, ports[2], "c", "worker")),
    ];
    let pids: Vec<u32> = nodes.iter().map(|n| n.as_ref().unwrap().pid()).collect();
    let logs = |nodes: &[Option<Proc>]| {
        nodes
            .iter()
            .flatten()
            .map(Proc::log_tail)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    // The work is shared: one connection per process, within a few lease rounds.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held: Vec<(String, Option<String>)> = rows(
            &url,
            "SELECT name, holder FROM leases WHERE holder IS NOT NULL AND name LIKE 'connection:%' ORDER BY name",
        )
        .await;
        let holders: HashSet<u32> = held
            .iter()
            .filter_map(|(_, h)| h.as_deref().map(pid_of))
            .collect();
        if held.len() == 3 && holders.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections not shared one per process: {held:?}\n{}",
            logs(&nodes)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "three processes share the connections by {:?}",
        started.elapsed()
    );

    // A worker answers health and metrics only.
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&server_ca).unwrap()).unwrap(),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let at = |i: usize, path: &str| format!("https://127.0.0.1:{}{path}", ports[i]);
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(client.get(at(2, "/healthz")).send().await.unwrap()),
        StatusCode::OK
    );
    assert_eq!(
        status(
            client
                .get(at(2, "/api/v1/whoami"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
        ),
        StatusCode::NOT_FOUND
    );
    // A revoked API key fails on every API process within one second.
    for i in [0, 1] {
        let r = client
            .get(at(i, "/api/v1/whoami"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    sb.run(&["apikey", "revoke", "probe"]).expect_code(0);
    let revoked = Instant::now();
    for i in [0, 1] {
        loop {
            let r = client
                .get(at(i, "/api/v1/whoami"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            if r.status() == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "process {i} still accepts the revoked key"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!(
        "revoked key refused everywhere {:?} after the revoke",
        revoked.elapsed()
    );

    // eBay delivers only to a validated endpoint.
    validate_ebay(&admin, &info, &hook_base, &|| logs(&nodes)).await;
    // b sends the channel before it is killed (checked at the end), not only holds it.
    once.wait_for_alert_from(pids[1], &|| logs(&nodes)).await;

    // The load, with process b killed mid-run and the worker later.
    let mut kills: Vec<(u32, i64)> = Vec::new();
    for round in 0..ROUNDS {
        for (at_round, i) in [(KILL_SECOND_AT, 1), (KILL_WORKER_AT, 2)] {
            if round == at_round {
                nodes[i].as_mut().unwrap().sigkill();
                nodes[i] = None;
                kills.push((pids[i], stockade_core::time::now_ms()));
                eprintln!("process {i} killed at {:?}", started.elapsed());
            }
        }
        for name in MARKETS {
            place(&admin, &base(name), PER_ROUND).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("orders placed by {:?}", started.elapsed());
    let stats = drain(&admin, &info).await;
    eprintln!("deliveries drained by {:?}: {stats}", started.elapsed());
    let (acked, _) = delivery_outcomes(&admin, &info).await;
    let (orders, reserved_expected) = sandbox_orders(&admin, &info).await;
    assert_eq!(orders.len(), PER_ROUND * ROUNDS * MARKETS.len());
    assert!(!acked.is_empty());

    // Every order stored exactly once (webhooks at a, polls by whichever process owns
    // each connection, before and after the kills).
    orders_stored_once(&url, &orders, &|| logs(&nodes)).await;
    eprintln!("every order stored once by {:?}", started.elapsed());

    // The ledger sums right.
    let stock = sku_list(&sb);
    let ledger: BTreeMap<String, i64> = rows(
        &url,
        "SELECT sku, CAST(SUM(reserved_delta) AS BIGINT) FROM stock_ledger GROUP BY sku",
    )
    .await
    .into_iter()
    .collect();
    check_stock(&stock, &reserved_expected, &ledger);

    // Every channel converges to available − buffer (only a is left to push).
    wait_converged(&admin, &info, &stock, Duration::from_secs(40), &|| {
        logs(&nodes)
    })
    .await;
    eprintln!("every channel converged by {:?}", started.elapsed());
    // The schedule ran through both kills and after them: check its ticks up to now.
    let ticks_until = stockade_core::time::now_ms();

    // One pusher per connection at a time: the pushes, in order, change process only a
    // few times (the first share-out, and a takeover after each kill), never interleave,
    // and a killed process's connection was pushed by another within seconds.
    let by_market = pushes(&admin, &info).await;
    for (name, calls) in &by_market {
        assert!(!calls.is_empty(), "{name}: no pushes recorded");
        let mut runs: Vec<(String, i64, i64)> = Vec::new();
        for (s, e, node) in calls {
            match runs.last_mut() {
                Some(r) if r.0 == *node => r.2 = r.2.max(*e),
                _ => runs.push((node.clone(), *s, *e)),
            }
        }
        assert!(
            runs.len() <= 6,
            "{name}: pushed by processes taking turns {} times: {:?}",
            runs.len(),
            runs.iter().map(|r| (&r.0, r.1, r.2)).collect::<Vec<_>>()
        );
        for w in runs.windows(2) {
            assert!(
                w[1].1 >= w[0].2 - 1000,
                "{name}: {} pushed from {} while {} was still pushing until {}",
                w[1].0,
                w[1].1,
                w[0].0,
                w[0].2
            );
        }
        for (pid, at) in &kills {
            assert!(
                calls
                    .iter()
                    .filter(|c| pid_of(&c.2) == *pid)
                    .all(|c| c.0 <= *at),
                "{name}: a push from process {pid} after it was killed"
            );
        }
        let last = &runs.last().unwrap().0;
        assert_eq!(pid_of(last), pids[0], "{name}: the survivor pushes last");
    }
    // After the kills, a owns all three connections.
    let held: Vec<(String, Option<String>)> =
        rows(&url, "SELECT name, holder FROM leases ORDER BY name").await;
    assert!(
        held.iter()
            .all(|(_, h)| h.as_deref().map(pid_of) == Some(pids[0])),
        "{held:?}"
    );

    // Each scheduled execution's steps ran once, and each alert reached the bot once.
    once.check(&url, ticks_until, &kills, &|| logs(&nodes))
        .await;

    // One audit chain, three writers: it verifies.
    sb.run(&["audit", "verify"]).expect_code(0);
    eprintln!("done in {:?}", started.elapsed());
    drop(nodes);
    drop(sandbox);
    drop_schema(&schema).await;
}

/// On SQLite one `serve` runs on a database, with role `all`: a second one and the other
/// roles are refused with a pointer to PostgreSQL; the lock goes with a SIGKILLed
/// process.
#[test]
fn sqlite_serves_from_one_process_only() {
    let sb = Sandbox::new();
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    for role in ["worker", "api"] {
        let out = sb
            .run(&["serve", "--role", role, "--listen", "127.0.0.1:0"])
            .expect_code(2);
        assert!(
            out.stderr().contains("needs PostgreSQL"),
            "{}",
            out.stderr()
        );
    }
    let mut first = start_node(&sb, free_port(), "first", "all");
    let out = sb.run(&["serve", "--listen", "127.0.0.1:0"]).expect_code(2);
    assert!(
        out.stderr()
            .contains("another `stockade serve` is already running"),
        "{}",
        out.stderr()
    );
    first.sigkill();
    drop(start_node(&sb, free_port(), "second", "all"));
}
