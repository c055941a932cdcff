//! `/_sandbox/in-flight`: requests in flight at once per operation.

use serde_json::Value;
use stockade_sandbox::{Faults, InFlight, Marketplace, SandboxConfig};

use crate::{client, start};

const ITEM: &str = "GET /sell/inventory/v1/inventory_item/{sku}";

#[tokio::test]
async fn requests_sent_together_are_counted_as_in_flight_together() {
    let sb = start(SandboxConfig {
        rate_limits: false,
        ..SandboxConfig::default()
    })
    .await;
    let http = client(&sb);
    let t = crate::ebay::user_token(&sb, &http).await;
    // Latency is injected inside the count, so requests sent together overlap.
    sb.set_faults(
        Marketplace::Ebay,
        Faults {
            latency_ms: 200,
            ..Faults::none()
        },
    );
    let get = |sku: &str| {
        http.get(format!(
            "{}/sell/inventory/v1/inventory_item/{sku}",
            sb.ebay.base_url
        ))
        .bearer_auth(&t)
        .send()
    };
    let (a, b, c) = tokio::join!(get("SKU-0001"), get("SKU-0002"), get("SKU-0003"));
    for r in [a, b, c] {
        assert_eq!(r.unwrap().status().as_u16(), 200);
    }
    let _ = get("SKU-0004").await.unwrap();
    let counts = sb.in_flight(Marketplace::Ebay);
    assert_eq!(
        counts.get(ITEM),
        Some(&InFlight {
            started: 4,
            now: 0,
            peak: 3
        }),
        "{counts:?}"
    );
    // The same over HTTP (admin routes are not counted).
    let body: Value = http
        .get(format!("{}/_sandbox/in-flight", sb.ebay.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body[ITEM]["peak"], 3, "{body}");
    assert!(
        body.as_object()
            .unwrap()
            .keys()
            .all(|k| !k.contains("/_sandbox/")),
        "{body}"
    );
    sb.reset_in_flight(Marketplace::Ebay);
    assert!(sb.in_flight(Marketplace::Ebay).is_empty());
    sb.shutdown().await;
}
