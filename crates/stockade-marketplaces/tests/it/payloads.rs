//! The official example payloads parse without loss, and order shapes map onto `Order`.

use serde_json::Value;
use stockade_marketplaces::amazon::wire::{AmazonNotification, EventBridgeEnvelope};
use stockade_marketplaces::ebay::wire::EbayNotification;
use stockade_marketplaces::tiktok::wire::TikTokWebhook;
use stockade_marketplaces::{
    Buyer, InboundEvent, Marketplace, Order, OrderLine, OrderStatus, amazon, ebay, tiktok,
};

use crate::vectors::{EBAY_MESSAGE_PRETTY, TIKTOK_SAMPLE};

const AMAZON_ORDER_CHANGE: &str = include_str!("fixtures/amazon_order_change.json");

/// Parse into the typed struct and back: the JSON value must be unchanged.
fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(json: &str) {
    let original: Value = serde_json::from_str(json).unwrap();
    let typed: T = serde_json::from_str(json).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), original);
}

#[test]
fn official_payloads_parse_without_loss() {
    round_trips::<TikTokWebhook>(TIKTOK_SAMPLE);
    round_trips::<AmazonNotification>(AMAZON_ORDER_CHANGE);
    round_trips::<EbayNotification>(EBAY_MESSAGE_PRETTY);
    let bridge = format!(
        r#"{{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","detail-type":"ORDER_CHANGE","source":"aws.partner/sellingpartnerapi.amazon/amzn1.sellerapps.app.x","account":"123456789012","time":"2022-11-29T19:42:05Z","region":"us-east-1","resources":[],"detail":{AMAZON_ORDER_CHANGE}}}"#
    );
    round_trips::<EventBridgeEnvelope>(&bridge);
}

#[test]
fn tiktok_sample_is_an_order_change() {
    let event = tiktok::wire::parse_webhook(TIKTOK_SAMPLE.as_bytes()).unwrap();
    assert_eq!(
        event,
        InboundEvent::OrderChanged {
            external_id: "576684019603311365".into(),
            account: Some("7494726673780148744".into()),
            status: Some("AWAITING_SHIPMENT".into()),
            event_id: None,
            occurred_at_ms: Some(1_664_095_610_000),
            summary: None,
        }
    );
}

