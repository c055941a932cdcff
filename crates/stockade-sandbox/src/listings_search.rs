//! The listing read-out calls a seller's catalog is discovered with: TikTok Shop Search
//! Products (202309), Amazon Listings Items `searchListingsItems` (2021-08-01) and eBay
//! Inventory `getInventoryItems`, each paginated as documented and rate-limited like the
//! simulator's other calls.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use crate::resp::{amz_invalid, amz_ok, amz_unauthorized, ebay_bad, tts_bad, tts_ok};
use crate::sim::Sim;
use crate::state::{Listing, Market};
use crate::util::{iso_s, parse_query, query_get};

/// The statuses Search Products filters on (`status` in the body).
const TT_STATUSES: [&str; 9] = [
    "ALL",
    "DRAFT",
    "PENDING",
    "FAILED",
    "ACTIVATE",
    "SELLER_DEACTIVATED",
    "PLATFORM_DEACTIVATED",
    "FREEZE",
    "DELETED",
];

fn seller_listings(m: &Market, seller: usize) -> Vec<&Listing> {
    m.listings.iter().filter(|l| l.seller == seller).collect()
}

/// An opaque page marker for position `pos` of a seller's list.
fn token(prefix: &str, seller_id: &str, pos: usize) -> String {
    hex::encode(format!("{prefix}:{seller_id}:{pos}"))
}

fn parse_token(prefix: &str, seller_id: &str, t: &str) -> Option<usize> {
    let raw = String::from_utf8(hex::decode(t).ok()?).ok()?;
    let rest = raw.strip_prefix(&format!("{prefix}:{seller_id}:"))?;
    rest.parse().ok()
}

/// `POST /product/202309/products/search?page_size=&page_token=`: the shop's products
/// (SKUs grouped under their product), `page_size` 1–100 products a page.
pub(crate) async fn tiktok_search_products(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = sim.lock();
    let (seller, q) = or_return!(crate::tiktok::check(
        &sim, &m, &method, &uri, &headers, &body, true, "product"
    ));
    let Some(size) = query_get(&q, "page_size")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|v| (1..=100).contains(v))
    else {
        return tts_bad("page_size is required and must be from 1 to 100");
    };
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return tts_bad("the request body is not a JSON object"),
        }
    };
    let status = req.get("status").and_then(Value::as_str).unwrap_or("ALL");
    if !TT_STATUSES.contains(&status) {
        return tts_bad("status is invalid");
    }
    let shop = m
        .sellers
        .get(seller)
        .map(|s| s.id.clone())
        .unwrap_or_default();
    let start = match query_get(&q, "page_token").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => match parse_token("tt", &shop, t) {
            Some(p) => p,
            None => return tts_bad("page_token is invalid"),
        },
    };
    // Every simulated product is live (ACTIVATE).
    let mut products: Vec<(String, Vec<&Listing>)> = Vec::new();
    if matches!(status, "ALL" | "ACTIVATE") {
        for l in seller_listings(&m, seller) {
            match products.iter_mut().find(|(p, _)| *p == l.product_id) {
                Some((_, ls)) => ls.push(l),
                None => products.push((l.product_id.clone(), vec![l])),
            }
        }
    }
    let total = products.len();
    let page: Vec<Value> = products
        .iter()
        .skip(start)
        .take(size)
        .map(|(id, ls)| {
            let skus: Vec<Value> = ls
                .iter()
                .map(|l| {
                    json!({
                        "id": l.sku_id, "seller_sku": l.sku,
                        "price": {"currency": "USD", "tax_exclusive_price": format!("{}.{:02}", l.price_cents / 100, l.price_cents % 100)},
                        "inventory": [{"warehouse_id": l.warehouse_id, "quantity": l.quantity}],
                    })
                })
                .collect();
            let updated = ls.iter().map(|l| l.updated_ms).max().unwrap_or(0) / 1000;
            json!({
                "id": id, "title": ls.first().map(|l| l.title.as_str()).unwrap_or(""),
                "status": "ACTIVATE", "sales_regions": ["US"], "skus": skus,
                "create_time": updated, "update_time": updated, "is_not_for_sale": false,
            })
        })
        .collect();
    let next = if start + size < total {
        token("tt", &shop, start + size)
    } else {
        String::new()
    };
    tts_ok(json!({ "products": page, "next_page_token": next, "total_count": total }))
}

