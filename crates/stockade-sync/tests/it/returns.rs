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
        .decode::<String>()
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

/// Regression: Amazon keeps a returned order `SHIPPED` (the Orders API has no return
/// state), so returns were never seen. Now the poller reads the returns report: a
/// received, approved return restocks its units once, however often it is read; a
/// return still on its way or rejected restocks nothing.
async fn amazon_returns_restock_once_from_the_returns_report(db: Db) {
    let mut opts = fast_options();
    opts.returns_report_interval = Some(Duration::ZERO);
    // No overlap to lean on: a report must look back over the return window itself.
    opts.poll_overlap = Duration::from_millis(1);
    let env = Env::start(db, sandbox_config(4, 50), opts).await;
    env.sb.set_webhook(Marketplace::Amazon, None);
    let ids = env.sb.generate_orders(Marketplace::Amazon, 3);
    assert_eq!(ids.len(), 3);
    for id in &ids {
        for action in [OrderAction::Ship, OrderAction::Deliver] {
            env.sb
                .advance_order(Marketplace::Amazon, id, action)
                .unwrap();
        }
    }
    // The orders ship; the first report finds no returns (Amazon cancels it).
    env.sync.poll_now("amazon").await.unwrap();
    let lines: Vec<Vec<(String, u32)>> = ids
        .iter()
        .map(|id| {
            env.sb
                .orders(Marketplace::Amazon)
                .into_iter()
                .find(|o| &o.order_id == id)
                .unwrap()
                .lines
        })
        .collect();
    let (sku, _) = lines[0][0].clone();
    let before = stock_of(env.store(), &sku).await;
    let others: Vec<(String, (i64, i64))> = {
        let mut v = Vec::new();
        for (s, _) in lines[1].iter().chain(&lines[2]) {
            v.push((s.clone(), stock_of(env.store(), s).await));
        }
        v
    };

    // One unit of the first order comes back and Amazon approves the return; the
    // second order's return is approved but still travelling; the third is rejected.
    env.sb
        .amazon_return(&ids[0], &sku, 1, "Approved", true)
        .unwrap();
    env.sb
        .amazon_return(&ids[1], &lines[1][0].0, 1, "Approved", false)
        .unwrap();
    env.sb
        .amazon_return(&ids[2], &lines[2][0].0, 1, "Rejected", true)
        .unwrap();
    for _ in 0..2 {
        env.sync.poll_now("amazon").await.unwrap();
        assert_eq!(
            stock_of(env.store(), &sku).await,
            (before.0 + 1, before.1),
            "{sku} restocked by the returned unit, once"
        );
    }
    assert_eq!(status_of(&env, &ids[0]).await, "returned");
    for (s, was) in &others {
        if s != &sku {
            assert_eq!(stock_of(env.store(), s).await, *was, "{s} not restocked");
        }
    }
    assert_ne!(status_of(&env, &ids[1]).await, "returned");
    assert_ne!(status_of(&env, &ids[2]).await, "returned");

    // The second order's package reaches the seller days after the return was requested
    // (before the range the last reports covered): the next report still sees it.
    let (sku1, _) = lines[1][0].clone();
    let was = stock_of(env.store(), &sku1).await;
    assert_eq!(env.sb.amazon_returns_arrive(&ids[1]).unwrap(), 1);
    for _ in 0..2 {
        env.sync.poll_now("amazon").await.unwrap();
        assert_eq!(stock_of(env.store(), &sku1).await, (was.0 + 1, was.1));
    }
    assert_eq!(status_of(&env, &ids[1]).await, "returned");
    // The covered range is kept, nothing is in flight.
    let row = env
        .store()
        .query_one(
            "SELECT covered_ms, report_id FROM return_reports",
            stockade_store::sql_params![],
        )
        .await
        .unwrap()
        .unwrap();
    let (covered, report): (Option<i64>, Option<String>) = row.decode().unwrap();
    assert!(covered.is_some());
    assert_eq!(report, None);
    assert!(catalog::verify_stock(env.store()).await.unwrap().is_empty());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amazon_returns_restock_once_sqlite() {
    amazon_returns_restock_once_from_the_returns_report(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amazon_returns_restock_once_postgres() {
    if let Some(db) = Db::postgres() {
        amazon_returns_restock_once_from_the_returns_report(db).await;
    }
}
