//! Wake-ups between processes (PostgreSQL): one listening session per store carries every
//! topic, each wake-up reaches that topic's waiters only, and a burst costs one re-read.

use std::time::{Duration, Instant};

use stockade_core::Environment;
use stockade_store::{DatabaseUrl, Store, StoreOptions, Topic};

use crate::harness::{Backend, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listening_session_wakes_each_topic_s_waiters_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let DatabaseUrl::Postgres { url, schema } = &db.url else {
        unreachable!("a PostgreSQL test database");
    };
    // The receiving store's sessions carry a name of their own, to be counted.
    let name = format!("wake-{}", stockade_testkit::random_hex());
    let sep = if url.contains('?') { '&' } else { '?' };
    let named = DatabaseUrl::Postgres {
        url: format!("{url}{sep}application_name={name}"),
        schema: schema.clone(),
    };
    let sender = db.init(Environment::Dev).await;
    let receiver = Store::open(&named, Environment::Dev, &StoreOptions::default())
        .await
        .expect("open");

    let mut bans = receiver.wakeups(Topic::Bans).await;
    let mut fetches = receiver.wakeups(Topic::Fetches).await;
    let mut listings_a = receiver.wakeups(Topic::Listings).await;
    let mut listings_b = receiver.wakeups(Topic::Listings).await;
    let mut rest = Vec::new();
    for t in [Topic::Controls, Topic::Connections, Topic::Credentials] {
        rest.push(receiver.wakeups(t).await);
    }
    assert!(bans.listening() && fetches.listening() && listings_a.listening());
    assert!(rest.iter().all(|w| w.listening()));
    assert_eq!(
        stockade_store::testing::listening_sessions(url, &name).await,
        1,
        "seven waiters on six topics share one listening session"
    );

    // Both waiters of the woken topic return at once; another topic's waiter does not.
    sender.wake(Topic::Listings).await;
    let started = Instant::now();
    listings_a.wait(Duration::from_secs(10)).await;
    listings_b.wait(Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken after {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    bans.wait(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "a waiter on bans was woken by another topic"
    );

    // A burst of wake-ups, drained, costs one re-read: the next wait runs its period.
    for _ in 0..50 {
        sender.wake(Topic::Fetches).await;
    }
    let started = Instant::now();
    fetches.wait(Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(200)).await;
    fetches.drain().await;
    let started = Instant::now();
    fetches.wait(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the burst woke the waiter again after it was drained"
    );

    receiver.close().await;
    let closed = Instant::now();
    let mut left = stockade_store::testing::listening_sessions(url, &name).await;
    while left != 0 && closed.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = stockade_store::testing::listening_sessions(url, &name).await;
    }
    assert_eq!(left, 0, "the listening session closes with its store");
    sender.close().await;
    db.cleanup().await;
}
