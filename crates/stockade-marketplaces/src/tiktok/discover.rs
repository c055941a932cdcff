//! Listing discovery on TikTok Shop: Search Products (`POST
//! /product/202309/products/search`), every page, each SKU with its seller SKU, its
//! product and SKU ids (what an inventory update names) and its inventory.

use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::{TT, TikTokConnector};
use crate::de;
use crate::{DiscoveredListing, ListingRef, MarketError};

/// Products per page (Search Products takes 1–100).
const PAGE_SIZE: &str = "100";

/// `data` of a Search Products answer.
#[derive(Deserialize, Default)]
pub(crate) struct ProductList {
    #[serde(default, deserialize_with = "de::vec")]
    pub products: Vec<Product>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Product {
    #[serde(default, deserialize_with = "de::string")]
    pub id: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "de::vec")]
    pub skus: Vec<ProductSku>,
}

#[derive(Deserialize)]
pub(crate) struct ProductSku {
    #[serde(default, deserialize_with = "de::string")]
    pub id: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub seller_sku: Option<String>,
    #[serde(default, deserialize_with = "de::vec")]
    pub inventory: Vec<SkuInventory>,
}

#[derive(Deserialize)]
pub(crate) struct SkuInventory {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub warehouse_id: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub quantity: Option<i64>,
}

/// The listings of one page. A deleted product is gone; a SKU with more than one
/// warehouse keeps them all (an inventory update must name every one).
pub(crate) fn page_listings(list: ProductList) -> Vec<DiscoveredListing> {
    let mut out = Vec::new();
    for p in list.products {
        if p.id.is_empty()
            || p.status
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("DELETED"))
        {
            continue;
        }
        for s in p.skus {
            let Some(sku) = s.seller_sku.filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            if s.id.is_empty() {
                continue;
            }
            let warehouses: Vec<String> = s
                .inventory
                .iter()
                .filter_map(|i| i.warehouse_id.clone())
                .filter(|w| !w.is_empty())
                .collect();
            let quantity = (!s.inventory.is_empty())
                .then(|| de::clamp_u32(s.inventory.iter().filter_map(|i| i.quantity).sum::<i64>()));
            out.push(DiscoveredListing {
                listing: ListingRef {
                    sku: sku.trim().to_owned(),
                    product_id: Some(p.id.clone()),
                    variant_id: Some(s.id),
                    warehouse_ids: if warehouses.len() > 1 {
                        warehouses
                    } else {
                        Vec::new()
                    },
                    ..ListingRef::default()
                },
                quantity,
            });
        }
    }
    out
}

impl TikTokConnector {
    /// Every page of Search Products (all statuses; deleted products left out).
    pub(crate) async fn discover(&self) -> Result<Vec<DiscoveredListing>, MarketError> {
        let body = serde_json::to_vec(&json!({ "status": "ALL" }))
            .map_err(|_| MarketError::malformed(TT, "could not encode the product search"))?;
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut page: Option<String> = None;
        for _ in 0..crate::MAX_PAGES {
            let mut query = vec![("page_size", PAGE_SIZE.to_owned())];
            if let Some(p) = &page {
                query.push(("page_token", p.clone()));
            }
            let data = self
                .call(|t| {
                    self.signed(
                        Method::POST,
                        "/product/202309/products/search",
                        "/product/202309/products/search",
                        "tiktok.products.search",
                        query.clone(),
                        Some(body.clone()),
                        t,
                    )
                    .idempotent(true)
                })
                .await?;
            let list: ProductList = data.unwrap_or_default();
            let next = list.next_page_token.clone().filter(|t| !t.is_empty());
            crate::dedup_discovered(TT, &mut found, &mut seen, page_listings(list))?;
            match next {
                Some(n) if page.as_deref() != Some(n.as_str()) => page = Some(n),
                Some(_) => {
                    return Err(MarketError::malformed(
                        TT,
                        "the marketplace returned the same next-page marker twice",
                    ));
                }
                None => return Ok(found),
            }
        }
        Err(MarketError::malformed(TT, "too many pages of products"))
    }
}