#[test]
fn tiktok_revocation_and_expiry() {
    let revoked = tiktok::wire::parse_webhook(
        br#"{"type":6,"shop_id":"7494726673780148744","timestamp":1664095733,"data":{}}"#,
    )
    .unwrap();
    assert_eq!(
        revoked,
        InboundEvent::Revoked {
            account: "7494726673780148744".into(),
            reason: "SELLER_DEAUTHORIZATION".into()
        }
    );
    let expiring = tiktok::wire::parse_webhook(
        br#"{"type":7,"shop_id":"1","timestamp":1664095733,"data":{"message":"expires soon","expiration_time":1700000000}}"#,
    )
    .unwrap();
    assert_eq!(
        expiring,
        InboundEvent::AuthorizationExpiring {
            account: "1".into(),
            expires_at_ms: Some(1_700_000_000_000)
        }
    );
    assert_eq!(
        tiktok::wire::parse_webhook(br#"{"type":5,"shop_id":"1","data":{"product_id":"9"}}"#)
            .unwrap(),
        InboundEvent::Ignored {
            kind: "PRODUCT_STATUS_CHANGE".into()
        }
    );
}

#[test]
fn amazon_order_change_bare_and_in_eventbridge() {
    let expected = InboundEvent::OrderChanged {
        external_id: "903-8868176-2219830".into(),
        account: Some("A3TH9S8BH6GOGM".into()),
        status: Some("Unshipped".into()),
        event_id: Some("d0e9e693-c3ad-4373-979f-ed4ec98dd746".into()),
        occurred_at_ms: Some(1_669_750_924_284),
        // The summary: what stock needs, no buyer data (the postal code is not kept).
        summary: Some(Box::new(Order {
            marketplace: Marketplace::Amazon,
            external_id: "903-8868176-2219830".into(),
            status: OrderStatus::Placed,
            marketplace_status: "UNSHIPPED".into(),
            created_at_ms: 1_657_741_324_284,
            updated_at_ms: 1_669_750_924_284,
            lines: vec![OrderLine {
                line_id: "OIID34853450".into(),
                sku: "SellerSKUID1".into(),
                quantity: 10,
                listing_id: None,
            }],
            buyer: Buyer::default(),
        })),
    };
    assert_eq!(
        amazon::wire::parse_event(AMAZON_ORDER_CHANGE.as_bytes()).unwrap(),
        expected
    );
    let bridge = format!(
        r#"{{"version":"0","id":"x","detail-type":"ORDER_CHANGE","source":"aws.partner/sellingpartnerapi.amazon/app","account":"1","time":"2022-11-29T19:42:05Z","region":"us-east-1","resources":[],"detail":{AMAZON_ORDER_CHANGE}}}"#
    );
    assert_eq!(
        amazon::wire::parse_event(bridge.as_bytes()).unwrap(),
        expected
    );
    let other = r#"{"version":"0","detail-type":"LISTINGS_ITEM_MFN_QUANTITY_CHANGE","detail":{"NotificationType":"LISTINGS_ITEM_MFN_QUANTITY_CHANGE","Payload":{"SellerId":"A","Sku":"S","Quantity":1}}}"#;
    assert_eq!(
        amazon::wire::parse_event(other.as_bytes()).unwrap(),
        InboundEvent::Ignored {
            kind: "LISTINGS_ITEM_MFN_QUANTITY_CHANGE".into()
        }
    );
}

#[test]
fn ebay_deletion_revocation_and_order_confirmation() {
    assert_eq!(
        ebay::wire::parse_notification(EBAY_MESSAGE_PRETTY.as_bytes()).unwrap(),
        InboundEvent::Revoked {
            account: "ma8vp1jySJC".into(),
            reason: "MARKETPLACE_ACCOUNT_DELETION".into()
        }
    );
    let revocation = br#"{"metadata":{"topic":"AUTHORIZATION_REVOCATION","schemaVersion":"1.0","deprecated":false},"notification":{"notificationId":"n1","eventDate":"2025-01-01T00:00:00.000Z","publishDate":"2025-01-01T00:00:01.000Z","publishAttemptCount":1,"data":{"username":"seller1","userId":"u1","eiasToken":"e","revokeReason":"REVOKED_BY_USER"}}}"#;
    assert_eq!(
        ebay::wire::parse_notification(revocation).unwrap(),
        InboundEvent::Revoked {
            account: "u1".into(),
            reason: "REVOKED_BY_USER".into()
        }
    );
    let order = br#"{"metadata":{"topic":"ORDER_CONFIRMATION","schemaVersion":"1.0","deprecated":false},"notification":{"notificationId":"n2","eventDate":"2025-01-01T00:00:00.000Z","publishDate":"2025-01-01T00:00:01.000Z","publishAttemptCount":1,"data":{"orderId":"12-34567-89012","lineItemId":"1000"}}}"#;
    assert_eq!(
        ebay::wire::parse_notification(order).unwrap(),
        InboundEvent::OrderChanged {
            external_id: "12-34567-89012".into(),
            account: None,
            status: None,
            event_id: Some("n2".into()),
            occurred_at_ms: Some(1_735_689_600_000),
            summary: None,
        }
    );
}

#[test]
fn tiktok_order_maps_one_line_per_item_with_pii_wrapped() {
    let json = br#"{"id":"576000000000000001","status":"AWAITING_SHIPMENT","create_time":1700000000,"update_time":1700000100,
      "user_id":"u","buyer_email":"v1x2@scs.tiktokw.us","shipping_type":"SELLER","warehouse_id":"w",
      "recipient_address":{"name":"Jane Roe","first_name":"Jane","last_name":"Roe","phone_number":"(+1)213-555-0100",
        "address_line1":"1 Main St","address_line2":"Apt 2","postal_code":"90001","region_code":"US","full_address":"x",
        "district_info":[{"address_level_name":"country","address_name":"United States","address_level":"L0"},
                         {"address_level_name":"State","address_name":"California","address_level":"L1"},
                         {"address_level_name":"County","address_name":"Los Angeles County","address_level":"L2"},
                         {"address_level_name":"City","address_name":"Los Angeles","address_level":"L3"}]},
      "line_items":[{"id":"l1","sku_id":"s1","seller_sku":"SKU-1","product_id":"p","product_name":"Mug","display_status":"AWAITING_SHIPMENT","package_id":"pk","sale_price":"9.99","currency":"USD"},
                    {"id":"l2","sku_id":"s1","seller_sku":"SKU-1","product_id":"p"},
                    {"id":"l3","sku_id":"s2","seller_sku":""}]}"#;
    let order = tiktok::wire::parse_order(json).unwrap();
    assert_eq!(order.marketplace, Marketplace::TikTok);
    assert_eq!(order.external_id, "576000000000000001");
    assert_eq!(order.status, OrderStatus::Placed);
    assert_eq!(order.marketplace_status, "AWAITING_SHIPMENT");
    assert_eq!(
        (order.created_at_ms, order.updated_at_ms),
        (1_700_000_000_000, 1_700_000_100_000)
    );
    assert_eq!(order.lines.len(), 3);
    assert!(order.lines.iter().all(|l| l.quantity == 1));
    assert_eq!(order.lines[2].sku, "s2", "falls back to sku_id");
    assert_eq!(order.lines[0].listing_id.as_deref(), Some("s1"));
    let a = order.buyer.address.as_ref().unwrap();
    assert_eq!(a.country_code, "US");
    assert_eq!(a.city.as_ref().unwrap().expose_pii(), "Los Angeles");
    assert_eq!(a.region.as_ref().unwrap().expose_pii(), "California");
    assert_eq!(a.line2.as_ref().unwrap().expose_pii(), "Apt 2");
    assert_eq!(
        order.buyer.phone.as_ref().unwrap().expose_pii(),
        "(+1)213-555-0100"
    );
    let debug = format!("{order:?}");
    for pii in ["Jane", "Main St", "213-555", "scs.tiktokw", "90001"] {
        assert!(!debug.contains(pii), "{pii} leaked in {debug}");
    }
}

