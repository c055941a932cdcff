//! The SQLite reader pool keeps its connections (and their prepared statements): many
//! concurrent reads share at most `sqlite_readers` connections instead of opening (and
//! dropping, with every statement prepared on it) one more per read past the pool.

use stockade_core::Environment;
use stockade_store::{Store, StoreOptions};

use crate::harness::{Backend, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_reuse_the_pooled_connections() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    db.init(Environment::Dev).await.close().await;
    let options = StoreOptions {
        sqlite_readers: 2,
        ..StoreOptions::default()
    };
    let store = Store::open(&db.url, Environment::Dev, &options)
        .await
        .unwrap();
    let mut reads = Vec::new();
    for _ in 0..64 {
        let s = store.clone();
        reads.push(tokio::spawn(async move {
            s.count("SELECT COUNT(*) FROM audit", vec![]).await.unwrap()
        }));
    }
    for r in reads {
        assert!(r.await.unwrap() >= 0);
    }
    let opened = store.sqlite_readers_opened().unwrap();
    assert!(
        (1..=2).contains(&opened),
        "64 concurrent reads opened {opened} reader connections; the pool holds 2"
    );
    // And again: the same connections, none opened.
    for _ in 0..16 {
        store
            .count("SELECT COUNT(*) FROM audit", vec![])
            .await
            .unwrap();
    }
    assert_eq!(store.sqlite_readers_opened(), Some(opened));
    store.close().await;
    db.cleanup().await;
}
