//! Cross-connection events: a delivery verified with one app's credentials acts only on
//! connections of that same app (regression: a TikTok delivery signed with connection A's
//! app secret revoked and purged connection B of another app by naming B's shop).

use super::*;
use stockade_marketplaces::sign::tiktok_webhook_signature;
use stockade_sync::ConnectionStatus;

/// A TikTok connection for seller `seller` of the simulator, with the given app.
async fn add_tiktok(env: &Env, name: &str, seller: usize, app_key: &str, app_secret: &str) {
    let e = env.sb.endpoint(Marketplace::TikTok);
    let s = &e.sellers[seller];
    connections::add(
        &env.vault,
        NewConnection {
            name: name.to_owned(),
            marketplace: Marketplace::TikTok,
            account: s.seller_id.clone(),
            settings: ConnectionSettings {
                api_url: e.base_url.clone(),
                auth_url: Some(e.base_url.clone()),
                shop_cipher: Some(s.shop_cipher.clone()),
                ..ConnectionSettings::default()
            },
            secrets: vec![
                ("app_key".to_owned(), SecretString::from(app_key.to_owned())),
                (
                    "app_secret".to_owned(),
                    SecretString::from(app_secret.to_owned()),
                ),
                (
                    "refresh_token".to_owned(),
                    SecretString::from(s.refresh_token.expose_secret().clone()),
                ),
            ],
        },
        &ACTOR,
    )
    .await
    .unwrap();
}

/// A webhook body signed with the simulator's app (the app of connection `tiktok`).
fn signed_by_a(env: &Env, body: serde_json::Value) -> InboundRequest {
    let app = &env.sb.endpoint(Marketplace::TikTok).app;
    let body = body.to_string().into_bytes();
    let sig = tiktok_webhook_signature(&app.client_id, app.client_secret.expose_secret(), &body);
    let mut headers = HeaderMap::new();
    headers.insert("authorization", sig.parse().unwrap());
    InboundRequest::post("/hooks/tiktok/tiktok", headers, body)
}

fn now_s() -> i64 {
    now_ms() / 1000
}

async fn orders_of(env: &Env, name: &str) -> i64 {
    env.store()
        .query_one(
            "SELECT COUNT(*) FROM orders o JOIN connections c ON c.id = o.connection_id WHERE c.name = $1",
            stockade_store::sql_params![name],
        )
        .await
        .unwrap()
        .unwrap()
        .decode::<i64>()
        .unwrap()
}

