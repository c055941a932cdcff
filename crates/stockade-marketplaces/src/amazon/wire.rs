//! Amazon SP-API payloads (reference §1): LWA tokens, error bodies, Orders v2026-01-01,
//! Listings Items, Feeds, and ORDER_CHANGE notifications (bare or in an EventBridge
//! envelope). Pure; no I/O.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use stockade_core::Pii;
use stockade_core::order::{Address, Buyer, Marketplace, Order, OrderLine, OrderStatus};

use crate::de;
use crate::events::{EventError, InboundEvent, check_body_size, parse_json, serde_message};
use crate::util::{constant_time_eq, parse_rfc3339_ms};
use crate::{ErrorKind, MarketError};

const AMZ: Marketplace = Marketplace::Amazon;

/// `{"errors":[{"code","message","details"}]}`.
#[derive(Deserialize)]
pub(crate) struct ErrorList {
    #[serde(default, deserialize_with = "de::vec")]
    pub errors: Vec<ApiError>,
}

#[derive(Deserialize)]
pub(crate) struct ApiError {
    #[serde(default, deserialize_with = "de::string")]
    pub code: String,
    #[serde(default, deserialize_with = "de::string")]
    pub message: String,
    #[serde(default, deserialize_with = "de::string")]
    pub details: String,
}

/// Map a non-2xx SP-API answer onto an error, keeping Amazon's code.
pub fn api_error(status: u16, headers_error_type: Option<&str>, body: &[u8]) -> MarketError {
    let kind = match status {
        429 => ErrorKind::Throttled,
        401 | 403 => ErrorKind::Auth,
        404 => ErrorKind::NotFound,
        400..=499 => ErrorKind::Invalid,
        500.. => ErrorKind::Server,
        _ => ErrorKind::Malformed,
    };
    let first = serde_json::from_slice::<ErrorList>(body)
        .ok()
        .and_then(|l| l.errors.into_iter().next());
    let (code, message) = match first {
        Some(e) => {
            let msg = if e.details.is_empty() {
                e.message
            } else {
                format!("{} {}", e.message, e.details)
            };
            (Some(e.code).filter(|c| !c.is_empty()), msg)
        }
        None => (None, format!("HTTP {status} without an SP-API error body")),
    };
    let code = code.or_else(|| headers_error_type.map(str::to_owned));
    let mut err = MarketError::new(AMZ, kind, message).with_status(status);
    if let Some(c) = code {
        err = err.with_code(c);
    }
    err
}

/// Parse a 2xx SP-API JSON answer.
pub(crate) fn parse_ok<T: serde::de::DeserializeOwned>(
    status: u16,
    body: &[u8],
) -> Result<T, MarketError> {
    crate::parse_json_answer(AMZ, status, body)
}

