//! Named leases and processes (`lease`): one holder at a time, a fencing token that
//! grows with every new holder, renewal only while current, a fenced commit refused
//! after a takeover, and the live process list. Two `Store` handles on one database
//! stand for two processes.

use std::time::Duration;

use stockade_core::Environment;
use stockade_store::{AuditDetails, AuditEntry, Change, Mutation, StoreError, sql_params};

use crate::harness::{Backend, TEST_ACTOR, TestDb, both};

both!(
    one_holder_at_a_time_and_a_growing_token,
    a_paused_holder_cannot_commit_over_its_successor,
    processes_come_and_go,
);

async fn one_holder_at_a_time_and_a_growing_token(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let a = db.init(Environment::Dev).await;
    let b = db.open(Environment::Dev).await;
    let first = a
        .acquire_lease("connection:1", "node-a", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.token, 1);
    assert!(
        b.acquire_lease("connection:1", "node-b", 60_000)
            .await
            .unwrap()
            .is_none(),
        "a held lease cannot be taken"
    );
    // Eight concurrent takers of a free lease: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.acquire_lease("connection:2", &format!("node-{i}"), 60_000)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(won, 1);

    // Renewal keeps it; release hands it over with a larger token.
    let until = a.renew_lease(&first, 60_000).await.unwrap();
    assert!(until.is_some_and(|u| u >= first.expires_at_ms));
    assert!(a.release_lease(&first).await.unwrap());
    let second = b
        .acquire_lease("connection:1", "node-b", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.token, 2);
    assert_eq!(a.renew_lease(&first, 60_000).await.unwrap(), None);
    assert!(!a.release_lease(&first).await.unwrap());
    let rows = b.leases("connection:").await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.held()));
    assert_eq!(rows[0].holder.as_deref(), Some("node-b"));
    assert!(b.leases("backup:").await.unwrap().is_empty());
    // Bad input is refused before anything is written.
    assert!(matches!(
        a.acquire_lease("", "x", 1000).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        a.acquire_lease("x", "y", 0).await,
        Err(StoreError::Invalid(_))
    ));
    a.close().await;
    b.close().await;
    db.cleanup().await;
}

async fn a_paused_holder_cannot_commit_over_its_successor(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let a = db.init(Environment::Dev).await;
    let b = db.open(Environment::Dev).await;
    let slow = a
        .acquire_lease("connection:7", "node-a", 150)
        .await
        .unwrap()
        .unwrap();
    let commit_under = |grant: stockade_store::Grant, key: &'static str| {
        let store = a.clone();
        async move {
            store
                .commit(
                    &TEST_ACTOR,
                    vec![Change::new(
                        Mutation::Many {
                            steps: vec![
                                grant.fence(),
                                Mutation::SetMeta {
                                    key: key.into(),
                                    value: "1".into(),
                                },
                            ],
                            guard: false,
                        },
                        AuditEntry::new("test.fenced", "x", AuditDetails::new()),
                    )],
                )
                .await
        }
    };
    // While current (and even once expired but not taken), the fence lets it commit.
    commit_under(slow.clone(), "fence.before").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    commit_under(slow.clone(), "fence.expired").await.unwrap();
    // Taken over: the paused holder's commit is refused whole, no audit row.
    let fast = b
        .acquire_lease("connection:7", "node-b", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fast.token, slow.token + 1);
    let before = a.count("SELECT COUNT(*) FROM audit", vec![]).await.unwrap();
    let r = commit_under(slow.clone(), "fence.late").await;
    assert!(matches!(r, Err(StoreError::Fenced(_))), "{r:?}");
    assert_eq!(
        a.count("SELECT COUNT(*) FROM audit", vec![]).await.unwrap(),
        before
    );
    assert_eq!(a.meta("fence.late").await.unwrap(), None);
    assert_eq!(a.renew_lease(&slow, 60_000).await.unwrap(), None);
    commit_under(fast, "fence.successor").await.unwrap();
    assert_eq!(
        a.count(
            "SELECT COUNT(*) FROM stockade_meta WHERE key LIKE $1",
            sql_params!["fence.%"]
        )
        .await
        .unwrap(),
        3
    );
    a.close().await;
    b.close().await;
    db.cleanup().await;
}

async fn processes_come_and_go(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let s = db.init(Environment::Dev).await;
    s.heartbeat_process("node-a", "worker", 60_000)
        .await
        .unwrap();
    s.heartbeat_process("node-b", "api", 200).await.unwrap();
    s.heartbeat_process("node-a", "worker", 60_000)
        .await
        .unwrap();
    let live: Vec<(String, String)> = s
        .live_processes()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.id, p.role))
        .collect();
    assert_eq!(
        live,
        vec![
            ("node-a".to_owned(), "worker".to_owned()),
            ("node-b".to_owned(), "api".to_owned())
        ]
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.live_processes().await.unwrap().len(), 1, "node-b expired");
    // Stopping releases what the process held.
    let g = s
        .acquire_lease("connection:3", "node-a", 60_000)
        .await
        .unwrap()
        .unwrap();
    s.deregister_process("node-a").await.unwrap();
    assert!(s.live_processes().await.unwrap().is_empty());
    assert!(!s.leases("connection:3").await.unwrap()[0].held());
    let next = s
        .acquire_lease("connection:3", "node-c", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.token, g.token + 1);
    s.close().await;
    db.cleanup().await;
}
