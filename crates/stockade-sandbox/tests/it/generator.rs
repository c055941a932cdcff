use std::collections::HashMap;

use stockade_sandbox::{Marketplace, OrderAction, OrderState, SandboxConfig};

use crate::start;

#[tokio::test]
async fn generator_never_oversells_and_is_seeded() {
    let cfg = || SandboxConfig {
        seed: 42,
        sellers: 2,
        skus: 4,
        initial_quantity: 5,
        ..SandboxConfig::default()
    };
    let sb = start(cfg()).await;
    for m in Marketplace::ALL {
        // 2 sellers × 4 SKUs × 5 units = 40 units; ask for far more orders than that.
        let ids = sb.generate_orders(m, 1000);
        assert!(!ids.is_empty() && ids.len() <= 40, "{m:?}: {}", ids.len());
        let listings = sb.listings(m);
        assert!(
            listings.iter().all(|l| l.quantity == 0),
            "stock left while buyers stopped"
        );
        let mut sold: HashMap<(String, String), u32> = HashMap::new();
        for o in sb.orders(m) {
            assert!(!o.lines.is_empty() && o.lines.len() <= 3);
            for (sku, q) in &o.lines {
                assert!((1..=3).contains(q));
                *sold.entry((o.seller_id.clone(), sku.clone())).or_default() += q;
            }
        }
        for l in &listings {
            assert_eq!(
                sold.get(&(l.seller_id.clone(), l.sku.clone()))
                    .copied()
                    .unwrap_or(0),
                5,
                "{m:?} {}",
                l.sku
            );
        }
        assert!(sb.generate_orders(m, 10).is_empty());
        // Cancelling puts the units back; a buyer may then buy them.
        let first = sb.orders(m)[0].clone();
        assert_eq!(
            sb.advance_order(m, &first.order_id, OrderAction::Cancel)
                .unwrap(),
            OrderState::Cancelled
        );
        let restocked: u32 = sb.listings(m).iter().map(|l| l.quantity).sum();
        assert_eq!(restocked, first.lines.iter().map(|(_, q)| q).sum::<u32>());
        assert!(
            sb.advance_order(m, &first.order_id, OrderAction::Ship)
                .is_err()
        );
        let second = sb.orders(m)[1].clone();
        sb.advance_order(m, &second.order_id, OrderAction::Ship)
            .unwrap();
        sb.advance_order(m, &second.order_id, OrderAction::Deliver)
            .unwrap();
        assert_eq!(
            sb.advance_order(m, &second.order_id, OrderAction::Return)
                .unwrap(),
            OrderState::Returned
        );
        assert!(!sb.advance_random(m, 5).is_empty() || sb.orders(m).len() < 3);
    }
    // Same seed, same world.
    let again = start(cfg()).await;
    assert_eq!(sb.tiktok.app.client_id, again.tiktok.app.client_id);
    assert_eq!(
        sb.amazon.sellers[0].seller_id,
        again.amazon.sellers[0].seller_id
    );
    let a = again.generate_orders(Marketplace::Ebay, 3);
    let fresh = start(cfg()).await;
    assert_eq!(a, fresh.generate_orders(Marketplace::Ebay, 3));
    sb.shutdown().await;
    again.shutdown().await;
    fresh.shutdown().await;
}

#[tokio::test]
async fn describe_prints_urls_and_credentials() {
    let sb = start(SandboxConfig::default()).await;
    let text = sb.describe();
    for e in [&sb.tiktok, &sb.amazon, &sb.ebay] {
        assert!(text.contains(&e.base_url));
        assert!(text.contains(e.app.client_secret.expose_secret()));
    }
    assert!(text.contains("BEGIN CERTIFICATE"));
    // Debug output carries no secret.
    let dbg = format!("{sb:?} {:?}", sb.amazon);
    assert!(!dbg.contains(sb.amazon.app.client_secret.expose_secret()));
    assert!(!dbg.contains(sb.amazon.sellers[0].refresh_token.expose_secret()));
    sb.shutdown().await;
}