#[test]
fn amazon_order_maps_items_buyer_and_recipient() {
    let json = br#"{"orderId":"123-4567890-1234567","createdTime":"2024-12-25T10:30:00Z","lastUpdatedTime":"2024-12-25T14:45:00Z",
      "salesChannel":{"channelName":"AMAZON","marketplaceId":"ATVPDKIKX0DER"},
      "fulfillment":{"fulfillmentStatus":"PARTIALLY_SHIPPED","fulfilledBy":"MERCHANT"},
      "buyer":{"buyerName":"John Smith","buyerEmail":"buyer-email@marketplace.amazon.com"},
      "recipient":{"deliveryAddress":{"name":"John Smith","addressLine1":"123 Main Street","addressLine2":"Suite 456","addressLine3":"",
         "city":"Seattle","stateOrRegion":"WA","postalCode":"98101","countryCode":"US","phone":"555-123-4567"}},
      "orderItems":[{"orderItemId":"OI1","quantityOrdered":2,"product":{"asin":"B0TEST","sellerSku":"SKU-1","title":"Mug"},
         "fulfillment":{"quantityFulfilled":1,"quantityUnfulfilled":1}}]}"#;
    let order = amazon::wire::parse_order(json).unwrap();
    assert_eq!(order.status, OrderStatus::PartiallyShipped);
    assert_eq!(order.created_at_ms, 1_735_122_600_000);
    assert_eq!(order.updated_at_ms, 1_735_137_900_000);
    assert_eq!(order.lines[0].quantity, 2);
    assert_eq!(order.lines[0].sku, "SKU-1");
    assert_eq!(order.lines[0].listing_id.as_deref(), Some("B0TEST"));
    assert_eq!(
        order.buyer.email.as_ref().unwrap().expose_pii(),
        "buyer-email@marketplace.amazon.com"
    );
    assert_eq!(
        order.buyer.phone.as_ref().unwrap().expose_pii(),
        "555-123-4567"
    );
    let a = order.buyer.address.as_ref().unwrap();
    assert_eq!(a.line2.as_ref().unwrap().expose_pii(), "Suite 456");
    assert_eq!(a.postal_code.as_ref().unwrap().expose_pii(), "98101");
    // getOrder wraps the order.
    let wrapped = format!(r#"{{"order":{}}}"#, std::str::from_utf8(json).unwrap());
    assert_eq!(
        amazon::wire::parse_order(wrapped.as_bytes()).unwrap(),
        order
    );
}

#[test]
fn ebay_order_prefers_ship_to_and_maps_cancellation() {
    let json = br#"{"orderId":"12-34567-89012","legacyOrderId":"1","creationDate":"2026-01-01T00:00:00.000Z","lastModifiedDate":"2026-01-02T00:00:00.000Z",
      "orderFulfillmentStatus":"NOT_STARTED","orderPaymentStatus":"PAID","cancelStatus":{"cancelState":"NONE_REQUESTED"},
      "buyer":{"username":"b","buyerRegistrationAddress":{"fullName":"Reg Name","email":"reg@example.com","primaryPhone":{"phoneNumber":"1"},
        "contactAddress":{"addressLine1":"Reg St","city":"X","stateOrProvince":"Y","postalCode":"1","countryCode":"GB"}}},
      "fulfillmentStartInstructions":[{"shippingStep":{"shipTo":{"fullName":"Ship Name","contactAddress":{"addressLine1":"Ship St","city":"San Jose","stateOrProvince":"CA","postalCode":"95125","countryCode":"US"},"primaryPhone":{"phoneNumber":"4085550100"},"email":"ship@example.com"}}}],
      "lineItems":[{"lineItemId":"10","legacyItemId":"110","sku":"SKU-1","quantity":3,"lineItemFulfillmentStatus":"NOT_STARTED","title":"Mug"}]}"#;
    let order = ebay::wire::parse_order(json).unwrap();
    assert_eq!(order.status, OrderStatus::Placed);
    assert_eq!(order.lines[0].quantity, 3);
    assert_eq!(order.lines[0].listing_id.as_deref(), Some("110"));
    assert_eq!(order.buyer.name.as_ref().unwrap().expose_pii(), "Ship Name");
    assert_eq!(order.buyer.address.as_ref().unwrap().country_code, "US");
    let cancelled = std::str::from_utf8(json)
        .unwrap()
        .replace("NONE_REQUESTED", "CANCELED");
    assert_eq!(
        ebay::wire::parse_order(cancelled.as_bytes())
            .unwrap()
            .status,
        OrderStatus::Cancelled
    );
}
