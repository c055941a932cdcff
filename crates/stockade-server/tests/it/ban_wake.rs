//! Bans across processes on PostgreSQL: the server re-reads bans every minute here, so
//! only a wake-up can bring another process's ban within the wait. A ban written by
//! another process (a second store on the same database) and woken is enforced at once;
//! a ban added through this server's access service wakes the other processes.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use stockade_core::{Actor, Environment, time::now_ms};
use stockade_store::{
    AuditDetails, AuditEntry, Change, Expect, Mutation, Store, StoreOptions, Topic, sql_params,
};

use crate::harness::{Options, TestServer};

async fn status_from(server: &TestServer, ip: &str) -> StatusCode {
    server
        .client
        .get(server.url("/api/v1/whoami"))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_reach_every_process_by_wake_up_postgres() {
    let Some(server) = TestServer::spawn(Options {
        backend: crate::harness::Backend::Postgres,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let url = server.pg_url().unwrap();
    let other = Store::open(&url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap();
    // Not banned yet: an unauthenticated request is answered 401.
    assert_eq!(
        status_from(&server, "203.0.113.77").await,
        StatusCode::UNAUTHORIZED
    );
    // Let the server's housekeeping start listening before the ban is written.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Another process bans an address and wakes the others.
    let ban = Change::new(
        Mutation::Sql {
            statement: "INSERT INTO bans (id, ip, since_s, until_s, ban_count, recidive, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            params: sql_params![
                "w1",
                "203.0.113.77",
                now_ms() / 1000,
                None::<i64>,
                1i64,
                false,
                "manual"
            ],
            expect: Expect::One("ban insert"),
        },
        AuditEntry::new("ban.add", "ban:w1", AuditDetails::new()),
    );
    other
        .commit(&Actor::System("test"), vec![ban])
        .await
        .unwrap();
    other.wake(Topic::Bans).await;
    let start = Instant::now();
    let mut last = StatusCode::OK;
    while start.elapsed() < Duration::from_secs(5) {
        last = status_from(&server, "203.0.113.77").await;
        if last == StatusCode::FORBIDDEN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        last,
        StatusCode::FORBIDDEN,
        "the woken server enforces the ban"
    );

    // A ban added through the server's access service wakes the other process.
    let mut wakeups = other.wakeups(Topic::Bans).await;
    assert!(wakeups.listening());
    let waiting = tokio::spawn(async move {
        let start = Instant::now();
        wakeups.wait(Duration::from_secs(60)).await;
        start.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .access
        .add_ban(
            "203.0.113.78".parse().unwrap(),
            Some(3600),
            &Actor::System("test"),
        )
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the other process was not woken")
        .unwrap();
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    other.close().await;
    server.cleanup().await;
}
