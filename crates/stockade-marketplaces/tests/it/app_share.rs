//! eBay counts calls per application across its sellers. Two processes, each with its
//! own gateway and one seller of the same application, keep within the application's
//! limit together when each spends its share of the `ebay.app` bucket; each spending the
//! whole rate, the simulator refuses calls.

use stockade_egress::Caller;
use stockade_marketplaces::{Connector, EbayConnector, ListingRef, ebay::APP_BUCKET};
use stockade_sandbox::{Marketplace, SandboxConfig};

use crate::contract::{Harness, config};

/// The application's limit, in the simulator and in both connectors (calls/s, burst).
const RATE: (f64, u32) = (20.0, 4);
const SKUS: usize = 10;

fn seller_connector(
    h: &Harness,
    gateway: &stockade_egress::Gateway,
    seller: usize,
) -> (EbayConnector, Vec<ListingRef>) {
    let (mut cfg, creds) = h.ebay_seller_parts(seller);
    cfg.rate = RATE;
    let id = h.sb.ebay.sellers[seller].seller_id.clone();
    let listings =
        h.sb.listings(Marketplace::Ebay)
            .into_iter()
            .filter(|l| l.seller_id == id)
            .map(|l| ListingRef::sku(l.sku))
            .collect();
    let c = EbayConnector::new(
        cfg,
        creds,
        gateway,
        Caller::Connection(format!("ebay-{seller}")),
    );
    (c, listings)
}

#[tokio::test]
async fn two_processes_keep_to_one_ebay_application_limit_by_their_shares() {
    let h = Harness::start(
        SandboxConfig {
            sellers: 2,
            skus: SKUS,
            rate_limits: true,
            ebay_burst: RATE,
            ..config()
        },
        &[],
    )
    .await;
    let other = h.other_process_gateway();
    let (a, a_listings) = seller_connector(&h, &h.gateway, 0);
    let (b, b_listings) = seller_connector(&h, &other, 1);
    assert_eq!((a_listings.len(), b_listings.len()), (SKUS, SKUS));
    a.refresh_token().await.unwrap();
    b.refresh_token().await.unwrap();
    let app = h.sb.ebay.app.client_id.clone();
    let mut refused = Vec::new();
    for share in [Some(0.5), None] {
        h.gateway.share_bucket(APP_BUCKET, &app, share);
        other.share_bucket(APP_BUCKET, &app, share);
        // Let the simulator's bucket fill again.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        h.gateway.flush().await.unwrap();
        other.flush().await.unwrap();
        let before = throttled(&h).await;
        let (qa, qb) = tokio::join!(
            async {
                for _ in 0..2 {
                    a.get_quantities(&a_listings).await.unwrap();
                }
            },
            async {
                for _ in 0..2 {
                    b.get_quantities(&b_listings).await.unwrap();
                }
            }
        );
        let ((), ()) = (qa, qb);
        h.gateway.flush().await.unwrap();
        other.flush().await.unwrap();
        refused.push(throttled(&h).await - before);
    }
    eprintln!(
        "refused: sharing {}, not sharing {}",
        refused[0], refused[1]
    );
    // Half each: within the limit (a call sent exactly as its token falls due may meet
    // the simulator's bucket a moment early). The whole each: twice the limit.
    assert!(
        refused[0] <= 2,
        "{} calls refused while sharing",
        refused[0]
    );
    assert!(
        refused[1] >= 8,
        "only {} calls refused at twice the limit",
        refused[1]
    );
    h.finish().await;
}

/// Calls the simulator answered 429 (either process's log: one database).
async fn throttled(h: &Harness) -> usize {
    h.log()
        .await
        .iter()
        .filter(|r| r.operation == "ebay.inventory.item" && r.status == Some(429))
        .count()
}
