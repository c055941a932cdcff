//! eBay's per-application limit across processes: each process's gateway spends the
//! share of the application's connections it owns (at least one), set after every
//! ownership round.

use super::*;
use stockade_marketplaces::ebay::APP_BUCKET;
use stockade_sync::{Ownership, SyncEngine};

/// A second eBay connection, for the simulator's second seller of the same application.
async fn add_second_ebay(env: &TestApp) {
    let e = env.sb.endpoint(Marketplace::Ebay);
    let s = &e.sellers[1];
    let copy = |v: &SecretString| SecretString::from(v.expose_secret().clone());
    connections::add(
        &env.vault,
        NewConnection {
            name: "ebay-2".to_owned(),
            marketplace: Marketplace::Ebay,
            account: s.user_id.clone(),
            settings: ConnectionSettings {
                api_url: e.base_url.clone(),
                marketplace_ids: vec![s.marketplace_id.clone()],
                endpoint_url: Some(format!("{}/ebay/ebay-2", env.hook_base)),
                ..ConnectionSettings::default()
            },
            secrets: vec![
                (
                    "client_id".to_owned(),
                    SecretString::from(e.app.client_id.clone()),
                ),
                ("client_secret".to_owned(), copy(&e.app.client_secret)),
                ("refresh_token".to_owned(), copy(&s.refresh_token)),
                (
                    "verification_token".to_owned(),
                    copy(env.sb.ebay_verification_token()),
                ),
            ],
        },
        &ACTOR,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_process_spends_its_share_of_the_ebay_application_postgres() {
    let Some(db) = Db::postgres() else {
        return;
    };
    // An `api` process (owns nothing) and a worker that owns every connection.
    let receiver = SyncOptions {
        ownership: Some(Ownership::new("receiver", "api", false)),
        ..fast_options()
    };
    let sandbox = SandboxConfig {
        sellers: 2,
        ..sandbox_config(4, 50)
    };
    let env = TestApp::start(db, sandbox, receiver).await;
    add_second_ebay(&env).await;
    env.sync.refresh().await.unwrap();
    let og = crate::process_gateway(&env, Some("owner"));
    let owner = SyncEngine::start(
        env.vault.clone(),
        og.clone(),
        SyncOptions {
            ownership: Some(Ownership::new("owner", "worker", true)),
            ..fast_options()
        },
    )
    .await
    .unwrap();
    let app = env.sb.endpoint(Marketplace::Ebay).app.client_id.clone();
    let shares = || {
        (
            env.gateway.bucket_share(APP_BUCKET, &app),
            og.bucket_share(APP_BUCKET, &app),
        )
    };
    // Two connections of one application: the owner of both spends the whole rate; the
    // process owning none keeps one connection's share (its own key fetches and
    // fallback fetches), a half.
    let deadline = Instant::now() + Duration::from_secs(20);
    while owner.owned_connections().len() < 4 || shares() != (0.5, 1.0) {
        assert!(
            Instant::now() < deadline,
            "owner has {:?}; shares (receiver, owner) {:?}",
            owner.owned_connections(),
            shares()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    owner.shutdown().await;
    env.finish().await;
}
