//! The event stream: typed appends, a subscriber's persisted cursor, and ids that are
//! stream positions (never reused, never committed out of order).

use stockade_core::event::{ConnectionRef, Event, MfaReset};
use stockade_core::{Environment, EventRecord};
use stockade_store::{AuditDetails, AuditEntry, EventStream, Store, StoreError, sql_params};

use crate::harness::{Backend, TEST_ACTOR, TestDb, both};

both!(
    a_subscriber_resumes_after_its_cursor_and_a_stale_batch_is_refused,
    event_ids_are_never_reused_after_a_prune,
);

fn expiring(n: usize) -> Event {
    Event::AuthorizationExpiring(ConnectionRef {
        connection: format!("shop-{n}"),
    })
}

async fn append(store: &Store, event: &Event) {
    let audit = AuditEntry::new("test.event", "events", AuditDetails::new());
    store.append_event(&TEST_ACTOR, event, audit).await.unwrap();
}

fn events(batch: &[EventRecord]) -> Vec<Event> {
    batch.iter().map(|r| r.event.clone()).collect()
}

async fn a_subscriber_resumes_after_its_cursor_and_a_stale_batch_is_refused(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    for n in 0..3 {
        append(&store, &expiring(n)).await;
    }
    let stream = EventStream::subscribe(&store, "workflow").await.unwrap();
    let first = stream.next_batch(2).await.unwrap();
    assert_eq!(events(&first.events), vec![expiring(0), expiring(1)]);
    stream.ack(&first).await.unwrap();
    // A restart: a new stream resumes after the acknowledged batch.
    let mfa = Event::MfaReset(MfaReset {
        by: Some("user:admin".into()),
        user: "u1".into(),
    });
    append(&store, &mfa).await;
    let again = EventStream::subscribe(&store, "workflow").await.unwrap();
    let second = again.next_batch(10).await.unwrap();
    assert_eq!(events(&second.events), vec![expiring(2), mfa]);
    // Two readers of the same batch: only the first acknowledgement stands.
    let twin = stream.next_batch(10).await.unwrap();
    again.ack(&second).await.unwrap();
    assert!(matches!(
        stream.ack(&twin).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(again.next_batch(10).await.unwrap().events.is_empty());
    // Subscribers are independent: a new one starts at the beginning.
    let other = EventStream::subscribe(&store, "other").await.unwrap();
    assert_eq!(other.next_batch(10).await.unwrap().events.len(), 4);
    store.close().await;
    db.cleanup().await;
}

async fn event_ids_are_never_reused_after_a_prune(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    append(&store, &expiring(0)).await;
    append(&store, &expiring(1)).await;
    let stream = EventStream::subscribe(&store, "workflow").await.unwrap();
    let batch = stream.next_batch(10).await.unwrap();
    stream.ack(&batch).await.unwrap();
    // Retention removes every stored event, the newest included.
    store
        .write_unaudited("DELETE FROM events WHERE at_ms > $1", sql_params![0_i64])
        .await
        .unwrap();
    append(&store, &expiring(2)).await;
    let next = stream.next_batch(10).await.unwrap();
    assert_eq!(events(&next.events), vec![expiring(2)]);
    assert!(next.events[0].id > batch.last_id().unwrap());
    store.close().await;
    db.cleanup().await;
}
