//! A database restart mid-run, on PostgreSQL. Two `stockade serve` processes reach the
//! database through a loopback proxy ([`PgProxy`]) while the simulators place orders
//! and deliver signed webhooks (fetch back, push to three channels). Mid-run the proxy
//! does what a restart does: the backends are terminated (FATAL 57P01), every
//! connection is cut and new ones are refused for a few seconds. Then:
//! - every order a webhook was answered 2xx for is stored, and every order the
//!   simulators hold is stored exactly once (deliveries refused during the outage come
//!   again, or the poller lists them);
//! - reserved stock and its ledger sum right, every channel converges, `audit verify`
//!   passes;
//! - both processes are alive and ready, every connection's lease is held again, and
//!   orders placed after the outage are stored and pushed;
//! - each process says in its log, once (not per request), that the database became
//!   unreachable, and once that it is back.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::harness::{Sandbox, drop_schema, pg_schema_url};
use crate::market_run::{Markets, check_stock};
use crate::pg_proxy::PgProxy;
use crate::scale_out::{pid_of, rows};
use crate::scale_out_rig::start_node;
use crate::sync::{
    MARKETS, Proc, delivery_outcomes, drain, free_port, place, sandbox_orders, sku_list,
};

const PER_ROUND: usize = 3;
const ROUNDS: usize = 14;
/// The round at which the database goes down, and for how long.
const RESTART_AT: usize = 4;
const DOWN: Duration = Duration::from_secs(3);

/// What the log says when the database goes away (an error passed on to a caller says
/// "the database is unreachable: …") and when it is back.
const DOWN_LINE: &str = "the database is unreachable (";
const UP_LINE: &str = "the database is reachable again";
/// What lines about a lost database connection say.
const OUTAGE_MARKS: [&str; 11] = [
    "unreachable",
    "unavailable",
    "57P01",
    "administrator command",
    "refused",
    "reset",
    "EOF",
    "timed out",
    "acquire",
    "could not be stored",
    "503",
];

fn log_of(sb: &Sandbox, name: &str) -> String {
    std::fs::read_to_string(sb.dir.join(format!("serve-{name}.log"))).unwrap_or_default()
}