async fn foreign_events(env: &Env) -> i64 {
    env.count("SELECT COUNT(*) FROM events WHERE source = 'sync' AND kind = 'foreign_event'")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_signed_by_another_app_cannot_revoke_or_route_to_a_connection() {
    let cfg = SandboxConfig {
        sellers: 3,
        ..sandbox_config(4, 50)
    };
    let env = Env::start(Db::sqlite(), cfg, fast_options()).await;
    // Build the deliveries by hand: the simulator's own ones would name every shop.
    env.sb.set_webhook(Marketplace::TikTok, None);
    let sellers = env.sb.endpoint(Marketplace::TikTok).sellers.clone();
    let app = env.sb.endpoint(Marketplace::TikTok).app.clone();
    // B: seller 1's shop through another app. Same: seller 2's shop through A's app.
    add_tiktok(&env, "tiktok-b", 1, "another-app-key", "another-app-secret").await;
    add_tiktok(
        &env,
        "tiktok-same",
        2,
        &app.client_id,
        app.client_secret.expose_secret(),
    )
    .await;
    env.sync.refresh().await.unwrap();
    env.sync
        .ingest(
            "tiktok-b",
            order("B-ORDER-1", OrderStatus::Placed, 1, &[("l", "SKU-0001", 1)]),
        )
        .await
        .unwrap();
    let b = connections::get(env.store(), "tiktok-b").await.unwrap();
    let ct = env
        .store()
        .query_one(
            "SELECT buyer_name FROM orders WHERE connection_id = $1",
            stockade_store::sql_params![b.id],
        )
        .await
        .unwrap()
        .unwrap()
        .decode::<Vec<u8>>()
        .unwrap();
    let ctx_row = format!("{}/B-ORDER-1", b.id);
    let ctx = FieldContext::new("orders", "buyer_name", &ctx_row);

    // A-signed SELLER_DEAUTHORIZATION naming B's shop: B is untouched.
    let r = env
        .sync
        .handle_event(
            Marketplace::TikTok,
            "tiktok",
            signed_by_a(
                &env,
                serde_json::json!({"type": 6, "shop_id": sellers[1].seller_id,
                    "timestamp": now_s(), "data": {"message": "deauthorized"}}),
            ),
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    let b = connections::get(env.store(), "tiktok-b").await.unwrap();
    assert_eq!(b.status, ConnectionStatus::Active);
    assert_eq!(orders_of(&env, "tiktok-b").await, 1);
    assert!(purge::receipts(env.store()).await.unwrap().is_empty());
    assert!(
        env.vault.decrypt(&ctx, &ct).await.is_ok(),
        "B's key is intact"
    );
    assert!(
        env.vault
            .reveal_credential("connection/tiktok-b/app_secret")
            .await
            .is_ok()
    );
    assert_eq!(foreign_events(&env).await, 1, "the refusal is raised");
    let detail = env
        .store()
        .query_one(
            "SELECT detail FROM events WHERE kind = 'foreign_event'",
            vec![],
        )
        .await
        .unwrap()
        .unwrap()
        .decode::<String>()
        .unwrap();
    assert!(
        detail.contains("tiktok-b") && !detail.contains(&sellers[1].seller_id),
        "{detail}"
    );
    assert!(
        !detail.contains(app.client_secret.expose_secret()),
        "no secret in events"
    );
    // Nor is connection A (the receiver) affected.
    let a = connections::get(env.store(), "tiktok").await.unwrap();
    assert_eq!(a.status, ConnectionStatus::Active);

    // An A-signed order event naming B's shop is not fetched with B's credentials either.
    let r = env
        .sync
        .handle_event(
            Marketplace::TikTok,
            "tiktok",
            signed_by_a(
                &env,
                serde_json::json!({"type": 1, "shop_id": sellers[1].seller_id,
                    "timestamp": now_s(),
                    "data": {"order_id": "576000000000000001", "order_status": "AWAITING_SHIPMENT",
                             "update_time": now_s()}}),
            ),
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(orders_of(&env, "tiktok-b").await, 1);
    assert_eq!(foreign_events(&env).await, 2);

    // The same app's connections still get their events through A's URL (that is how
    // TikTok delivers an app's webhooks): an order of seller 2, then its deauthorization.
    let mut order_id = None;
    for _ in 0..20 {
        env.sb.generate_orders(Marketplace::TikTok, 6);
        order_id = env
            .sb
            .orders(Marketplace::TikTok)
            .into_iter()
            .find(|o| o.seller_id == sellers[2].seller_id)
            .map(|o| o.order_id);
        if order_id.is_some() {
            break;
        }
    }
    let order_id = order_id.expect("an order of seller 2");
    let r = env
        .sync
        .handle_event(
            Marketplace::TikTok,
            "tiktok",
            signed_by_a(
                &env,
                serde_json::json!({"type": 1, "shop_id": sellers[2].seller_id,
                    "timestamp": now_s(),
                    "data": {"order_id": order_id, "order_status": "AWAITING_SHIPMENT",
                             "update_time": now_s()}}),
            ),
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(orders_of(&env, "tiktok-same").await, 1);
    let r = env
        .sync
        .handle_event(
            Marketplace::TikTok,
            "tiktok",
            signed_by_a(
                &env,
                serde_json::json!({"type": 6, "shop_id": sellers[2].seller_id,
                    "timestamp": now_s(), "data": {}}),
            ),
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    let same = connections::get(env.store(), "tiktok-same").await.unwrap();
    assert_eq!(same.status, ConnectionStatus::Revoked);
    assert_eq!(
        connections::get(env.store(), "tiktok-b")
            .await
            .unwrap()
            .status,
        ConnectionStatus::Active
    );
    assert_eq!(foreign_events(&env).await, 2);
    let report = env.store().verify_audit(None).await.unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    env.finish().await;
}

/// Amazon: the forwarded notification's shared secret is the app's; a notification
/// naming a seller connected through another app (other client id and event key) is
/// ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amazon_notification_for_another_apps_seller_is_ignored() {
    let cfg = SandboxConfig {
        sellers: 2,
        ..sandbox_config(4, 50)
    };
    let env = Env::start(Db::sqlite(), cfg, fast_options()).await;
    env.sb.set_webhook(Marketplace::Amazon, None);
    let e = env.sb.endpoint(Marketplace::Amazon).clone();
    let s = &e.sellers[1];
    connections::add(
        &env.vault,
        NewConnection {
            name: "amazon-b".into(),
            marketplace: Marketplace::Amazon,
            account: s.seller_id.clone(),
            settings: ConnectionSettings {
                api_url: e.base_url.clone(),
                auth_url: Some(format!("{}/auth/o2/token", e.base_url)),
                marketplace_ids: vec![s.marketplace_id.clone()],
                ..ConnectionSettings::default()
            },
            secrets: vec![
                (
                    "client_id".into(),
                    SecretString::from("amzn1.application-oa2-client.other".to_owned()),
                ),
                (
                    "client_secret".into(),
                    SecretString::from("other".to_owned()),
                ),
                (
                    "refresh_token".into(),
                    SecretString::from(s.refresh_token.expose_secret().clone()),
                ),
                (
                    "event_key".into(),
                    SecretString::from("another-apps-event-key".to_owned()),
                ),
            ],
        },
        &ACTOR,
    )
    .await
    .unwrap();
    env.sync.refresh().await.unwrap();
    let body = serde_json::json!({
        "NotificationVersion": "1.0", "NotificationType": "ORDER_CHANGE", "PayloadVersion": "1.0",
        "EventTime": "2026-01-01T00:00:00Z",
        "Payload": {"OrderChangeNotification": {"NotificationLevel": "OrderLevel",
            "SellerId": s.seller_id, "AmazonOrderId": "111-2222222-3333333",
            "OrderChangeType": "OrderStatusChange", "Summary": {"OrderStatus": "Unshipped"}}},
        "NotificationMetadata": {"ApplicationId": "amzn1.sellerapps.app.a", "SubscriptionId": "s",
            "PublishTime": "2026-01-01T00:00:00Z", "NotificationId": "n-1"}
    })
    .to_string()
    .into_bytes();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-stockade-event-key",
        env.sb
            .amazon_event_secret()
            .expose_secret()
            .parse()
            .unwrap(),
    );
    let r = env
        .sync
        .handle_event(
            Marketplace::Amazon,
            "amazon",
            InboundRequest::post("/hooks/amazon/amazon", headers, body),
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(orders_of(&env, "amazon-b").await, 0);
    assert_eq!(foreign_events(&env).await, 1);
    env.finish().await;
}
