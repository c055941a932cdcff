//! Revisions per listing per UTC day (`revisions`): counted before the calls go out,
//! fenced by the connection's lease (a holder whose lease another process took counts
//! nothing), read back by the next owner, raised to the cap when the marketplace
//! refused, and removed once their day is past. Two `Store` handles on one database
//! stand for two processes.

use stockade_core::Environment;
use stockade_store::StoreError;

use crate::harness::{Backend, TestDb, both};

both!(revisions_follow_the_lease);

async fn revisions_follow_the_lease(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let a = db.init(Environment::Dev).await;
    let b = db.open(Environment::Dev).await;
    let day = 20_000;
    // Without ownership (one process) nothing is fenced; a SKU listed twice counts twice.
    a.spend_revisions(3, day - 1, &["OLD"], None).await.unwrap();
    a.spend_revisions(3, day, &["A", "B", "A"], None)
        .await
        .unwrap();
    let first = a
        .acquire_lease("connection:3", "node-a", 150)
        .await
        .unwrap()
        .unwrap();
    a.spend_revisions(3, day, &["A"], Some(&first))
        .await
        .unwrap();
    // Another connection's and another day's counts are their own.
    a.spend_revisions(4, day, &["A"], None).await.unwrap();
    assert_eq!(
        b.revisions_used(3, day).await.unwrap(),
        vec![("A".to_owned(), 3), ("B".to_owned(), 1)]
    );
    assert_eq!(
        b.revisions_used(3, day - 1).await.unwrap(),
        vec![("OLD".to_owned(), 1)]
    );

    // The lease expires and another process takes it: the old holder counts nothing
    // (and so sends nothing); the new one counts on.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second = b
        .acquire_lease("connection:3", "node-b", 60_000)
        .await
        .unwrap()
        .unwrap();
    let late = a.spend_revisions(3, day, &["A", "C"], Some(&first)).await;
    assert!(matches!(late, Err(StoreError::Fenced(_))), "{late:?}");
    b.spend_revisions(3, day, &["B"], Some(&second))
        .await
        .unwrap();
    // The marketplace refused C: it is at the cap; a higher count stays.
    b.exhaust_revisions(3, day, &["C", "A"], 2).await.unwrap();
    assert_eq!(
        a.revisions_used(3, day).await.unwrap(),
        vec![
            ("A".to_owned(), 3),
            ("B".to_owned(), 2),
            ("C".to_owned(), 2)
        ]
    );
    // Past days go; today's and other connections' stay.
    assert_eq!(b.prune_revisions(3, day).await.unwrap(), 1);
    assert!(a.revisions_used(3, day - 1).await.unwrap().is_empty());
    assert_eq!(a.revisions_used(3, day).await.unwrap().len(), 3);
    assert_eq!(a.revisions_used(4, day).await.unwrap().len(), 1);
    // Nothing to count writes nothing (not even a fence check).
    a.spend_revisions(3, day, &[], Some(&first)).await.unwrap();
    a.close().await;
    b.close().await;
    db.cleanup().await;
}
