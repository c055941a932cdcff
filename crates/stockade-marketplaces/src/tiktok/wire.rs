//! TikTok Shop payloads (reference §2): the response envelope, tokens, orders, inventory,
//! webhooks, and their mapping onto the normalised types. Pure; no I/O.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use stockade_core::Pii;
use stockade_core::order::{Address, Buyer, Marketplace, Order, OrderLine, OrderStatus};

use crate::de;
use crate::events::{EventError, InboundEvent, check_body_size, parse_json};
use crate::sign::tiktok_webhook_verify;
use crate::{ErrorKind, MarketError};

const TT: Marketplace = Marketplace::TikTok;

/// Envelope code TikTok uses for throttling.
pub const CODE_THROTTLED: i64 = 36_009_004;
/// Envelope code for bad parameters.
pub const CODE_BAD_PARAMS: i64 = 36_004_004;
/// Envelope code for an invalid `sign`.
pub const CODE_BAD_SIGN: i64 = 106_001;
/// Envelope codes for an invalid or expired access token (refresh and retry).
pub const CODES_TOKEN: [i64; 2] = [105_001, 105_002];

/// The standard response envelope `{code, message, request_id, data}`, its `data`
/// decoded straight into the type the call expects (`IgnoredAny` to read only the code).
#[derive(Deserialize)]
#[serde(bound = "T: Deserialize<'de>")]
pub(crate) struct Envelope<T> {
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub code: Option<i64>,
    #[serde(default, deserialize_with = "de::string")]
    pub message: String,
    #[serde(default = "none")]
    pub data: Option<T>,
}

fn none<T>() -> Option<T> {
    None
}

/// The error kind of a non-zero envelope code.
pub fn code_kind(code: i64, http_status: u16) -> ErrorKind {
    let text = code.to_string();
    if code == CODE_THROTTLED || http_status == 429 {
        ErrorKind::Throttled
    } else if code == CODE_BAD_PARAMS {
        ErrorKind::Invalid
    } else if code == CODE_BAD_SIGN
        || (text.len() == 6 && (text.starts_with("105") || text.starts_with("360")))
    {
        ErrorKind::Auth
    } else if http_status == 404 {
        ErrorKind::NotFound
    } else if http_status >= 500 {
        ErrorKind::Server
    } else {
        ErrorKind::Invalid
    }
}

/// Check an HTTP answer and decode the envelope's `data` into `T` in one pass (`None`
/// when absent or `null`). A success whose `data` does not fit `T` is a malformed answer;
/// an error envelope is read for its code and message only.
pub(crate) fn check_response<T: serde::de::DeserializeOwned>(
    status: u16,
    body: &[u8],
) -> Result<Option<T>, MarketError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'{') {
        let kind = match status {
            429 => ErrorKind::Throttled,
            500.. => ErrorKind::Server,
            _ => ErrorKind::Malformed,
        };
        return Err(
            MarketError::new(TT, kind, "the answer is not a JSON envelope").with_status(status),
        );
    }
    let ok = |code: i64| code == 0 && (200..300).contains(&status);
    let (code, message) = match serde_json::from_slice::<Envelope<T>>(body) {
        Ok(env) if ok(env.code.unwrap_or(-1)) => return Ok(env.data),
        Ok(env) => (env.code.unwrap_or(-1), env.message),
        Err(typed) => {
            let env: Envelope<serde::de::IgnoredAny> =
                serde_json::from_slice(body).map_err(|e| {
                    MarketError::malformed(TT, crate::events::serde_message(&e)).with_status(status)
                })?;
            let code = env.code.unwrap_or(-1);
            if ok(code) {
                return Err(
                    MarketError::malformed(TT, crate::events::serde_message(&typed))
                        .with_status(status),
                );
            }
            (code, env.message)
        }
    };
    let kind = if code == 0 {
        match status {
            429 => ErrorKind::Throttled,
            404 => ErrorKind::NotFound,
            500.. => ErrorKind::Server,
            _ => ErrorKind::Invalid,
        }
    } else {
        code_kind(code, status)
    };
    Err(MarketError::new(TT, kind, &message)
        .with_code(code.to_string())
        .with_status(status))
}