/// Login with Amazon token answer.
#[derive(Deserialize)]
pub(crate) struct LwaToken {
    #[serde(default, deserialize_with = "de::string")]
    pub access_token: String,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub expires_in: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub refresh_token: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LwaError {
    #[serde(default, deserialize_with = "de::string")]
    pub error: String,
    #[serde(default, deserialize_with = "de::string")]
    pub error_description: String,
}

/// Map an LWA error answer: `invalid_grant` means the seller's authorisation is gone.
pub fn lwa_error(status: u16, body: &[u8]) -> MarketError {
    let kind_for = |code: &str| match code {
        "invalid_grant" => ErrorKind::Revoked,
        "invalid_client" | "unauthorized_client" => ErrorKind::Auth,
        _ if status == 429 => ErrorKind::Throttled,
        _ if status >= 500 => ErrorKind::Server,
        _ => ErrorKind::Auth,
    };
    match serde_json::from_slice::<LwaError>(body) {
        Ok(e) if !e.error.is_empty() => {
            MarketError::new(AMZ, kind_for(&e.error), &e.error_description)
                .with_code(e.error)
                .with_status(status)
        }
        _ => {
            let kind = match status {
                429 => ErrorKind::Throttled,
                500.. => ErrorKind::Server,
                _ => ErrorKind::Malformed,
            };
            MarketError::new(
                AMZ,
                kind,
                "the token endpoint answered without an OAuth error body",
            )
            .with_status(status)
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct SearchOrders {
    #[serde(default, deserialize_with = "de::vec")]
    pub orders: Vec<AmzOrder>,
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

#[derive(Deserialize)]
pub(crate) struct Pagination {
    #[serde(default, rename = "nextToken", deserialize_with = "de::opt_string")]
    pub next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AmzOrder {
    #[serde(deserialize_with = "de::string")]
    pub order_id: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub created_time: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub last_updated_time: Option<String>,
    #[serde(default)]
    pub fulfillment: Option<OrderFulfillment>,
    #[serde(default)]
    pub buyer: Option<AmzBuyer>,
    #[serde(default)]
    pub recipient: Option<Recipient>,
    #[serde(default, deserialize_with = "de::vec")]
    pub order_items: Vec<AmzItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderFulfillment {
    #[serde(default, deserialize_with = "de::string")]
    pub fulfillment_status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AmzBuyer {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub buyer_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub buyer_email: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Recipient {
    #[serde(default)]
    pub delivery_address: Option<AmzAddress>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AmzAddress {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub address_line1: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub address_line2: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub address_line3: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub city: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub state_or_region: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub postal_code: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub country_code: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub phone: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AmzItem {
    #[serde(default, deserialize_with = "de::string")]
    pub order_item_id: String,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub quantity_ordered: Option<i64>,
    #[serde(default)]
    pub product: Option<AmzProduct>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AmzProduct {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub asin: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub seller_sku: Option<String>,
}

/// Orders v2026 fulfillment status → normalised status.
pub fn map_status(status: &str) -> OrderStatus {
    match status {
        "PENDING_AVAILABILITY" | "PENDING" => OrderStatus::Pending,
        "UNSHIPPED" => OrderStatus::Placed,
        "PARTIALLY_SHIPPED" => OrderStatus::PartiallyShipped,
        "SHIPPED" => OrderStatus::Shipped,
        "CANCELLED" | "UNFULFILLABLE" => OrderStatus::Cancelled,
        _ => OrderStatus::Placed,
    }
}

fn pii(value: Option<String>) -> Option<Pii<String>> {
    value.filter(|v| !v.is_empty()).map(Pii::new)
}

impl AmzOrder {
    pub(crate) fn into_order(self) -> Order {
        let created = self
            .created_time
            .as_deref()
            .and_then(parse_rfc3339_ms)
            .unwrap_or(0);
        let updated = self
            .last_updated_time
            .as_deref()
            .and_then(parse_rfc3339_ms)
            .unwrap_or(created);
        let status_text = self
            .fulfillment
            .map(|f| f.fulfillment_status)
            .unwrap_or_default();
        let lines = self
            .order_items
            .into_iter()
            .map(|it| {
                let (asin, sku) = it.product.map_or((None, None), |p| (p.asin, p.seller_sku));
                OrderLine {
                    line_id: it.order_item_id,
                    sku: sku.unwrap_or_default(),
                    quantity: de::clamp_u32(it.quantity_ordered.unwrap_or(0)),
                    listing_id: asin,
                }
            })
            .collect();
        let mut buyer = Buyer::default();
        if let Some(b) = self.buyer {
            buyer.name = pii(b.buyer_name);
            buyer.email = pii(b.buyer_email);
        }
        if let Some(a) = self.recipient.and_then(|r| r.delivery_address) {
            buyer.phone = pii(a.phone);
            let line2 = match (
                a.address_line2.filter(|s| !s.is_empty()),
                a.address_line3.filter(|s| !s.is_empty()),
            ) {
                (Some(l2), Some(l3)) => Some(format!("{l2}, {l3}")),
                (l2, l3) => l2.or(l3),
            };
            if buyer.name.is_none() {
                buyer.name = pii(a.name.clone());
            }
            buyer.address = Some(Address {
                name: pii(a.name),
                line1: pii(a.address_line1),
                line2: pii(line2),
                city: pii(a.city),
                region: pii(a.state_or_region),
                postal_code: pii(a.postal_code),
                country_code: a.country_code.unwrap_or_default(),
            });
        }
        Order {
            marketplace: AMZ,
            external_id: self.order_id,
            status: map_status(&status_text),
            marketplace_status: status_text,
            created_at_ms: created,
            updated_at_ms: updated,
            lines,
            buyer,
        }
    }
}

/// Parse an Orders v2026 order (bare, or wrapped as `{"order":{…}}` by getOrder).
pub fn parse_order(json: &[u8]) -> Result<Order, MarketError> {
    let value: Value =
        serde_json::from_slice(json).map_err(|e| MarketError::malformed(AMZ, serde_message(&e)))?;
    order_from_value(value)
}

pub(crate) fn order_from_value(mut value: Value) -> Result<Order, MarketError> {
    if let Some(inner) = value.get_mut("order").map(Value::take) {
        value = inner;
    } else if let Some(inner) = value.get_mut("payload").map(Value::take) {
        value = inner;
    }
    let raw: AmzOrder = serde_json::from_value(value)
        .map_err(|e| MarketError::malformed(AMZ, serde_message(&e)))?;
    Ok(raw.into_order())
}

/// Listings Items PATCH answer.
#[derive(Deserialize)]
pub(crate) struct PatchResult {
    #[serde(default, deserialize_with = "de::string")]
    pub status: String,
    #[serde(default, deserialize_with = "de::vec")]
    pub issues: Vec<Issue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Issue {
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub message_id: Option<i64>,
    #[serde(default, deserialize_with = "de::string")]
    pub code: String,
    #[serde(default, deserialize_with = "de::string")]
    pub message: String,
    #[serde(default, deserialize_with = "de::string")]
    pub severity: String,
}

impl Issue {
    pub(crate) fn is_error(&self) -> bool {
        self.severity.eq_ignore_ascii_case("ERROR")
    }

    pub(crate) fn to_error(&self) -> MarketError {
        MarketError::new(AMZ, ErrorKind::Invalid, &self.message).with_code(self.code.clone())
    }
}

/// The available quantity of a listing from getListingsItem: the `DEFAULT`
/// (merchant-fulfilled) entry of `attributes.fulfillment_availability`, else of
/// `fulfillmentAvailability`.
pub fn listing_quantity(item: &Value) -> Option<u32> {
    let pick = |list: &Value, code_key: &str| -> Option<u32> {
        let list = list.as_array()?;
        let entry = list
            .iter()
            .find(|e| e.get(code_key).and_then(Value::as_str) == Some("DEFAULT"))
            .or_else(|| list.first())?;
        let q = entry.get("quantity")?;
        q.as_i64()
            .or_else(|| q.as_str()?.parse().ok())
            .map(de::clamp_u32)
    };
    item.get("attributes")
        .and_then(|a| a.get("fulfillment_availability"))
        .and_then(|l| pick(l, "fulfillment_channel_code"))
        .or_else(|| {
            item.get("fulfillmentAvailability")
                .and_then(|l| pick(l, "fulfillmentChannelCode"))
        })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FeedDocument {
    #[serde(deserialize_with = "de::string")]
    pub feed_document_id: String,
    #[serde(deserialize_with = "de::string")]
    pub url: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub compression_algorithm: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreatedFeed {
    #[serde(deserialize_with = "de::string")]
    pub feed_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Feed {
    #[serde(default, deserialize_with = "de::string")]
    pub processing_status: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub result_feed_document_id: Option<String>,
}

/// A JSON_LISTINGS_FEED processing report.
#[derive(Deserialize)]
pub(crate) struct ProcessingReport {
    #[serde(default, deserialize_with = "de::vec")]
    pub issues: Vec<Issue>,
}

/// The JSON_LISTINGS_FEED document for a batch of `(sku, quantity, product_type)`,
/// message ids numbered from 1 in input order.
pub fn listings_feed(seller_id: &str, items: &[(&str, u32, &str)]) -> Value {
    let messages: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, (sku, quantity, product_type))| {
            serde_json::json!({
                "messageId": i + 1,
                "sku": sku,
                "operationType": "PATCH",
                "productType": product_type,
                "patches": [{
                    "op": "replace",
                    "path": "/attributes/fulfillment_availability",
                    "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}]
                }]
            })
        })
        .collect();
    serde_json::json!({"header": {"sellerId": seller_id, "version": "2.0"}, "messages": messages})
}

/// The patchListingsItem body setting the merchant-fulfilled quantity.
pub fn quantity_patch(product_type: &str, quantity: u32) -> Value {
    serde_json::json!({
        "productType": product_type,
        "patches": [{
            "op": "merge",
            "path": "/attributes/fulfillment_availability",
            "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}]
        }]
    })
}

/// An SP-API notification (the SQS message body, or an EventBridge `detail`), kept whole:
/// unknown fields land in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmazonNotification {
    #[serde(
        rename = "NotificationVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub notification_version: Option<String>,
    #[serde(rename = "NotificationType")]
    pub notification_type: String,
    #[serde(
        rename = "PayloadVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub payload_version: Option<String>,
    #[serde(rename = "EventTime", default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    #[serde(rename = "Payload", default, skip_serializing_if = "Value::is_null")]
    pub payload: Value,
    #[serde(
        rename = "NotificationMetadata",
        default,
        skip_serializing_if = "Value::is_null"
    )]
    pub notification_metadata: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An EventBridge event carrying an SP-API notification in `detail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBridgeEnvelope {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    pub detail: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Notification types SP-API documents; anything else is an unknown event.
pub const KNOWN_NOTIFICATION_TYPES: [&str; 27] = [
    "ORDER_CHANGE",
    "ANY_OFFER_CHANGED",
    "B2B_ANY_OFFER_CHANGED",
    "BRANDED_ITEM_CONTENT_CHANGE",
    "DATA_KIOSK_QUERY_PROCESSING_FINISHED",
    "DETAIL_PAGE_TRAFFIC_EVENT",
    "FBA_INVENTORY_AVAILABILITY_CHANGES",
    "FBA_OUTBOUND_SHIPMENT_STATUS",
    "FEE_PROMOTION",
    "FEED_PROCESSING_FINISHED",
    "FULFILLMENT_ORDER_STATUS",
    "ITEM_INVENTORY_EVENT_CHANGE",
    "ITEM_PRODUCT_TYPE_CHANGE",
    "ITEM_SALES_EVENT_CHANGE",
    "LISTINGS_ITEM_ISSUES_CHANGE",
    "LISTINGS_ITEM_MFN_QUANTITY_CHANGE",
    "LISTINGS_ITEM_STATUS_CHANGE",
    "PRICING_HEALTH",
    "PRODUCT_TYPE_DEFINITIONS_CHANGE",
    "REPORT_PROCESSING_FINISHED",
    "ACCOUNT_STATUS_CHANGED",
    "EXTERNAL_FULFILLMENT_SHIPMENT_STATUS_CHANGE",
    "SHIPMENT_TRACKING_MILESTONE_CHANGED",
    "TRANSACTION_UPDATE",
    "TAX_INVOICE_EXPORT_STATUS_CHANGE",
    "TAX_INVOICE_ISSUANCE_STATUS_CHANGE",
    "MFN_ORDER_STATUS_CHANGE",
];

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

/// Parse an Amazon event body: an EventBridge envelope, or a bare notification.
pub fn parse_event(body: &[u8]) -> Result<InboundEvent, EventError> {
    check_body_size(body)?;
    let value: Value = parse_json(body)?;
    let notification_value = if value.get("detail-type").is_some() {
        let env: EventBridgeEnvelope =
            serde_json::from_value(value).map_err(|e| EventError::Malformed(serde_message(&e)))?;
        if !env.detail.is_object() {
            return Err(EventError::Malformed("detail is not an object".into()));
        }
        let mut detail = env.detail;
        // EventBridge's detail-type names the notification when detail omits it.
        if detail.get("NotificationType").is_none()
            && let Some(map) = detail.as_object_mut()
        {
            map.insert("NotificationType".into(), Value::String(env.detail_type));
        }
        detail
    } else {
        value
    };
    let n: AmazonNotification = serde_json::from_value(notification_value)
        .map_err(|e| EventError::Malformed(serde_message(&e)))?;
    notification_event(&n)
}

/// What a parsed notification means.
pub fn notification_event(n: &AmazonNotification) -> Result<InboundEvent, EventError> {
    match n.notification_type.as_str() {
        "ORDER_CHANGE" => {
            let p = n.payload.get("OrderChangeNotification").ok_or_else(|| {
                EventError::Malformed("Payload.OrderChangeNotification is missing".into())
            })?;
            let order_id = str_at(p, &["AmazonOrderId"])
                .ok_or_else(|| EventError::Malformed("AmazonOrderId is missing".into()))?;
            Ok(InboundEvent::OrderChanged {
                external_id: order_id.to_owned(),
                account: str_at(p, &["SellerId"]).map(str::to_owned),
                status: str_at(p, &["Summary", "OrderStatus"]).map(str::to_owned),
                event_id: str_at(&n.notification_metadata, &["NotificationId"]).map(str::to_owned),
                occurred_at_ms: str_at(p, &["OrderChangeTrigger", "TimeOfOrderChange"])
                    .or(n.event_time.as_deref())
                    .and_then(parse_rfc3339_ms),
                summary: super::summary::order_from_summary(p, order_id).map(Box::new),
            })
        }
        t if KNOWN_NOTIFICATION_TYPES.contains(&t) => {
            Ok(InboundEvent::Ignored { kind: t.to_owned() })
        }
        t => Err(EventError::UnknownEvent(t.chars().take(64).collect())),
    }
}

/// Check the shared-secret header EventBridge's API destination adds, then parse.
pub fn verify_event(
    header_value: Option<&str>,
    header_name: &str,
    expected: &str,
    body: &[u8],
) -> Result<InboundEvent, EventError> {
    check_body_size(body)?;
    let given = header_value.ok_or_else(|| EventError::MissingSignature(header_name.to_owned()))?;
    if expected.is_empty() || !constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
        return Err(EventError::BadSignature);
    }
    parse_event(body)
}
