//! The database's reachability on `/metrics`, on PostgreSQL: a `stockade serve` reaches
//! the database through a loopback proxy ([`PgProxy`]); while the proxy refuses
//! connections, `/metrics` still answers, within seconds, with `stockade_database_reachable`
//! 0 and `stockade_database_unavailable_total` counting the operations that failed; once the
//! proxy accepts again, the gauge is back at 1 (the counter keeps its count).

use std::time::{Duration, Instant};

use crate::harness::{Sandbox, drop_schema, pg_schema_url};
use crate::pg_proxy::PgProxy;
use crate::scale_out_rig::start_node;
use crate::sync::free_port;

/// Long enough for operations waiting on the pool (its timeout is 10 s) to fail.
const DOWN: Duration = Duration::from_secs(15);

/// `stockade_database_reachable` and `stockade_database_unavailable_total` on `/metrics`.
async fn reachability(
    client: &reqwest::Client,
    port: u16,
    logs: &dyn Fn() -> String,
) -> (f64, f64) {
    let text = client
        .get(format!("https://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("/metrics does not answer: {e}\n{}", logs()))
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    (
        value("stockade_database_reachable"),
        value("stockade_database_unavailable_total"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_say_when_the_database_is_unreachable() {
    let Some((direct, schema)) = pg_schema_url() else {
        return;
    };
    let proxy = PgProxy::start(&direct).await;
    let sb = Sandbox::new().with("STOCKADE_DATABASE_URL", &proxy.url(&direct));
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    let port = free_port();
    let node = start_node(&sb, port, "a", "all");
    let logs = || node.log_tail();
    let client = crate::server::client(&sb.data().join("tls/dev-ca.pem"));
    assert_eq!(reachability(&client, port, &logs).await, (1.0, 0.0));

    // The database goes away: the gauge drops, failed operations are counted.
    let mut proxy = proxy;
    let restart = {
        let direct = direct.clone();
        tokio::spawn(async move {
            proxy.restart(&direct, DOWN).await;
            proxy
        })
    };
    let down_at = Instant::now();
    let mut seen_down = None;
    loop {
        let (up, failed) = reachability(&client, port, &logs).await;
        if up == 0.0 && seen_down.is_none() {
            seen_down = Some(down_at.elapsed());
        }
        if up == 0.0 && failed > 0.0 {
            break;
        }
        assert!(
            down_at.elapsed() < DOWN,
            "while the database was away: reachable {up}, {failed} failed operations\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let seen_down = seen_down.unwrap();
    eprintln!(
        "reachable 0 after {seen_down:?}, failed operations counted after {:?}",
        down_at.elapsed()
    );
    // A scrape does not wait out the pool's timeout: the store's probe of a waiting read
    // finds the database refusing within about a second.
    assert!(
        seen_down < Duration::from_secs(5),
        "/metrics said the database was unreachable only {seen_down:?} after the cut"
    );

    // Back: the gauge returns to 1, the counter keeps what it counted.
    let proxy = restart.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (up, failed) = reachability(&client, port, &logs).await;
        if up == 1.0 {
            assert!(failed > 0.0, "the counter went back to {failed}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the database is back but /metrics says it is unreachable\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("reachable again {:?} after the cut", down_at.elapsed());
    drop(node);
    drop(proxy);
    drop_schema(&schema).await;
}
