//! A sender paused past its channel lease cannot commit over its successor: the
//! delivery outcome it commits late is refused whole (the lease's fence) and writes
//! nothing, no outbox change and no audit row, while the process that took the channel
//! sends and records the alert once. Routing likewise runs in one process at a time.

use super::*;

/// The DingTalk channel only, with the rig's settings.
fn ding_only(rig: &Rig) -> AlertsConfig {
    let mut config = rig.config.clone();
    config.channels.retain(|c| c.name == "ding");
    config
}

async fn int(store: &Store, sql: &'static str) -> i64 {
    store
        .query_one(sql, vec![])
        .await
        .unwrap()
        .unwrap()
        .decode::<i64>()
        .unwrap()
}

async fn a_paused_sender_cannot_commit_over_its_successor(db: Db) {
    let rig = Rig::start(db, BotsConfig::default()).await;
    let config = ding_only(&rig);
    let start = |config: AlertsConfig| {
        Alerts::start(rig.store.clone(), rig.vault.clone(), &rig.gateway, config)
    };
    let lease = stockade_alerts::lease_name("ding");
    let a = start(config.clone()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !rig
        .store
        .leases(&lease)
        .await
        .unwrap()
        .iter()
        .any(|l| l.held())
    {
        assert!(Instant::now() < deadline, "A did not take the channel");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A sends into a bot that never answers: the message stays in flight until the
    // client gives up (3 s), as if A were paused right before its commit.
    rig.bots.set_fault("ding", BotFault::Hang);
    rig.sync_failure("shop-paused", "server", "boom").await;
    wait_for("A's message in flight", Duration::from_secs(5), || {
        rig.bots.received().iter().any(|r| r.bot == "ding")
    })
    .await;
    // Meanwhile A's lease passes on: it is taken (a newer token) and handed to B.
    let deadline = Instant::now() + Duration::from_secs(5);
    let stolen = loop {
        rig.store
            .write_unaudited(
                "UPDATE leases SET expires_at_ms = 0 WHERE name = $1",
                sql_params![lease.as_str()],
            )
            .await
            .unwrap();
        if let Some(g) = rig
            .store
            .acquire_lease(&lease, "the-test", 60_000)
            .await
            .unwrap()
        {
            break g;
        }
        assert!(Instant::now() < deadline, "the lease could not be taken");
    };
    rig.bots.set_fault("ding", BotFault::None);
    assert!(rig.store.release_lease(&stolen).await.unwrap());
    let b = start(config).await.unwrap();
    // The successor sends the pending alert and records it.
    wait_for("the successor's delivery", Duration::from_secs(10), || {
        !messages(&rig.bots, "ding").is_empty()
    })
    .await;
    // A's request gives up after 3 s; its "failing" outcome is refused by the fence.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sent = int(
        &rig.store,
        "SELECT COUNT(*) FROM alert_outbox WHERE channel = 'ding' AND state = 'sent' AND attempts = 1 AND last_error IS NULL",
    )
    .await;
    let all = int(
        &rig.store,
        "SELECT COUNT(*) FROM alert_outbox WHERE channel = 'ding'",
    )
    .await;
    assert_eq!(
        (sent, all),
        (1, 1),
        "the alert is sent once, and A's late outcome changed nothing"
    );
    let status = int(
        &rig.store,
        "SELECT failures FROM alert_channels WHERE name = 'ding'",
    )
    .await;
    assert_eq!(status, 0, "A's late failure was not counted on the channel");
    let audit = rig.store.audit_rows(0, 10_000).await.unwrap();
    let deliveries: Vec<String> = audit
        .iter()
        .filter(|r| r.action == "alert.delivery")
        .map(|r| r.details.to_string())
        .collect();
    assert_eq!(
        deliveries.len(),
        1,
        "one delivery audit row: {deliveries:?}"
    );
    assert!(deliveries[0].contains("delivered"), "{deliveries:?}");
    assert_eq!(messages(&rig.bots, "ding").len(), 1);
    a.shutdown().await;
    b.shutdown().await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_sender_cannot_commit_over_its_successor_sqlite() {
    a_paused_sender_cannot_commit_over_its_successor(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_sender_cannot_commit_over_its_successor_postgres() {
    if let Some(db) = Db::postgres() {
        a_paused_sender_cannot_commit_over_its_successor(db).await;
    }
}

/// Two processes' pipelines on one database: only the holder of the router's lease
/// routes (the other never races it for a batch), every event is routed once, and when
/// the holder stops the other takes routing over at once.
async fn one_process_routes_at_a_time(db: Db) {
    let rig = Rig::start(db, BotsConfig::default()).await;
    let a = rig.alerts().await;
    // A distinct holder name (it carries the start time in milliseconds).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b = rig.alerts().await;
    let cursor = || async {
        int(
            &rig.store,
            "SELECT last_id FROM event_cursors WHERE subscriber = 'alerts'",
        )
        .await
    };
    let routed_up_to = |id: i64| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while cursor().await < id {
            assert!(Instant::now() < deadline, "event {id} was not routed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // Events one commit at a time, each waking both routers.
    let mut last = 0;
    for i in 0..30 {
        last = rig
            .sync_failure(&format!("shop-r{i}"), "server", "boom")
            .await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    routed_up_to(last).await;
    let (ra, rb) = (a.stats().events_routed, b.stats().events_routed);
    assert!(
        ra == 0 || rb == 0,
        "both processes routed ({ra} and {rb} events): they raced for the batches"
    );
    assert!(ra + rb >= 30, "{ra} + {rb}");
    let (first, second) = if ra > 0 { (a, b) } else { (b, a) };
    // The router stops: the other takes over at once (the lease is given back).
    first.shutdown().await;
    for i in 0..5 {
        last = rig
            .sync_failure(&format!("shop-s{i}"), "server", "boom")
            .await;
    }
    routed_up_to(last).await;
    assert!(second.stats().events_routed >= 5);
    // Each event became one outbox row per channel that takes it, no more.
    let dup = int(
        &rig.store,
        "SELECT COUNT(*) FROM (SELECT alert FROM alert_outbox WHERE channel = 'hook'
           GROUP BY alert HAVING COUNT(*) > 1) d",
    )
    .await;
    assert_eq!(dup, 0, "an alert was routed twice");
    second.shutdown().await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_routes_at_a_time_sqlite() {
    one_process_routes_at_a_time(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_routes_at_a_time_postgres() {
    if let Some(db) = Db::postgres() {
        one_process_routes_at_a_time(db).await;
    }
}
