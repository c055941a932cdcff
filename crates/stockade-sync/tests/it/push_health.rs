//! Regression: a stalled channel looked healthy. While a marketplace answers every push
//! with a 5xx, its connection and its waiting listings record the failing streak (rounds,
//! since when, the last scrubbed error); the streak's start stays put while it goes on,
//! and one good round clears it.

use super::*;
use stockade_sync::health::connection_health;

async fn connection_id(env: &Env, name: &str) -> i64 {
    connections::get(env.store(), name).await.unwrap().id
}

async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn failing_pushes_are_recorded_and_cleared(db: Db) {
    let env = Env::start(db, sandbox_config(4, 50), fast_options()).await;
    env.settle().await;
    let ebay = connection_id(&env, "ebay").await;
    let tiktok = connection_id(&env, "tiktok").await;
    assert!(
        !connection_health(env.store(), ebay)
            .await
            .unwrap()
            .failing()
    );
    env.sb.set_faults(
        Marketplace::Ebay,
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    );
    let before = now_ms();
    env.sb.generate_orders(Marketplace::TikTok, 4);
    env.sb.flush_deliveries().await;
    wait_until("eBay's failing streak", || async {
        connection_health(env.store(), ebay).await.unwrap().failures >= 2
    })
    .await;
    let h = connection_health(env.store(), ebay).await.unwrap();
    let since = h.failing_since_ms.unwrap();
    assert!(since >= before, "the streak began after the fault");
    let err = h.last_error.clone().unwrap();
    let creds = &env.sb.endpoint(Marketplace::Ebay).app;
    assert!(
        err.contains("eBay") && !err.contains(creds.client_secret.expose_secret()),
        "{err}"
    );
    // The streak goes on: more rounds, the same start.
    let rounds = h.failures;
    wait_until("another failed round", || async {
        connection_health(env.store(), ebay).await.unwrap().failures > rounds
    })
    .await;
    assert_eq!(
        connection_health(env.store(), ebay)
            .await
            .unwrap()
            .failing_since_ms,
        Some(since)
    );
    // Every listing still waiting for eBay is marked (one that became pending after the
    // last failed round is marked by the next one).
    wait_until("every waiting eBay listing marked failing", || async {
        catalog::listings(env.store())
            .await
            .unwrap()
            .iter()
            .filter(|l| l.connection == "ebay" && l.target_version > l.pushed_version)
            .all(|l| l.push.failing())
    })
    .await;
    let rows = catalog::listings(env.store()).await.unwrap();
    let stuck: Vec<_> = rows
        .iter()
        .filter(|l| l.connection == "ebay" && l.target_version > l.pushed_version)
        .collect();
    assert!(!stuck.is_empty());
    for l in &stuck {
        assert!(l.push.failing(), "{l:?}");
        // A listing's streak began with the connection's or, if it became pending later,
        // with a later round.
        assert!(l.push.failing_since_ms.unwrap() >= since, "{l:?}");
        assert!(l.push.last_error.as_deref().unwrap().contains("eBay"));
    }
    // The other channels are healthy.
    assert!(
        !connection_health(env.store(), tiktok)
            .await
            .unwrap()
            .failing()
    );
    assert!(
        rows.iter()
            .filter(|l| l.connection != "ebay")
            .all(|l| !l.push.failing())
    );
    // The marketplace recovers: one good round clears the streak.
    env.sb.set_faults(Marketplace::Ebay, Faults::default());
    env.settle().await;
    wait_until("the streak cleared", || async {
        !connection_health(env.store(), ebay)
            .await
            .unwrap()
            .failing()
    })
    .await;
    let h = connection_health(env.store(), ebay).await.unwrap();
    assert_eq!((h.failing_since_ms, h.last_error), (None, None));
    let rows = catalog::listings(env.store()).await.unwrap();
    assert!(rows.iter().all(|l| !l.push.failing()), "{rows:?}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pushes_are_recorded_and_cleared_sqlite() {
    failing_pushes_are_recorded_and_cleared(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pushes_are_recorded_and_cleared_postgres() {
    if let Some(db) = Db::postgres() {
        failing_pushes_are_recorded_and_cleared(db).await;
    }
}