/// The stored orders as (connection, external id): none twice, none the simulators do
/// not have (`placed`).
async fn stored_once(url: &str, placed: &HashSet<(String, String)>) -> HashSet<(String, String)> {
    let stored: Vec<(String, String)> = rows(
        url,
        "SELECT c.name, o.external_id FROM orders o JOIN connections c ON c.id = o.connection_id",
    )
    .await;
    let set: HashSet<(String, String)> = stored.iter().cloned().collect();
    assert_eq!(set.len(), stored.len(), "an order is stored twice");
    let extra: Vec<_> = set.difference(placed).collect();
    assert!(
        extra.is_empty(),
        "stored orders the simulators do not have: {extra:?}"
    );
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_run_loses_nothing_and_says_so_once() {
    let Some((direct, schema)) = pg_schema_url() else {
        return;
    };
    let started = Instant::now();
    let proxy = PgProxy::start(&direct).await;
    let url = proxy.url(&direct);
    let sb = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    let ports = [free_port(), free_port()];
    let hook_base = format!("https://127.0.0.1:{}/hooks", ports[0]);
    // A first start creates the development CA the simulators must trust.
    // Stopped as an operator would: a killed process would hold the alert router's lease
    // until it expires.
    start_node(&sb, ports[0], "first", "all").stop();
    let markets = Markets::start(&sb, 44, 10, &hook_base, "").await;
    let nodes: Vec<Proc> = vec![
        start_node(&sb, ports[0], "a", "all"),
        start_node(&sb, ports[1], "b", "all"),
    ];
    let pids: Vec<u32> = nodes.iter().map(Proc::pid).collect();
    let logs = || {
        nodes
            .iter()
            .map(Proc::log_tail)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    markets.validate_ebay(&logs).await;
    eprintln!("setup done by {:?}", started.elapsed());

    // The load, with the database restarted from the round RESTART_AT on.
    let mut restart = None;
    let mut proxy = Some(proxy);
    let mut down_at = None;
    for round in 0..ROUNDS {
        if round == RESTART_AT {
            let mut p = proxy.take().unwrap();
            assert!(p.open() > 0, "no connection through the proxy");
            let direct = direct.clone();
            down_at = Some(Instant::now());
            restart = Some(tokio::spawn(async move {
                let terminated = p.restart(&direct, DOWN).await;
                (p, terminated, Instant::now())
            }));
            eprintln!("database restarting at {:?}", started.elapsed());
        }
        for name in MARKETS {
            place(&markets.admin, &markets.base(name), PER_ROUND).await;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let (proxy, terminated, up_at) = restart.unwrap().await.unwrap();
    eprintln!(
        "orders placed by {:?}; {terminated} backends terminated, the proxy accepted again after {:?}",
        started.elapsed(),
        up_at - down_at.unwrap()
    );
    assert!(terminated > 0, "the restart terminated no backend");

    let stats = drain(&markets.admin, &markets.info).await;
    eprintln!("deliveries drained by {:?}: {stats}", started.elapsed());
    let (acked, failed) = delivery_outcomes(&markets.admin, &markets.info).await;
    let (orders, reserved_expected) = sandbox_orders(&markets.admin, &markets.info).await;
    assert_eq!(orders.len(), PER_ROUND * ROUNDS * MARKETS.len());
    eprintln!(
        "{} orders: {} acknowledged by webhook, {} with a refused delivery",
        orders.len(),
        acked.len(),
        failed.len()
    );
    // How many deliveries the restart refuses depends on timing: one arriving during the
    // outage waits for the database and is answered 2xx when it is back, or is refused
    // (503, or the marketplace's timeout) and delivered again; seen from none to 84 of 126.
    // Either way every order must end up stored once (below).
    assert!(!acked.is_empty(), "no delivery was acknowledged: {stats}");

    // Every order stored exactly once: the acknowledged ones at once, the others once
    // delivered again or polled.
    let set = stored_once(&direct, &orders).await;
    let lost: Vec<_> = acked.difference(&set).collect();
    assert!(
        lost.is_empty(),
        "acknowledged by webhook but not stored: {lost:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = stored_once(&direct, &orders).await;
        if stored == orders {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} orders not stored after the restart\n{}",
            orders.len() - stored.len(),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("every order stored once by {:?}", started.elapsed());

    // The ledger sums right.
    let ledger: BTreeMap<String, i64> = rows(
        &direct,
        "SELECT sku, CAST(SUM(reserved_delta) AS BIGINT) FROM stock_ledger GROUP BY sku",
    )
    .await
    .into_iter()
    .collect();
    check_stock(&sku_list(&sb), &reserved_expected, &ledger);

    // Both processes still run and are ready (they answer from the database), and
    // every connection's lease is held by one of them again.
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(
                &std::fs::read(sb.data().join("tls/dev-ca.pem")).unwrap(),
            )
            .unwrap(),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for port in ports {
        let r = client
            .get(format!("https://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("serve on {port} does not answer: {e}\n{}", logs()));
        assert!(r.status().is_success(), "{port}: {}", r.status());
    }
    let held: Vec<(String, Option<String>)> = rows(
        &direct,
        "SELECT name, holder FROM leases WHERE name LIKE 'connection:%' ORDER BY name",
    )
    .await;
    assert_eq!(held.len(), MARKETS.len(), "{held:?}");
    assert!(
        held.iter()
            .all(|(_, h)| h.as_deref().is_some_and(|h| pids.contains(&pid_of(h)))),
        "a connection's lease is not held by a running process: {held:?}"
    );

    // Orders placed now are stored and pushed: the engine runs on.
    let mut orders = orders;
    for name in MARKETS {
        for id in place(&markets.admin, &markets.base(name), 1).await {
            orders.insert((name.to_owned(), id));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while stored_once(&direct, &orders).await != orders {
        assert!(
            Instant::now() < deadline,
            "orders placed after the restart are not stored\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drain(&markets.admin, &markets.info).await;
    let (_, reserved_expected) = sandbox_orders(&markets.admin, &markets.info).await;
    let stock = sku_list(&sb);
    for (sku, (_, reserved, _)) in &stock {
        assert_eq!(
            *reserved,
            reserved_expected.get(sku).copied().unwrap_or(0),
            "{sku}"
        );
    }
    // Every channel converges (Amazon's decreases ride a feed, polled every 30 s).
    markets
        .wait_converged(&stock, Duration::from_secs(40), &logs)
        .await;
    eprintln!("every channel converged by {:?}", started.elapsed());

    // The log says what happened: once when the database went away, once when it came
    // back, per process; not a line per request.
    for name in ["a", "b"] {
        let log = log_of(&sb, name);
        let down = log.lines().filter(|l| l.contains(DOWN_LINE)).count();
        let up = log.lines().filter(|l| l.contains(UP_LINE)).count();
        // Warnings and errors about the outage (others, unrelated, may come and go),
        // but sqlx's line per pooled connection it drops (as many as the pool holds).
        let noisy: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .filter(|l| OUTAGE_MARKS.iter().any(|m| l.contains(m)))
            .filter(|l| !l.contains("testing the connection"))
            .collect();
        let noisy = noisy.len();
        eprintln!("serve {name}: {down} down, {up} up, {noisy} warnings or errors");
        assert!(
            (1..=2).contains(&down) && (1..=2).contains(&up),
            "serve {name}: {down} lines saying the database is unreachable, {up} that it is back:\n{log}"
        );
        assert!(
            noisy <= 10,
            "serve {name}: {noisy} warnings or errors for one restart:\n{log}"
        );
        assert!(!log.contains("panicked"), "serve {name} panicked:\n{log}");
        // The clocks did not move: a reading of the database's clock that waited out
        // the outage is no reading (it would report the wait as a skew).
        assert!(
            !log.contains("clock: this host"),
            "serve {name} reported a clock skew over a database restart:\n{log}"
        );
    }

    sb.run(&["audit", "verify"]).expect_code(0);
    eprintln!("done in {:?}", started.elapsed());
    drop(nodes);
    drop(markets);
    drop(proxy);
    drop_schema(&schema).await;
}
