//! eBay payloads (reference §3): OAuth answers, error bodies, Fulfillment orders,
//! Inventory bulk updates, notification public keys and notifications. Pure; no I/O.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use stockade_core::Pii;
use stockade_core::order::{Address, Buyer, Marketplace, Order, OrderLine, OrderStatus};

use crate::de;
use crate::events::{EventError, InboundEvent, check_body_size, parse_json, serde_message};
use crate::sign::{EbayDigest, EbayPublicKey, parse_ebay_signature_header};
use crate::util::parse_rfc3339_ms;
use crate::{ErrorKind, MarketError};

const EBAY: Marketplace = Marketplace::Ebay;

/// The errorId eBay gives an expired or invalid access token.
pub const ERROR_INVALID_TOKEN: i64 = 1001;
/// The errorId for a listing past its daily revision limit.
pub const ERROR_REVISION_LIMIT: i64 = 25019;

#[derive(Deserialize)]
pub(crate) struct ErrorList {
    #[serde(default, deserialize_with = "de::vec")]
    pub errors: Vec<ApiError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiError {
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub error_id: Option<i64>,
    #[serde(default, deserialize_with = "de::string")]
    pub message: String,
}

impl ApiError {
    pub(crate) fn to_error(&self, status: Option<u16>) -> MarketError {
        let kind = match (self.error_id, status) {
            (Some(ERROR_REVISION_LIMIT), _) => ErrorKind::Throttled,
            (_, Some(429)) => ErrorKind::Throttled,
            (_, Some(401)) | (Some(ERROR_INVALID_TOKEN), _) => ErrorKind::Auth,
            (_, Some(403)) => ErrorKind::Auth,
            (_, Some(404)) => ErrorKind::NotFound,
            (_, Some(s)) if s >= 500 => ErrorKind::Server,
            _ => ErrorKind::Invalid,
        };
        let mut e = MarketError::new(EBAY, kind, &self.message);
        if let Some(id) = self.error_id {
            e = e.with_code(id.to_string());
        }
        if let Some(s) = status {
            e = e.with_status(s);
        }
        e
    }
}

/// Map a non-2xx eBay answer onto an error, keeping eBay's errorId.
pub fn api_error(status: u16, body: &[u8]) -> MarketError {
    match serde_json::from_slice::<ErrorList>(body)
        .ok()
        .and_then(|l| l.errors.into_iter().next())
    {
        Some(e) => e.to_error(Some(status)),
        None => {
            let kind = match status {
                429 => ErrorKind::Throttled,
                401 | 403 => ErrorKind::Auth,
                404 => ErrorKind::NotFound,
                500.. => ErrorKind::Server,
                400..=499 => ErrorKind::Invalid,
                _ => ErrorKind::Malformed,
            };
            MarketError::new(
                EBAY,
                kind,
                format!("HTTP {status} without an eBay error body"),
            )
            .with_status(status)
        }
    }
}

/// Parse a 2xx eBay JSON answer.
pub(crate) fn parse_ok<T: serde::de::DeserializeOwned>(
    status: u16,
    body: &[u8],
) -> Result<T, MarketError> {
    crate::parse_json_answer(EBAY, status, body)
}

#[derive(Deserialize)]
pub(crate) struct OAuthToken {
    #[serde(default, deserialize_with = "de::string")]
    pub access_token: String,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub expires_in: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    #[serde(default, deserialize_with = "de::string")]
    error: String,
    #[serde(default, deserialize_with = "de::string")]
    error_description: String,
}

/// Map an OAuth token endpoint error: `invalid_grant` means the refresh token is revoked.
pub fn oauth_error(status: u16, body: &[u8]) -> MarketError {
    match serde_json::from_slice::<OAuthError>(body) {
        Ok(e) if !e.error.is_empty() => {
            let kind = match e.error.as_str() {
                "invalid_grant" => ErrorKind::Revoked,
                _ if status == 429 => ErrorKind::Throttled,
                _ if status >= 500 => ErrorKind::Server,
                _ => ErrorKind::Auth,
            };
            MarketError::new(EBAY, kind, &e.error_description)
                .with_code(e.error)
                .with_status(status)
        }
        _ => api_error(status, body),
    }
}

#[derive(Deserialize)]
pub(crate) struct OrderPageRaw {
    #[serde(default, deserialize_with = "de::vec")]
    pub orders: Vec<EbayOrder>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub next: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub offset: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub limit: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EbayOrder {
    #[serde(deserialize_with = "de::string")]
    pub order_id: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub creation_date: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub last_modified_date: Option<String>,
    #[serde(default, deserialize_with = "de::string")]
    pub order_fulfillment_status: String,
    #[serde(default, deserialize_with = "de::string")]
    pub order_payment_status: String,
    #[serde(default)]
    pub cancel_status: Option<CancelStatus>,
    #[serde(default)]
    pub buyer: Option<EbayBuyer>,
    #[serde(default, deserialize_with = "de::vec")]
    pub fulfillment_start_instructions: Vec<StartInstruction>,
    #[serde(default, deserialize_with = "de::vec")]
    pub line_items: Vec<EbayLineItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CancelStatus {
    #[serde(default, deserialize_with = "de::string")]
    pub cancel_state: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EbayBuyer {
    #[serde(default)]
    pub buyer_registration_address: Option<Contact>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StartInstruction {
    #[serde(default)]
    pub shipping_step: Option<ShippingStep>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ShippingStep {
    #[serde(default)]
    pub ship_to: Option<Contact>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Contact {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub full_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub email: Option<String>,
    #[serde(default)]
    pub primary_phone: Option<Phone>,
    #[serde(default)]
    pub contact_address: Option<EbayAddress>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Phone {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub phone_number: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EbayAddress {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub address_line1: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub address_line2: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub city: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub state_or_province: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub postal_code: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub country_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EbayLineItem {
    #[serde(default, deserialize_with = "de::string")]
    pub line_item_id: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub legacy_item_id: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub sku: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub quantity: Option<i64>,
}

/// eBay order state → normalised status: a cancelled order is cancelled, a fully
/// refunded one returned, otherwise by fulfillment status.
pub fn map_status(fulfillment: &str, payment: &str, cancel_state: &str) -> OrderStatus {
    if cancel_state == "CANCELED" {
        return OrderStatus::Cancelled;
    }
    if payment == "FULLY_REFUNDED" {
        return OrderStatus::Returned;
    }
    if payment == "PENDING" || payment == "FAILED" {
        return OrderStatus::Pending;
    }
    match fulfillment {
        "IN_PROGRESS" => OrderStatus::PartiallyShipped,
        "FULFILLED" => OrderStatus::Shipped,
        _ => OrderStatus::Placed,
    }
}

fn pii(value: Option<String>) -> Option<Pii<String>> {
    value.filter(|v| !v.is_empty()).map(Pii::new)
}

impl EbayOrder {
    pub(crate) fn into_order(self) -> Order {
        let created = self
            .creation_date
            .as_deref()
            .and_then(parse_rfc3339_ms)
            .unwrap_or(0);
        let updated = self
            .last_modified_date
            .as_deref()
            .and_then(parse_rfc3339_ms)
            .unwrap_or(created);
        let cancel_state = self
            .cancel_status
            .map(|c| c.cancel_state)
            .unwrap_or_default();
        let status = map_status(
            &self.order_fulfillment_status,
            &self.order_payment_status,
            &cancel_state,
        );
        let lines = self
            .line_items
            .into_iter()
            .map(|li| OrderLine {
                line_id: li.line_item_id,
                sku: li
                    .sku
                    .filter(|s| !s.is_empty())
                    .or_else(|| li.legacy_item_id.clone())
                    .unwrap_or_default(),
                quantity: de::clamp_u32(li.quantity.unwrap_or(1)),
                listing_id: li.legacy_item_id,
            })
            .collect();
        let ship_to = self
            .fulfillment_start_instructions
            .into_iter()
            .find_map(|i| i.shipping_step.and_then(|s| s.ship_to));
        let registration = self.buyer.and_then(|b| b.buyer_registration_address);
        let contact = ship_to.or(registration);
        let mut buyer = Buyer::default();
        if let Some(c) = contact {
            buyer.name = pii(c.full_name.clone());
            buyer.email = pii(c.email);
            buyer.phone = pii(c.primary_phone.and_then(|p| p.phone_number));
            if let Some(a) = c.contact_address {
                buyer.address = Some(Address {
                    name: pii(c.full_name),
                    line1: pii(a.address_line1),
                    line2: pii(a.address_line2),
                    city: pii(a.city),
                    region: pii(a.state_or_province),
                    postal_code: pii(a.postal_code),
                    country_code: a.country_code.unwrap_or_default(),
                });
            }
        }
        Order {
            marketplace: EBAY,
            external_id: self.order_id,
            status,
            marketplace_status: self.order_fulfillment_status,
            created_at_ms: created,
            updated_at_ms: updated,
            lines,
            buyer,
        }
    }
}

/// Parse one eBay Fulfillment `Order` object.
pub fn parse_order(json: &[u8]) -> Result<Order, MarketError> {
    let raw: EbayOrder = serde_json::from_slice(json)
        .map_err(|e| MarketError::malformed(EBAY, serde_message(&e)))?;
    Ok(raw.into_order())
}

#[derive(Deserialize)]
pub(crate) struct BulkResponse {
    #[serde(default, deserialize_with = "de::vec")]
    pub responses: Vec<BulkItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BulkItem {
    #[serde(default, deserialize_with = "de::string")]
    pub sku: String,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub status_code: Option<i64>,
    #[serde(default, deserialize_with = "de::vec")]
    pub errors: Vec<ApiError>,
}

#[derive(Deserialize)]
pub(crate) struct Offers {
    #[serde(default, deserialize_with = "de::vec")]
    pub offers: Vec<Offer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Offer {
    #[serde(default, deserialize_with = "de::string")]
    pub offer_id: String,
}

/// `availability.shipToLocationAvailability.quantity` of an inventory item.
pub fn inventory_quantity(item: &Value) -> Option<u32> {
    let q = item
        .get("availability")?
        .get("shipToLocationAvailability")?
        .get("quantity")?;
    q.as_i64()
        .or_else(|| q.as_str()?.parse().ok())
        .map(de::clamp_u32)
}

/// `GET /commerce/notification/v1/public_key/{kid}` answer.
#[derive(Deserialize)]
pub(crate) struct PublicKeyAnswer {
    #[serde(default, deserialize_with = "de::string")]
    pub key: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub digest: Option<String>,
}

/// An eBay notification, kept whole: unknown fields land in the `extra` maps.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct EbayNotification {
    pub metadata: EbayMetadata,
    pub notification: EbayNotificationBody,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `metadata` of a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EbayMetadata {
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `notification` of a notification. `data` names eBay users: it is not printed by
/// `Debug`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EbayNotificationBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_attempt_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl fmt::Debug for EbayNotification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EbayNotification")
            .field("topic", &self.metadata.topic)
            .field("notification_id", &self.notification.notification_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for EbayNotificationBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EbayNotificationBody")
            .field("notification_id", &self.notification_id)
            .field("event_date", &self.event_date)
            .finish_non_exhaustive()
    }
}

/// Topics that need no action here.
pub const IGNORED_TOPICS: [&str; 6] = [
    "ITEM_MARKED_SHIPPED",
    "ITEM_AVAILABILITY",
    "ITEM_PRICE_REVISION",
    "ITEM_OUT_OF_STOCK",
    "PRIORITY_LISTING_REVISION",
    "ESP_TEST_APP",
];

fn data_str(data: &Value, key: &str) -> Option<String> {
    match data.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parse an eBay notification body (already verified) into an event.
pub fn parse_notification(body: &[u8]) -> Result<InboundEvent, EventError> {
    check_body_size(body)?;
    let n: EbayNotification = parse_json(body)?;
    notification_event(&n)
}

/// What a parsed notification means.
pub fn notification_event(n: &EbayNotification) -> Result<InboundEvent, EventError> {
    let data = &n.notification.data;
    let topic = n.metadata.topic.as_str();
    let account = || data_str(data, "userId").or_else(|| data_str(data, "username"));
    match topic {
        "ORDER_CONFIRMATION" => {
            let order_id = data_str(data, "orderId")
                .ok_or_else(|| EventError::Malformed("data.orderId is missing".into()))?;
            Ok(InboundEvent::OrderChanged {
                external_id: order_id,
                account: data_str(data, "sellerId").or_else(|| data_str(data, "sellerUsername")),
                status: None,
                event_id: n.notification.notification_id.clone(),
                occurred_at_ms: n
                    .notification
                    .event_date
                    .as_deref()
                    .and_then(parse_rfc3339_ms),
                summary: None,
            })
        }
        "MARKETPLACE_ACCOUNT_DELETION" | "AUTHORIZATION_REVOCATION" => {
            let account = account().ok_or_else(|| {
                EventError::Malformed("data.userId and data.username are missing".into())
            })?;
            let reason = if topic == "AUTHORIZATION_REVOCATION" {
                data_str(data, "revokeReason").unwrap_or_else(|| topic.to_owned())
            } else {
                topic.to_owned()
            };
            Ok(InboundEvent::Revoked { account, reason })
        }
        t if IGNORED_TOPICS.contains(&t) => Ok(InboundEvent::Ignored { kind: t.to_owned() }),
        t => Err(EventError::UnknownEvent(t.chars().take(64).collect())),
    }
}

/// Verify a signed notification with a known key (raw body, then its compact form) and
/// parse it. `key_digest` is the digest eBay published with the key, if any.
pub fn verify_notification(
    key: &EbayPublicKey,
    key_digest: Option<EbayDigest>,
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<InboundEvent, EventError> {
    check_body_size(body)?;
    let header =
        signature_header.ok_or_else(|| EventError::MissingSignature("x-ebay-signature".into()))?;
    let sig = parse_ebay_signature_header(header)?;
    let digest = key_digest.unwrap_or(sig.digest);
    if !key.verify_notification(digest, &sig.signature, body) {
        return Err(EventError::BadSignature);
    }
    parse_notification(body)
}
