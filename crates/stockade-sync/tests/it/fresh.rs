//! Webhook freshness (regression: docs/sync.md promised a timestamp check the code did
//! not make). TikTok's webhook carries its `timestamp` inside the signed body: a correctly
//! signed delivery outside the window is a replay and is refused, and nothing is written.

use super::*;
use stockade_marketplaces::sign::tiktok_webhook_signature;

fn signed(env: &Env, body: serde_json::Value) -> InboundRequest {
    let app = &env.sb.endpoint(Marketplace::TikTok).app;
    let body = body.to_string().into_bytes();
    let sig = tiktok_webhook_signature(&app.client_id, app.client_secret.expose_secret(), &body);
    let mut headers = HeaderMap::new();
    headers.insert("authorization", sig.parse().unwrap());
    InboundRequest::post("/hooks/tiktok/tiktok", headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_or_future_tiktok_deliveries_are_refused() {
    let env = Env::start(Db::sqlite(), sandbox_config(4, 50), fast_options()).await;
    env.sb.set_webhook(Marketplace::TikTok, None);
    let shop = env.sb.endpoint(Marketplace::TikTok).sellers[0]
        .seller_id
        .clone();
    let id = env.sb.generate_orders(Marketplace::TikTok, 1).remove(0);
    let now = now_ms() / 1000;
    let event = |ts: Option<i64>, kind: i64| {
        let mut v = serde_json::json!({"type": kind, "shop_id": shop,
            "data": {"order_id": id, "order_status": "AWAITING_SHIPMENT", "update_time": now}});
        if let Some(ts) = ts {
            v["timestamp"] = ts.into();
        }
        v
    };
    // An hour old, ten minutes ahead, missing: refused as a signature failure, nothing stored.
    for ts in [Some(now - 3600), Some(now + 600), None] {
        let r = env
            .sync
            .handle_event(Marketplace::TikTok, "tiktok", signed(&env, event(ts, 1)))
            .await;
        assert_eq!(r, Err(HookError::Signature("stale_timestamp")), "{ts:?}");
    }
    // A replayed deauthorization is refused too: the connection stays.
    let r = env
        .sync
        .handle_event(
            Marketplace::TikTok,
            "tiktok",
            signed(&env, event(Some(now - 86_400), 6)),
        )
        .await;
    assert_eq!(r, Err(HookError::Signature("stale_timestamp")));
    assert_eq!(env.count("SELECT COUNT(*) FROM orders").await, 0);
    assert_eq!(
        connections::get(env.store(), "tiktok")
            .await
            .unwrap()
            .status,
        stockade_sync::ConnectionStatus::Active
    );
    // A fresh one (a little clock skew either way) is accepted and stored.
    let r = env
        .sync
        .handle_event(
            Marketplace::TikTok,
            "tiktok",
            signed(&env, event(Some(now - 30), 1)),
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(env.count("SELECT COUNT(*) FROM orders").await, 1);
    // The simulator signs fresh deliveries: they keep flowing.
    env.sb.set_webhook(
        Marketplace::TikTok,
        Some(format!("{}/tiktok/tiktok", env.hook_base)),
    );
    env.sb.generate_orders(Marketplace::TikTok, 3);
    env.sb.flush_deliveries().await;
    assert_eq!(env.count("SELECT COUNT(*) FROM orders").await, 4);
    env.finish().await;
}
