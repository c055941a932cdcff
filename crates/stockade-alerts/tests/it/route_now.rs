//! Routing now ([`Alerts::route_now`]) takes the router's lease `alert_router` like the
//! router: while another process holds it, it is refused with a message that says what
//! to do and routes nothing; with the lease free it routes under the lease, which is
//! given back when the pipeline stops.

use super::*;

async fn count(store: &Store, sql: &'static str) -> i64 {
    store
        .query_one(sql, vec![])
        .await
        .unwrap()
        .map_or(0, |r| r.decode::<i64>().unwrap())
}

async fn route_now_takes_the_router_lease(db: Db) {
    let rig = Rig::start(db, BotsConfig::default()).await;
    let lease = "alert_router";
    // Another process routes: it holds the lease for a minute.
    let other = rig
        .store
        .acquire_lease(lease, "another-process", 60_000)
        .await
        .unwrap()
        .expect("the router's lease is free at first");
    let alerts = rig.alerts().await;
    let event = rig.sync_failure("shop-now", "server", "boom").await;
    let cursor = "SELECT last_id FROM event_cursors WHERE subscriber = 'alerts'";
    let outbox = "SELECT COUNT(*) FROM alert_outbox";
    let refused = alerts.route_now().await.unwrap_err();
    let text = refused.to_string();
    assert!(
        matches!(
            refused,
            stockade_alerts::AlertsError::RouterBusy { retry_in_s } if (1..=60).contains(&retry_in_s)
        ),
        "{text}"
    );
    assert!(
        text.contains("routes on its own") && text.contains("try again in"),
        "{text}"
    );
    assert_eq!(
        count(&rig.store, outbox).await,
        0,
        "a refusal writes nothing"
    );
    assert!(
        count(&rig.store, cursor).await < event,
        "nothing was routed"
    );
    let held = rig.store.leases(lease).await.unwrap();
    assert_eq!(
        held[0].holder.as_deref(),
        Some("another-process"),
        "{held:?}"
    );

    // The lease is free: routing now takes it and routes.
    assert!(rig.store.release_lease(&other).await.unwrap());
    alerts.route_now().await.unwrap();
    assert!(
        count(&rig.store, cursor).await >= event,
        "the event is routed"
    );
    assert!(
        count(&rig.store, outbox).await > 0,
        "an outbox row per channel"
    );
    let held = rig.store.leases(lease).await.unwrap();
    assert!(
        held[0].held() && held[0].holder.as_deref() != Some("another-process"),
        "{held:?}"
    );
    assert!(held[0].token > other.token, "a newer fencing token");
    alerts.shutdown().await;
    let held = rig.store.leases(lease).await.unwrap();
    assert!(!held[0].held(), "the lease is given back: {held:?}");
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_now_takes_the_router_lease_sqlite() {
    route_now_takes_the_router_lease(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_now_takes_the_router_lease_postgres() {
    if let Some(db) = Db::postgres() {
        route_now_takes_the_router_lease(db).await;
    }
}
