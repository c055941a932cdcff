//! `connection edit` reaches a running engine: the connector is rebuilt with the new
//! credentials and URLs, and the connection's data stays.

use super::*;
use stockade_sync::connection_edit::{ConnectionEdit, edit};

async fn set_refresh_token(env: &Env, token: &str) {
    edit(
        &env.vault,
        "tiktok",
        ConnectionEdit {
            secrets: vec![("refresh_token".into(), SecretString::from(token.to_owned()))],
            ..ConnectionEdit::default()
        },
        &ACTOR,
    )
    .await
    .unwrap();
    env.sync.refresh().await.unwrap();
}

/// Regression guard: the engine kept the connector it built at start, so an edited
/// connection went on with its old credentials until a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_connection_is_rebuilt_by_the_running_engine() {
    let env = Env::start(Db::sqlite(), sandbox_config(3, 50), fast_options()).await;
    env.sb.generate_orders(Marketplace::TikTok, 2);
    env.sb.flush_deliveries().await;
    env.sync.poll_now("tiktok").await.unwrap();
    let orders = env
        .count("SELECT COUNT(*) FROM orders WHERE connection_id = (SELECT id FROM connections WHERE name = 'tiktok')")
        .await;
    let listings = env
        .count("SELECT COUNT(*) FROM listings WHERE connection_id = (SELECT id FROM connections WHERE name = 'tiktok')")
        .await;
    assert!(orders >= 1 && listings == 3, "{orders} {listings}");

    // A wrong refresh token: the rebuilt connector cannot obtain a token.
    set_refresh_token(&env, "ROW_not-the-token").await;
    assert!(env.sync.poll_now("tiktok").await.is_err());

    // The right one again: it works, and nothing of the connection was lost.
    let right = env.sb.tiktok.sellers[0]
        .refresh_token
        .expose_secret()
        .clone();
    set_refresh_token(&env, &right).await;
    env.sync.poll_now("tiktok").await.unwrap();
    let conn = connections::get(env.store(), "tiktok").await.unwrap();
    assert_eq!(conn.status, stockade_sync::ConnectionStatus::Active);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM listings WHERE connection_id = (SELECT id FROM connections WHERE name = 'tiktok')")
            .await,
        listings
    );
    assert!(
        env.count("SELECT COUNT(*) FROM orders WHERE connection_id = (SELECT id FROM connections WHERE name = 'tiktok')")
            .await
            >= orders
    );
    env.finish().await;
}
