//! Listing discovery on Amazon: Listings Items 2021-08-01 `searchListingsItems`
//! (`GET /listings/2021-08-01/items/{sellerId}`), every page (`pageSize` up to 20,
//! `pageToken`), with the summaries (ASIN, product type) and the fulfillment
//! availability (the seller-fulfilled quantity). Rate 5 requests/s, burst 5, per
//! selling partner.
//!
//! Chosen over the `GET_MERCHANT_LISTINGS_ALL_DATA` report: it answers at once, with a
//! documented response model and usage plan, and gives the product type a listing
//! patch needs, where the report is asynchronous (minutes), a flat file whose columns
//! vary by marketplace, and holds no product type.

use http::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{AMZ, AmazonConnector, wire};
use crate::de;
use crate::util::percent_encode;
use crate::{DiscoveredListing, ListingRef, MarketError};

/// Items per page: searchListingsItems' maximum.
const PAGE_SIZE: &str = "20";

/// A searchListingsItems answer (`ItemSearchResults`).
#[derive(Deserialize, Default)]
pub(crate) struct ItemSearchResults {
    #[serde(default, deserialize_with = "de::vec")]
    pub items: Vec<Value>,
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Pagination {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub next_token: Option<String>,
}

/// One item as a discovered listing: its SKU, the ASIN and product type of its summary
/// for `marketplace_id` (else the first), and its seller-fulfilled quantity. An item
/// without an ASIN (not yet matched to a catalog item) is left out.
pub(crate) fn item_listing(item: &Value, marketplace_id: &str) -> Option<DiscoveredListing> {
    let sku = item.get("sku")?.as_str()?.trim();
    if sku.is_empty() {
        return None;
    }
    let summaries = item.get("summaries")?.as_array()?;
    let summary = summaries
        .iter()
        .find(|s| s.get("marketplaceId").and_then(Value::as_str) == Some(marketplace_id))
        .or_else(|| summaries.first())?;
    let text = |k: &str| {
        summary
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let asin = text("asin")?;
    Some(DiscoveredListing {
        listing: ListingRef {
            sku: sku.to_owned(),
            product_id: Some(asin),
            product_type: text("productType"),
            ..ListingRef::default()
        },
        quantity: wire::listing_quantity(item),
    })
}

impl AmazonConnector {
    /// Every page of searchListingsItems for the first configured marketplace.
    pub(crate) async fn discover(&self) -> Result<Vec<DiscoveredListing>, MarketError> {
        let marketplace_id = self
            .config
            .marketplace_ids
            .first()
            .cloned()
            .unwrap_or_default();
        let path = format!(
            "/listings/2021-08-01/items/{}",
            percent_encode(&self.config.seller_id)
        );
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut page: Option<String> = None;
        for _ in 0..crate::MAX_PAGES {
            let mut query: Vec<(&str, &str)> = vec![
                ("marketplaceIds", &marketplace_id),
                ("includedData", "summaries,fulfillmentAvailability"),
                ("pageSize", PAGE_SIZE),
            ];
            if let Some(p) = &page {
                query.push(("pageToken", p));
            }
            let resp = self
                .call(|t| {
                    self.api_request(
                        Method::GET,
                        &path,
                        &query,
                        "/listings/2021-08-01/items/{sellerId}",
                        "amazon.searchListingsItems",
                        t,
                    )
                })
                .await?;
            let results: ItemSearchResults = wire::parse_ok(resp.status, &resp.body)?;
            let listings: Vec<DiscoveredListing> = results
                .items
                .iter()
                .filter_map(|i| item_listing(i, &marketplace_id))
                .collect();
            crate::dedup_discovered(AMZ, &mut found, &mut seen, listings)?;
            let next = results
                .pagination
                .and_then(|p| p.next_token)
                .filter(|t| !t.is_empty());
            match next {
                Some(n) if page.as_deref() != Some(n.as_str()) => page = Some(n),
                Some(_) => {
                    return Err(MarketError::malformed(
                        AMZ,
                        "the marketplace returned the same next-page marker twice",
                    ));
                }
                None => return Ok(found),
            }
        }
        Err(MarketError::malformed(AMZ, "too many pages of listings"))
    }
}