/// `GET /listings/2021-08-01/items/{sellerId}` (searchListingsItems): the seller's
/// listings items, `pageSize` 1–20 (default 10), `pageToken`, with the requested
/// `includedData`.
pub(crate) async fn amazon_search_listings(
    State(sim): State<Arc<Sim>>,
    Path(seller_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let m = sim.lock();
    let seller = or_return!(crate::amazon::auth(
        &sim,
        &m,
        &headers,
        "searchListingsItems"
    ));
    let Some(s) = m.sellers.get(seller) else {
        return amz_unauthorized("");
    };
    if s.id != seller_id {
        return amz_unauthorized(
            "The access token you provided does not grant access to this seller.",
        );
    }
    let q = parse_query(uri.query().unwrap_or(""));
    let ids: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "marketplaceIds")
        .flat_map(|(_, v)| v.split(','))
        .filter(|s| !s.is_empty())
        .collect();
    if ids.is_empty() {
        return amz_invalid("Missing required parameter: marketplaceIds");
    }
    if ids.len() != 1 || ids.first() != Some(&s.marketplace_id.as_str()) {
        return amz_invalid("marketplaceIds must name one marketplace the seller sells in");
    }
    let size = match query_get(&q, "pageSize") {
        None => 10,
        Some(v) => match v.parse::<usize>().ok().filter(|v| (1..=20).contains(v)) {
            Some(v) => v,
            None => return amz_invalid("pageSize must be from 1 to 20"),
        },
    };
    let mut included: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "includedData")
        .flat_map(|(_, v)| v.split(','))
        .filter(|s| !s.is_empty())
        .collect();
    if included.is_empty() {
        included.push("summaries");
    }
    for part in &included {
        if !matches!(
            *part,
            "summaries"
                | "attributes"
                | "issues"
                | "offers"
                | "fulfillmentAvailability"
                | "procurement"
                | "relationships"
                | "productTypes"
        ) {
            return amz_invalid(&format!("Invalid includedData value: {part}"));
        }
    }
    let start = match query_get(&q, "pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => match parse_token("amz", &s.id, t) {
            Some(p) => p,
            None => return amz_invalid("Invalid pageToken"),
        },
    };
    let all = seller_listings(&m, seller);
    let items: Vec<Value> = all
        .iter()
        .skip(start)
        .take(size)
        .map(|l| {
            let mut item = serde_json::Map::new();
            item.insert("sku".into(), json!(l.sku));
            for part in &included {
                match *part {
                    "summaries" => {
                        item.insert("summaries".into(), json!([{
                            "marketplaceId": s.marketplace_id, "asin": l.asin,
                            "productType": l.product_type, "conditionType": "new_new",
                            "status": ["BUYABLE", "DISCOVERABLE"], "itemName": l.title,
                            "createdDate": iso_s(l.updated_ms), "lastUpdatedDate": iso_s(l.updated_ms),
                        }]));
                    }
                    "fulfillmentAvailability" => {
                        item.insert(
                            "fulfillmentAvailability".into(),
                            json!([{"fulfillmentChannelCode": "DEFAULT", "quantity": l.quantity}]),
                        );
                    }
                    "attributes" => {
                        item.insert("attributes".into(), json!({
                            "fulfillment_availability": [{"fulfillment_channel_code": "DEFAULT", "quantity": l.quantity}],
                        }));
                    }
                    "issues" => {
                        item.insert("issues".into(), json!([]));
                    }
                    _ => {}
                }
            }
            Value::Object(item)
        })
        .collect();
    let mut pagination = serde_json::Map::new();
    if start + size < all.len() {
        pagination.insert("nextToken".into(), json!(token("amz", &s.id, start + size)));
    }
    if start > 0 {
        pagination.insert(
            "previousToken".into(),
            json!(token("amz", &s.id, start.saturating_sub(size))),
        );
    }
    let mut out = json!({ "numberOfResults": all.len(), "items": items });
    if !pagination.is_empty() {
        out["pagination"] = Value::Object(pagination);
    }
    amz_ok(StatusCode::OK, &out)
}

/// `GET /sell/inventory/v1/inventory_item?limit=&offset=` (getInventoryItems): `limit`
/// 1–200 (default 25); `offset` is the page number, 0 first, as eBay documents it.
pub(crate) async fn ebay_inventory_items(
    State(sim): State<Arc<Sim>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let m = sim.lock();
    let seller = or_return!(crate::ebay::seller_of(
        &sim,
        &m,
        &headers,
        crate::ebay::INVENTORY_READ
    ));
    let q = parse_query(uri.query().unwrap_or(""));
    let limit = match query_get(&q, "limit") {
        None => 25,
        Some(v) => match v.parse::<usize>().ok().filter(|v| (1..=200).contains(v)) {
            Some(v) => v,
            None => return ebay_bad(25709, "API_INVENTORY", "Invalid value for limit."),
        },
    };
    let page = match query_get(&q, "offset") {
        None => 0,
        Some(v) => match v.parse::<usize>() {
            Ok(v) => v,
            Err(_) => return ebay_bad(25709, "API_INVENTORY", "Invalid value for offset."),
        },
    };
    let all = seller_listings(&m, seller);
    let items: Vec<Value> = all
        .iter()
        .skip(page.saturating_mul(limit))
        .take(limit)
        .map(|l| {
            json!({
                "sku": l.sku, "locale": "en_US", "condition": "NEW",
                "product": {"title": l.title, "aspects": {}, "imageUrls": []},
                "availability": {"shipToLocationAvailability": {"quantity": l.quantity}},
            })
        })
        .collect();
    let href = |p: usize| {
        format!(
            "{}/sell/inventory/v1/inventory_item?limit={limit}&offset={p}",
            sim.base_url
        )
    };
    let mut out = json!({
        "href": href(page), "limit": limit, "size": items.len(), "total": all.len(),
        "inventoryItems": items,
    });
    if page.saturating_add(1).saturating_mul(limit) < all.len() {
        out["next"] = json!(href(page + 1));
    }
    if page > 0 {
        out["prev"] = json!(href(page - 1));
    }
    crate::resp::json_response(StatusCode::OK, &out)
}
