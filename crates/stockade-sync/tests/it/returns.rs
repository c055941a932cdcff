//! Returns restock (regression: TikTok keeps a returned order `COMPLETED` and reports the
//! return only in its Return & Refund API, so returns were never seen and never
//! restocked). Seen from the RETURN_STATUS_CHANGE webhook and from the poller.

use super::*;
use stockade_sandbox::OrderAction;

async fn status_of(env: &Env, id: &str) -> String {
    env.store()
        .query_one(
            "SELECT status FROM orders WHERE external_id = $1",
            stockade_store::sql_params![id],
        )
        .await
        .unwrap()
        .unwrap()
        .text(0)
        .unwrap()
}

/// Ship and deliver a TikTok order.
fn deliver(env: &Env, id: &str) {
    env.sb
        .advance_order(Marketplace::TikTok, id, OrderAction::Ship)
        .unwrap();
    env.sb
        .advance_order(Marketplace::TikTok, id, OrderAction::Deliver)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_returns_restock_by_webhook_and_by_poll() {
    let env = Env::start(Db::sqlite(), sandbox_config(4, 50), fast_options()).await;
    let ids = env.sb.generate_orders(Marketplace::TikTok, 2);
    assert_eq!(ids.len(), 2);
    for id in &ids {
        deliver(&env, id);
    }
    env.sb.flush_deliveries().await;
    let lines = deliver_lines(&env, &ids[0]);
    let before: Vec<(i64, i64)> = {
        let mut v = Vec::new();
        for (sku, _) in &lines {
            v.push(stock_of(env.store(), sku).await);
        }
        v
    };
    assert_eq!(status_of(&env, &ids[0]).await, "delivered");

    // The buyer returns the first order: the webhook announces it, the return is looked
    // up, and the units go back on the shelf.
    env.sb
        .advance_order(Marketplace::TikTok, &ids[0], OrderAction::Return)
        .unwrap();
    env.sb.flush_deliveries().await;
    assert_eq!(status_of(&env, &ids[0]).await, "returned");
    for ((sku, q), (on_hand, reserved)) in lines.iter().zip(&before) {
        assert_eq!(
            stock_of(env.store(), sku).await,
            (on_hand + i64::from(*q), *reserved),
            "{sku} restocked"
        );
    }
    // A second delivery of the same event restocks nothing again.
    env.sync.poll_now("tiktok").await.unwrap();
    for ((sku, q), (on_hand, _)) in lines.iter().zip(&before) {
        assert_eq!(stock_of(env.store(), sku).await.0, on_hand + i64::from(*q));
    }

    // Without the webhook, the poller finds the return.
    env.sb.set_webhook(Marketplace::TikTok, None);
    let lines = deliver_lines(&env, &ids[1]);
    let on_hand: Vec<i64> = {
        let mut v = Vec::new();
        for (sku, _) in &lines {
            v.push(stock_of(env.store(), sku).await.0);
        }
        v
    };
    env.sb
        .advance_order(Marketplace::TikTok, &ids[1], OrderAction::Return)
        .unwrap();
    env.sync.poll_now("tiktok").await.unwrap();
    assert_eq!(status_of(&env, &ids[1]).await, "returned");
    // Two lines of one SKU are counted once per unit.
    let mut expect: HashMap<&str, i64> = HashMap::new();
    for ((sku, q), oh) in lines.iter().zip(&on_hand) {
        *expect.entry(sku.as_str()).or_insert(*oh) += i64::from(*q);
    }
    for (sku, want) in expect {
        assert_eq!(stock_of(env.store(), sku).await.0, want, "{sku}");
    }
    assert!(catalog::verify_stock(env.store()).await.unwrap().is_empty());
    env.finish().await;
}

fn deliver_lines(env: &Env, id: &str) -> Vec<(String, u32)> {
    env.sb
        .orders(Marketplace::TikTok)
        .into_iter()
        .find(|o| o.order_id == id)
        .unwrap()
        .lines
}
