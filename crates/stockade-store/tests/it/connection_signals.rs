//! What the events say about a connection for the console's connections page: the
//! marketplace's 429 answers in a window and the newest authorization-expiring notice,
//! for that connection only (added with the connections page).

use stockade_core::Environment;
use stockade_core::event::{ConnectionRef, EgressAnomaly, EgressKind, Event};
use stockade_core::time::now_ms;
use stockade_store::events::ConnectionSignals;
use stockade_store::{AuditDetails, AuditEntry};

use crate::harness::{Backend, TEST_ACTOR, TestDb, both};

both!(throttles_and_authorization_notices_are_read_per_connection);

fn egress(caller: &str, status: u16) -> Event {
    Event::Egress(EgressAnomaly {
        kind: EgressKind::ClientError,
        caller: caller.into(),
        host: "open-api.example".into(),
        path_template: "/product/stocks".into(),
        operation: "set_quantities".into(),
        status: Some(status),
        detail: "POST http_error after 3 attempt(s)".into(),
    })
}

async fn throttles_and_authorization_notices_are_read_per_connection(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let now = now_ms();
    let events = vec![
        (now - 3_600_000, egress("connection:shop-1", 429)),
        (now - 60_000, egress("connection:shop-1", 429)),
        (now - 30_000, egress("connection:shop-1", 404)),
        (now - 20_000, egress("connection:shop-2", 429)),
        (
            now - 10_000,
            Event::AuthorizationExpiring(ConnectionRef {
                connection: "shop-1".into(),
            }),
        ),
    ];
    let audit = AuditEntry::new("test.event", "events", AuditDetails::new());
    store
        .append_events(&TEST_ACTOR, &events, audit)
        .await
        .unwrap();
    let window = now - 15 * 60_000;
    assert_eq!(
        store.connection_signals("shop-1", window).await.unwrap(),
        ConnectionSignals {
            throttled: 1,
            last_throttled_ms: Some(now - 60_000),
            auth_expiring_ms: Some(now - 10_000),
        }
    );
    let two = store.connection_signals("shop-2", window).await.unwrap();
    assert_eq!((two.throttled, two.auth_expiring_ms), (1, None));
    assert_eq!(
        store.connection_signals("shop-3", window).await.unwrap(),
        ConnectionSignals::default()
    );
    store.close().await;
    db.cleanup().await;
}