/// A success's `data` a call cannot do without.
pub(crate) fn required<T>(data: Option<T>) -> Result<T, MarketError> {
    data.ok_or_else(|| MarketError::malformed(TT, "the answer has no data"))
}

/// `data` of the token get/refresh answer.
#[derive(Deserialize)]
pub(crate) struct TokenData {
    #[serde(default, deserialize_with = "de::string")]
    pub access_token: String,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub access_token_expire_in: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub refresh_token: Option<String>,
}

/// `access_token_expire_in` is a Unix timestamp in seconds; a small value is read as a
/// duration instead.
pub(crate) fn expiry_ms(expire_in: Option<i64>, now_ms: i64) -> i64 {
    match expire_in {
        Some(v) if v > 1_000_000_000 => v.saturating_mul(1000),
        Some(v) if v > 0 => now_ms + v.saturating_mul(1000),
        _ => now_ms + 3_600_000,
    }
}

#[derive(Deserialize)]
pub(crate) struct OrderList {
    #[serde(default, deserialize_with = "de::vec")]
    pub orders: Vec<TtOrder>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct TtOrder {
    #[serde(deserialize_with = "de::string")]
    pub id: String,
    #[serde(default, deserialize_with = "de::string")]
    pub status: String,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub create_time: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub update_time: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub buyer_email: Option<String>,
    #[serde(default)]
    pub recipient_address: Option<TtAddress>,
    #[serde(default, deserialize_with = "de::vec")]
    pub line_items: Vec<TtLineItem>,
}

#[derive(Deserialize)]
pub(crate) struct TtAddress {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub first_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub phone_number: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub address_line1: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub address_line2: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub postal_code: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub region_code: Option<String>,
    #[serde(default, deserialize_with = "de::vec")]
    pub district_info: Vec<TtDistrict>,
}

#[derive(Deserialize)]
pub(crate) struct TtDistrict {
    #[serde(default, deserialize_with = "de::string")]
    pub address_level: String,
    #[serde(default, deserialize_with = "de::string")]
    pub address_name: String,
}

#[derive(Deserialize)]
pub(crate) struct TtLineItem {
    #[serde(default, deserialize_with = "de::string")]
    pub id: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub sku_id: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub seller_sku: Option<String>,
}

/// TikTok order status → normalised status. Unknown values count as placed (stock held).
pub fn map_status(status: &str) -> OrderStatus {
    match status {
        "UNPAID" | "ON_HOLD" => OrderStatus::Pending,
        "AWAITING_SHIPMENT" | "AWAITING_COLLECTION" => OrderStatus::Placed,
        "PARTIALLY_SHIPPING" => OrderStatus::PartiallyShipped,
        "IN_TRANSIT" => OrderStatus::Shipped,
        "DELIVERED" | "COMPLETED" => OrderStatus::Delivered,
        "CANCELLED" => OrderStatus::Cancelled,
        _ => OrderStatus::Placed,
    }
}

fn pii(value: Option<String>) -> Option<Pii<String>> {
    value.filter(|v| !v.is_empty()).map(Pii::new)
}

impl TtOrder {
    pub(crate) fn into_order(self) -> Order {
        let created = self.create_time.unwrap_or(0).saturating_mul(1000);
        let updated = self.update_time.map_or(created, |t| t.saturating_mul(1000));
        let lines = self
            .line_items
            .into_iter()
            .map(|li| OrderLine {
                line_id: li.id,
                sku: li
                    .seller_sku
                    .clone()
                    .filter(|s| !s.is_empty())
                    .or_else(|| li.sku_id.clone())
                    .unwrap_or_default(),
                quantity: 1,
                listing_id: li.sku_id,
            })
            .collect();
        let mut buyer = Buyer {
            email: pii(self.buyer_email),
            ..Buyer::default()
        };
        if let Some(a) = self.recipient_address {
            let name = a.name.filter(|n| !n.is_empty()).or_else(|| {
                let joined = [a.first_name, a.last_name]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                (!joined.is_empty()).then_some(joined)
            });
            let level = |l: &str| {
                a.district_info
                    .iter()
                    .find(|d| d.address_level.eq_ignore_ascii_case(l))
                    .map(|d| d.address_name.clone())
            };
            let region = level("L1");
            let city = level("L3").or_else(|| level("L2"));
            buyer.name = pii(name.clone());
            buyer.phone = pii(a.phone_number);
            buyer.address = Some(Address {
                name: pii(name),
                line1: pii(a.address_line1),
                line2: pii(a.address_line2),
                city: pii(city),
                region: pii(region),
                postal_code: pii(a.postal_code),
                country_code: a.region_code.unwrap_or_default(),
            });
        }
        Order {
            marketplace: TT,
            external_id: self.id,
            status: map_status(&self.status),
            marketplace_status: self.status,
            created_at_ms: created,
            updated_at_ms: updated,
            lines,
            buyer,
        }
    }
}

/// Parse one TikTok order object (as in `data.orders[]`) into an [`Order`].
pub fn parse_order(json: &[u8]) -> Result<Order, MarketError> {
    let raw: TtOrder = serde_json::from_slice(json)
        .map_err(|e| MarketError::malformed(TT, crate::events::serde_message(&e)))?;
    Ok(raw.into_order())
}

#[derive(Deserialize, Default)]
pub(crate) struct InventoryUpdateData {
    #[serde(default, deserialize_with = "de::vec")]
    pub errors: Vec<InventoryError>,
}

#[derive(Deserialize)]
pub(crate) struct InventoryError {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub code: Option<String>,
    #[serde(default, deserialize_with = "de::string")]
    pub message: String,
    #[serde(default)]
    pub detail: Option<InventoryErrorDetail>,
}

#[derive(Deserialize)]
pub(crate) struct InventoryErrorDetail {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub sku_id: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct InventorySearchData {
    #[serde(default, deserialize_with = "de::vec")]
    pub inventory: Vec<InventoryProduct>,
}

#[derive(Deserialize)]
pub(crate) struct InventoryProduct {
    #[serde(default, deserialize_with = "de::vec")]
    pub skus: Vec<InventorySku>,
}

#[derive(Deserialize)]
pub(crate) struct InventorySku {
    #[serde(default, deserialize_with = "de::string")]
    pub id: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub seller_sku: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub total_available_quantity: Option<i64>,
    #[serde(default, deserialize_with = "de::vec")]
    pub warehouse_inventory: Vec<WarehouseInventory>,
}

#[derive(Deserialize)]
pub(crate) struct WarehouseInventory {
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub available_quantity: Option<i64>,
}

impl InventorySku {
    pub(crate) fn available(&self) -> u32 {
        de::clamp_u32(self.total_available_quantity.unwrap_or_else(|| {
            self.warehouse_inventory
                .iter()
                .filter_map(|w| w.available_quantity)
                .sum()
        }))
    }
}

/// A TikTok Shop webhook body, kept whole: unknown fields land in `extra`, so it
/// serialises back to the same JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TikTokWebhook {
    #[serde(rename = "type")]
    pub kind: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The name of a numeric webhook type, when known.
pub fn webhook_type_name(kind: i64) -> Option<&'static str> {
    Some(match kind {
        1 => "ORDER_STATUS_CHANGE",
        2 => "REVERSE_STATUS_UPDATE",
        3 => "RECIPIENT_ADDRESS_UPDATE",
        4 => "PACKAGE_UPDATE",
        5 => "PRODUCT_STATUS_CHANGE",
        6 => "SELLER_DEAUTHORIZATION",
        7 => "UPCOMING_AUTHORIZATION_EXPIRATION",
        12 => "RETURN_STATUS_CHANGE",
        _ => return None,
    })
}

fn data_str(data: &Value, key: &str) -> Option<String> {
    match data.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn data_i64(data: &Value, key: &str) -> Option<i64> {
    match data.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Parse a TikTok webhook body (already verified) into an event.
pub fn parse_webhook(body: &[u8]) -> Result<InboundEvent, EventError> {
    check_body_size(body)?;
    let hook: TikTokWebhook = parse_json(body)?;
    let name = webhook_type_name(hook.kind)
        .ok_or_else(|| EventError::UnknownEvent(hook.kind.to_string()))?;
    let account = hook.shop_id.clone().unwrap_or_default();
    match hook.kind {
        6 => {
            if account.is_empty() {
                return Err(EventError::Malformed("shop_id is missing".into()));
            }
            Ok(InboundEvent::Revoked {
                account,
                reason: name.to_owned(),
            })
        }
        7 => Ok(InboundEvent::AuthorizationExpiring {
            account,
            expires_at_ms: data_i64(&hook.data, "expiration_time").map(|s| s.saturating_mul(1000)),
        }),
        1..=4 | 12 => match data_str(&hook.data, "order_id") {
            Some(order_id) => Ok(InboundEvent::OrderChanged {
                external_id: order_id,
                account: hook.shop_id,
                status: data_str(&hook.data, "order_status"),
                event_id: None,
                occurred_at_ms: data_i64(&hook.data, "update_time").map(|s| s.saturating_mul(1000)),
                summary: None,
            }),
            None if hook.kind == 1 => Err(EventError::Malformed("data.order_id is missing".into())),
            None => Ok(InboundEvent::Ignored {
                kind: name.to_owned(),
            }),
        },
        _ => Ok(InboundEvent::Ignored {
            kind: name.to_owned(),
        }),
    }
}

/// The signed `timestamp` of a TikTok webhook body (Unix seconds), if it has one.
pub fn webhook_timestamp(body: &[u8]) -> Option<i64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    match v.get("timestamp")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Verify a webhook's `Authorization` header and its freshness, then parse it. The
/// `timestamp` field is inside the signed body, so it cannot be changed without breaking
/// the signature: a delivery whose timestamp is outside `window` around `now_s` is a
/// replay (or a clock problem) and is refused.
pub fn verify_fresh_webhook(
    app_key: &str,
    app_secret: &str,
    authorization: Option<&str>,
    body: &[u8],
    window: &crate::events::FreshnessWindow,
    now_s: i64,
) -> Result<InboundEvent, EventError> {
    check_body_size(body)?;
    let header =
        authorization.ok_or_else(|| EventError::MissingSignature("authorization".into()))?;
    if !tiktok_webhook_verify(app_key, app_secret, body, header) {
        return Err(EventError::BadSignature);
    }
    window.check(webhook_timestamp(body), now_s)?;
    parse_webhook(body)
}

/// Verify a webhook's `Authorization` header (HMAC over app key + raw body) and parse it.
/// This checks the signature only; the connector also checks freshness
/// ([`verify_fresh_webhook`]).
pub fn verify_webhook(
    app_key: &str,
    app_secret: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<InboundEvent, EventError> {
    check_body_size(body)?;
    let header =
        authorization.ok_or_else(|| EventError::MissingSignature("authorization".into()))?;
    if !tiktok_webhook_verify(app_key, app_secret, body, header) {
        return Err(EventError::BadSignature);
    }
    parse_webhook(body)
}

/// `data` of `POST /return_refund/202309/returns/search`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ReturnList {
    #[serde(default)]
    pub return_orders: Vec<TtReturn>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// One return (Return & Refund API 202309).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct TtReturn {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub order_id: Option<String>,
    #[serde(default)]
    pub return_type: Option<String>,
    #[serde(default)]
    pub return_status: Option<String>,
    #[serde(default)]
    pub update_time: Option<i64>,
    #[serde(default)]
    pub return_line_items: Vec<TtReturnLine>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct TtReturnLine {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub order_line_item_id: Option<String>,
}

/// Whether a return brought goods back to the seller: a return-and-refund whose package
/// the seller accepted (`RETURN_OR_REFUND_REQUEST_SUCCESS`) or that is complete. A
/// returnless refund (`REFUND`) or a replacement restocks nothing.
pub fn return_restocks(return_type: &str, return_status: &str) -> bool {
    return_type == "RETURN_AND_REFUND"
        && matches!(
            return_status,
            "RETURN_OR_REFUND_REQUEST_SUCCESS" | "RETURN_OR_REFUND_REQUEST_COMPLETE"
        )
}

impl TtReturn {
    pub(crate) fn restocks(&self) -> bool {
        return_restocks(
            self.return_type.as_deref().unwrap_or(""),
            self.return_status.as_deref().unwrap_or(""),
        )
    }
}

/// An order as a returned order: status `Returned`, only the returned line items (the
/// others stay shipped), updated at the return's time.
pub(crate) fn returned_order(mut order: Order, returns: &[&TtReturn]) -> Order {
    let lines: Vec<&str> = returns
        .iter()
        .flat_map(|r| r.return_line_items.iter())
        .filter_map(|l| l.order_line_item_id.as_deref())
        .collect();
    // A return that names no line items returns the whole order.
    if !lines.is_empty() {
        order.lines.retain(|l| lines.contains(&l.line_id.as_str()));
    }
    let at = returns
        .iter()
        .filter_map(|r| r.update_time)
        .max()
        .map_or(order.updated_at_ms, |t| t.saturating_mul(1000));
    order.status = OrderStatus::Returned;
    order.marketplace_status = "RETURN_OR_REFUND_REQUEST_COMPLETE".into();
    order.updated_at_ms = order.updated_at_ms.max(at);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_decoded_in_one_pass_and_errors_keep_their_code() {
        let ok = br#"{"code":0,"message":"Success","data":{"errors":[]}}"#;
        let d: Option<InventoryUpdateData> = check_response(200, ok).unwrap();
        assert!(d.unwrap().errors.is_empty());
        // No data, or null data: None (the caller decides whether it needs it).
        for body in [
            &br#"{"code":0,"message":"Success"}"#[..],
            br#"{"code":0,"data":null}"#,
        ] {
            assert!(
                check_response::<InventoryUpdateData>(200, body)
                    .unwrap()
                    .is_none()
            );
        }
        let e = required::<OrderList>(None).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Malformed);
        // A success whose data does not fit is malformed.
        let wrong = br#"{"code":0,"message":"Success","data":{"errors":"nope"}}"#;
        let e = check_response::<InventoryUpdateData>(200, wrong)
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Malformed, "{e}");
        // An error envelope is its code, whatever its data holds.
        let throttled = br#"{"code":36009004,"message":"Too many requests","data":{"errors":"x"}}"#;
        let e = check_response::<InventoryUpdateData>(429, throttled)
            .err()
            .unwrap();
        assert_eq!(
            (e.kind, e.code.as_deref(), e.status),
            (ErrorKind::Throttled, Some("36009004"), Some(429))
        );
        let e = check_response::<InventoryUpdateData>(
            200,
            br#"{"code":105002,"message":"Access token is expired"}"#,
        )
        .err()
        .unwrap();
        assert_eq!(
            (e.kind, e.code.as_deref()),
            (ErrorKind::Auth, Some("105002"))
        );
        // Not an envelope at all.
        let e = check_response::<InventoryUpdateData>(502, b"<html>")
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Server);
        let e = check_response::<InventoryUpdateData>(200, br#"{"code":0,"data":"#)
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Malformed);
    }
}
