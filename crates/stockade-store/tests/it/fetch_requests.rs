//! Webhook fetches handed to a connection's owner (`fetch_requests`): a request per
//! order, its `seq` growing with each notification, removed only at the `seq` that was
//! fetched, read by another process, and dropped once a day old.

use stockade_core::Environment;
use stockade_store::FetchRequest;

use crate::harness::{Backend, TestDb, both};

both!(a_request_is_done_only_at_the_seq_fetched);

async fn a_request_is_done_only_at_the_seq_fetched(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let receiver = db.init(Environment::Dev).await;
    let owner = db.open(Environment::Dev).await;
    assert_eq!(receiver.request_fetch(5, "O-1").await.unwrap(), 1);
    assert_eq!(receiver.request_fetch(6, "O-1").await.unwrap(), 1);
    let seen = owner.fetch_requests(100).await.unwrap();
    assert_eq!(seen.len(), 2);
    let first = seen.iter().find(|r| r.connection_id == 5).cloned().unwrap();
    assert_eq!(
        first,
        FetchRequest {
            connection_id: 5,
            external_id: "O-1".into(),
            seq: 1
        }
    );
    // Notified again while its fetch was in flight: the older fetch does not remove it.
    assert_eq!(receiver.request_fetch(5, "O-1").await.unwrap(), 2);
    assert!(!owner.fetch_request_done(&first).await.unwrap());
    assert!(receiver.fetch_request_pending(5, "O-1").await.unwrap());
    let again = owner.fetch_requests(100).await.unwrap();
    let newer = again.iter().find(|r| r.connection_id == 5).unwrap();
    assert_eq!(newer.seq, 2);
    assert!(owner.fetch_request_done(newer).await.unwrap());
    assert!(!receiver.fetch_request_pending(5, "O-1").await.unwrap());
    assert!(receiver.fetch_request_pending(6, "O-1").await.unwrap());
    // Many at once, in one statement: only those still requested come back.
    let pending = receiver
        .fetch_requests_pending(&[(5, "O-1"), (6, "O-1"), (6, "O-2"), (6, "O-1")])
        .await
        .unwrap();
    assert_eq!(
        pending,
        std::collections::HashSet::from([(6, "O-1".to_owned())])
    );
    assert!(
        receiver
            .fetch_requests_pending(&[])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(owner.fetch_requests(1).await.unwrap().len(), 1);
    // Old requests go; newer ones stay.
    assert_eq!(owner.prune_fetch_requests(0).await.unwrap(), 0);
    assert_eq!(owner.prune_fetch_requests(i64::MAX).await.unwrap(), 1);
    assert!(owner.fetch_requests(100).await.unwrap().is_empty());
    // Many done in one statement, each only at the seq that was fetched.
    for id in ["O-3", "O-4", "O-5"] {
        receiver.request_fetch(7, id).await.unwrap();
    }
    receiver.request_fetch(7, "O-5").await.unwrap();
    let fetched: Vec<FetchRequest> = ["O-3", "O-4", "O-5"]
        .into_iter()
        .map(|id| FetchRequest {
            connection_id: 7,
            external_id: id.into(),
            seq: 1,
        })
        .collect();
    assert_eq!(owner.fetch_requests_done(&fetched).await.unwrap(), 2);
    assert_eq!(owner.fetch_requests_done(&[]).await.unwrap(), 0);
    let left = owner.fetch_requests(100).await.unwrap();
    assert_eq!(
        left,
        vec![FetchRequest {
            connection_id: 7,
            external_id: "O-5".into(),
            seq: 2
        }],
        "notified again: stays"
    );
    // Many requested in one statement: a pair given twice counts once, one already
    // requested is notified again.
    assert_eq!(
        receiver
            .request_fetches(&[(7, "O-5"), (8, "O-6"), (8, "O-6"), (8, "O-7")])
            .await
            .unwrap(),
        3
    );
    assert_eq!(receiver.request_fetches(&[]).await.unwrap(), 0);
    let mut all = owner.fetch_requests(100).await.unwrap();
    all.sort_by(|a, b| (a.connection_id, &a.external_id).cmp(&(b.connection_id, &b.external_id)));
    let seqs: Vec<(i64, &str, i64)> = all
        .iter()
        .map(|r| (r.connection_id, r.external_id.as_str(), r.seq))
        .collect();
    assert_eq!(seqs, vec![(7, "O-5", 3), (8, "O-6", 1), (8, "O-7", 1)]);
    receiver.close().await;
    owner.close().await;
    db.cleanup().await;
}
