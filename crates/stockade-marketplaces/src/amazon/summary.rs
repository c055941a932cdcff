//! The order an ORDER_CHANGE notification describes, from its `Summary`: the status, the
//! purchase date and each item's `OrderItemId`, `SellerSKU` and `Quantity`. That is what
//! stock needs, and it comes with the notification, before any getOrder call (0.5 calls
//! a second per seller). It carries no buyer data (the summary's postal code is not
//! kept): the order is fetched for that, and the stored order is filled in when it
//! arrives.

use serde_json::Value;
use stockade_core::order::{Buyer, Marketplace, Order, OrderLine};

use super::wire::map_status;
use crate::util::parse_rfc3339_ms;

/// Orders API v0 status names (the summary's) as Orders v2026 spells them (what
/// getOrder returns), so a fetched order with the same status is no change.
pub fn v2026_status(v0: &str) -> String {
    match v0 {
        "Canceled" => "CANCELLED".to_owned(),
        other => {
            let mut out = String::with_capacity(other.len() + 4);
            for (i, c) in other.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    }
}

/// The order in `notification` (`OrderChangeNotification`), or `None` when the summary
/// is missing or any item lacks its id, SKU or quantity (then only the fetch counts).
pub fn order_from_summary(notification: &Value, order_id: &str) -> Option<Order> {
    let summary = notification.get("Summary")?;
    let status_text = v2026_status(summary.get("OrderStatus")?.as_str()?);
    let items = summary.get("OrderItems")?.as_array()?;
    if items.is_empty() {
        return None;
    }
    let lines = items
        .iter()
        .map(|it| {
            let line_id = it.get("OrderItemId")?.as_str()?;
            let sku = it.get("SellerSKU")?.as_str()?;
            let quantity = u32::try_from(it.get("Quantity")?.as_u64()?).ok()?;
            (!line_id.is_empty() && !sku.is_empty()).then(|| OrderLine {
                line_id: line_id.to_owned(),
                sku: sku.to_owned(),
                quantity,
                listing_id: None,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let time = |v: Option<&Value>| v.and_then(Value::as_str).and_then(parse_rfc3339_ms);
    let created = time(summary.get("PurchaseDate")).unwrap_or(0);
    let changed = time(
        notification
            .get("OrderChangeTrigger")
            .and_then(|t| t.get("TimeOfOrderChange")),
    )
    .unwrap_or(created);
    Some(Order {
        marketplace: Marketplace::Amazon,
        external_id: order_id.to_owned(),
        status: map_status(&status_text),
        marketplace_status: status_text,
        created_at_ms: created,
        updated_at_ms: changed,
        lines,
        buyer: Buyer::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_core::order::OrderStatus;

    #[test]
    fn v0_status_names_become_v2026_names() {
        assert_eq!(v2026_status("Unshipped"), "UNSHIPPED");
        assert_eq!(v2026_status("PartiallyShipped"), "PARTIALLY_SHIPPED");
        assert_eq!(v2026_status("PendingAvailability"), "PENDING_AVAILABILITY");
        assert_eq!(v2026_status("Canceled"), "CANCELLED");
        assert_eq!(map_status(&v2026_status("Shipped")), OrderStatus::Shipped);
        assert_eq!(
            map_status(&v2026_status("Unfulfillable")),
            OrderStatus::Cancelled
        );
    }

    #[test]
    fn an_item_without_its_sku_gives_no_summary() {
        let n = serde_json::json!({"Summary": {"OrderStatus": "Unshipped",
            "OrderItems": [{"OrderItemId": "1", "Quantity": 1}]}});
        assert!(order_from_summary(&n, "A").is_none());
        let n = serde_json::json!({"Summary": {"OrderStatus": "Unshipped", "OrderItems": []}});
        assert!(order_from_summary(&n, "A").is_none());
        let n = serde_json::json!({"Summary": {"OrderStatus": "Unshipped",
            "OrderItems": [{"OrderItemId": "1", "SellerSKU": "S", "Quantity": -1}]}});
        assert!(order_from_summary(&n, "A").is_none());
    }
}
