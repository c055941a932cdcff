//! Listing discovery on eBay: the Inventory API's getInventoryItems (`GET
//! /sell/inventory/v1/inventory_item?limit=&offset=`), every page, then getOffers (`GET
//! /sell/inventory/v1/offer?sku=`) per SKU for the offer ids a quantity update names.
//! An inventory item with no offer is not listed anywhere and is left out.

use http::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{EBAY, EbayConnector, wire};
use crate::de;
use crate::util::query_param;
use crate::{DiscoveredListing, ListingRef, MarketError};

/// Inventory items per page: getInventoryItems' maximum.
const PAGE_LIMIT: u64 = 200;

/// A getInventoryItems answer (`InventoryItems`).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InventoryItems {
    #[serde(default, deserialize_with = "de::vec")]
    pub inventory_items: Vec<Value>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub next: Option<String>,
}

/// `(sku, quantity)` of each item of a page that names a SKU.
pub(crate) fn page_items(page: &InventoryItems) -> Vec<(String, Option<u32>)> {
    page.inventory_items
        .iter()
        .filter_map(|item| {
            let sku = item.get("sku")?.as_str()?.trim();
            (!sku.is_empty()).then(|| (sku.to_owned(), wire::inventory_quantity(item)))
        })
        .collect()
}

impl EbayConnector {
    /// Every page of inventory items, then each SKU's offers.
    pub(crate) async fn discover(&self) -> Result<Vec<DiscoveredListing>, MarketError> {
        let mut items: Vec<(String, Option<u32>)> = Vec::new();
        let mut offset: u64 = 0;
        let limit = PAGE_LIMIT.to_string();
        for _ in 0..crate::MAX_PAGES {
            let off = offset.to_string();
            let resp = self
                .call(|t| {
                    self.api_request(
                        Method::GET,
                        "/sell/inventory/v1/inventory_item",
                        &[("limit", &limit), ("offset", &off)],
                        "/sell/inventory/v1/inventory_item",
                        "ebay.inventory.items",
                        t,
                    )
                })
                .await?;
            let page: InventoryItems = wire::parse_ok(resp.status, &resp.body)?;
            let got = page_items(&page);
            let count = page.inventory_items.len() as u64;
            items.extend(got);
            if items.len() > crate::MAX_DISCOVERED {
                return Err(MarketError::malformed(
                    EBAY,
                    "more listings than one discovery reads",
                ));
            }
            // The `next` link names the following page; its offset is followed as given
            // (getInventoryItems documents `offset` as a page number, 0 first).
            let next = match page.next.filter(|n| !n.is_empty()) {
                Some(href) if count > 0 => Some(
                    query_param(&href, "offset")
                        .and_then(|o| o.parse::<u64>().ok())
                        .unwrap_or(offset + 1),
                ),
                _ => None,
            };
            match next {
                Some(n) if n != offset => offset = n,
                Some(_) => {
                    return Err(MarketError::malformed(
                        EBAY,
                        "the marketplace returned the same next page twice",
                    ));
                }
                None => break,
            }
        }
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (sku, quantity) in items {
            if seen.contains(&sku) {
                continue;
            }
            let offers = self.offers_for(&sku).await?;
            if offers.is_empty() {
                continue;
            }
            crate::dedup_discovered(
                EBAY,
                &mut found,
                &mut seen,
                [DiscoveredListing {
                    listing: ListingRef {
                        sku,
                        offer_ids: offers,
                        ..ListingRef::default()
                    },
                    quantity,
                }],
            )?;
        }
        Ok(found)
    }
}
