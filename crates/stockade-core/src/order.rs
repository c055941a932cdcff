//! The normalised marketplace order.
//!
//! Every connector maps its marketplace's order shape onto [`Order`]. Buyer data (names,
//! emails, phones, street addresses, postal codes) is held only in [`Pii`], so an order
//! can be logged with `{:?}` without leaking it; the country code is not PII.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::pii::Pii;

/// A marketplace Stockade connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Marketplace {
    /// TikTok Shop.
    #[serde(rename = "tiktok")]
    TikTok,
    /// Amazon Selling Partner API.
    Amazon,
    /// eBay Sell APIs.
    Ebay,
}

impl Marketplace {
    /// All marketplaces, in a fixed order.
    pub const ALL: [Marketplace; 3] = [Marketplace::TikTok, Marketplace::Amazon, Marketplace::Ebay];

    /// The stable lowercase name: `tiktok`, `amazon` or `ebay`.
    pub fn as_str(self) -> &'static str {
        match self {
            Marketplace::TikTok => "tiktok",
            Marketplace::Amazon => "amazon",
            Marketplace::Ebay => "ebay",
        }
    }
}

impl fmt::Display for Marketplace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown marketplace name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown marketplace {0:?}: expected tiktok, amazon or ebay")]
pub struct UnknownMarketplace(pub String);

impl FromStr for Marketplace {
    type Err = UnknownMarketplace;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tiktok" => Ok(Marketplace::TikTok),
            "amazon" => Ok(Marketplace::Amazon),
            "ebay" => Ok(Marketplace::Ebay),
            other => Err(UnknownMarketplace(other.to_owned())),
        }
    }
}

/// Where an order is in its life, across marketplaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Not yet paid or on hold: stock is not committed by the marketplace yet.
    Pending,
    /// Paid and waiting to ship.
    Placed,
    /// Some lines shipped.
    PartiallyShipped,
    /// All lines shipped.
    Shipped,
    /// Delivered or completed.
    Delivered,
    /// Cancelled before shipping.
    Cancelled,
    /// Returned or refunded after shipping.
    Returned,
}

impl OrderStatus {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Placed => "placed",
            OrderStatus::PartiallyShipped => "partially_shipped",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Returned => "returned",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One order, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub marketplace: Marketplace,
    /// The marketplace's own order id.
    pub external_id: String,
    pub status: OrderStatus,
    /// The marketplace's status text, kept verbatim.
    pub marketplace_status: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub lines: Vec<OrderLine>,
    pub buyer: Buyer,
}

/// One order line. TikTok Shop line items carry no quantity: each is one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// The marketplace's line (item) id.
    pub line_id: String,
    /// The seller's SKU.
    pub sku: String,
    pub quantity: u32,
    /// The marketplace listing id (TikTok sku_id, Amazon ASIN, eBay legacy item id).
    pub listing_id: Option<String>,
}

/// The buyer and where the order goes. Every field except the country code is PII.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buyer {
    pub name: Option<Pii<String>>,
    pub email: Option<Pii<String>>,
    pub phone: Option<Pii<String>>,
    pub address: Option<Address>,
}

/// A delivery address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub name: Option<Pii<String>>,
    pub line1: Option<Pii<String>>,
    pub line2: Option<Pii<String>>,
    pub city: Option<Pii<String>>,
    pub region: Option<Pii<String>>,
    pub postal_code: Option<Pii<String>>,
    /// ISO 3166-1 alpha-2, as the marketplace gave it; not PII.
    pub country_code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_debug_redacts() {
        for m in Marketplace::ALL {
            assert_eq!(m.as_str().parse::<Marketplace>(), Ok(m));
        }
        assert!("etsy".parse::<Marketplace>().is_err());
        let order = Order {
            marketplace: Marketplace::Ebay,
            external_id: "1".into(),
            status: OrderStatus::Placed,
            marketplace_status: "NOT_STARTED".into(),
            created_at_ms: 0,
            updated_at_ms: 0,
            lines: vec![],
            buyer: Buyer {
                name: Some(Pii::from("Jane Roe")),
                ..Buyer::default()
            },
        };
        assert!(!format!("{order:?}").contains("Jane"));
    }
}
