//! eBay Sell APIs simulator: OAuth, Fulfillment getOrders/getOrder, Inventory
//! bulk_update_price_quantity / inventory_item / offer, Notification public keys.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::resp::{self, ebay_bad, ebay_err, ebay_forbidden, ebay_invalid_token, oauth_err};
use crate::sim::Sim;
use crate::state::{EBAY_USER_SCOPES, Market, Order};
use crate::util::{
    ct_eq, iso_ms, parse_form, parse_iso, parse_query, percent_encode, query_get, utc_day,
};
use crate::{OrderState, deliver};

pub(crate) const APP_SCOPE: &str = "https://api.ebay.com/oauth/api_scope";
const FULFILLMENT: &[&str] = &[
    "https://api.ebay.com/oauth/api_scope/sell.fulfillment",
    "https://api.ebay.com/oauth/api_scope/sell.fulfillment.readonly",
];
pub(crate) const INVENTORY_READ: &[&str] = &[
    "https://api.ebay.com/oauth/api_scope/sell.inventory",
    "https://api.ebay.com/oauth/api_scope/sell.inventory.readonly",
];
const INVENTORY_WRITE: &[&str] = &["https://api.ebay.com/oauth/api_scope/sell.inventory"];
const REFRESH_TTL_S: i64 = 47_304_000;

pub(crate) fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/identity/v1/oauth2/token", post(token))
        .route("/sell/fulfillment/v1/order", get(get_orders))
        .route("/sell/fulfillment/v1/order/{order_id}", get(get_order))
        .route(
            "/sell/inventory/v1/bulk_update_price_quantity",
            post(bulk_update),
        )
        .route(
            "/sell/inventory/v1/inventory_item/{sku}",
            get(inventory_item),
        )
        .route("/sell/inventory/v1/offer", get(offers))
        .route(
            "/sell/inventory/v1/inventory_item",
            get(crate::listings_search::ebay_inventory_items),
        )
        .route(
            "/commerce/notification/v1/public_key/{kid}",
            get(public_key),
        )
        .with_state(sim)
}

fn now_ms() -> i64 {
    stockade_core::time::now_ms()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = String::from_utf8(B64.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

async fn token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut m = sim.lock();
    let authed = basic_credentials(&headers).is_some_and(|(id, secret)| {
        id == m.app.client_id && ct_eq(secret.as_bytes(), m.app.client_secret.as_bytes())
    });
    if !authed {
        return oauth_err(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    if !headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
    {
        return oauth_err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "request is missing a required parameter or malformed",
        );
    }
    let form = parse_form(&body);
    let get = |k: &str| query_get(&form, k).unwrap_or("").to_owned();
    let now = now_ms();
    let ttl = sim.cfg.access_ttl_ms;
    let requested: Vec<String> = get("scope")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    match get("grant_type").as_str() {
        "client_credentials" => {
            if requested.is_empty() || requested.iter().any(|s| s != APP_SCOPE) {
                return oauth_err(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "The requested scope is invalid, unknown, malformed, or exceeds the scope granted to the client",
                );
            }
            let t = m.issue_token(None, requested, now, ttl);
            resp::json_response(
                StatusCode::OK,
                &json!({"access_token": t, "expires_in": ttl / 1000, "token_type": "Application Access Token"}),
            )
        }
        "refresh_token" => {
            let rt = get("refresh_token");
            let Some(&seller) = m.refresh_tokens.get(&rt) else {
                return oauth_err(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the provided authorization refresh token is invalid or was issued to another client",
                );
            };
            let granted = m
                .sellers
                .get(seller)
                .map(|s| s.scopes.clone())
                .unwrap_or_default();
            if requested.iter().any(|s| !granted.contains(s)) {
                return oauth_err(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "The requested scope is invalid, unknown, malformed, or exceeds the scope granted to the client",
                );
            }
            let scopes = if requested.is_empty() {
                granted
            } else {
                requested
            };
            let t = m.issue_token(Some(seller), scopes, now, ttl);
            resp::json_response(
                StatusCode::OK,
                &json!({"access_token": t, "expires_in": ttl / 1000, "token_type": "User Access Token"}),
            )
        }
        "authorization_code" => {
            let code = get("code");
            let Some(c) = m.codes.remove(&code).filter(|c| c.expires_ms > now) else {
                return oauth_err(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the provided authorization grant code is invalid or was issued to another client",
                );
            };
            if get("redirect_uri").is_empty() {
                return oauth_err(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "redirect_uri is required",
                );
            }
            let scopes: Vec<String> = EBAY_USER_SCOPES.iter().map(|s| (*s).to_owned()).collect();
            let rt = m
                .sellers
                .get(c.seller)
                .map(|s| s.refresh_token.clone())
                .unwrap_or_default();
            let t = m.issue_token(Some(c.seller), scopes, now, ttl);
            resp::json_response(
                StatusCode::OK,
                &json!({"access_token": t, "expires_in": ttl / 1000, "refresh_token": rt,
                        "refresh_token_expires_in": REFRESH_TTL_S, "token_type": "User Access Token"}),
            )
        }
        _ => oauth_err(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant type in request is not supported by the authorization server",
        ),
    }
}

/// Who may call: a user token (Some(seller)) with one of `scopes`, or with `app` an
/// application token. Also counts the call against the app's quota and burst bucket.
/// The seller a user token belongs to; 403 when it lacks the scopes.
pub(crate) fn seller_of(
    sim: &Sim,
    m: &Market,
    headers: &HeaderMap,
    scopes: &[&str],
) -> Result<usize, Response> {
    auth(sim, m, headers, scopes, false)?.ok_or_else(ebay_forbidden)
}

pub(crate) fn auth(
    sim: &Sim,
    m: &Market,
    headers: &HeaderMap,
    scopes: &[&str],
    app: bool,
) -> Result<Option<usize>, Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .unwrap_or("");
    let Some(t) = m.tokens.get(token.trim()) else {
        return Err(ebay_invalid_token());
    };
    if t.expires_ms <= now_ms() {
        return Err(ebay_invalid_token());
    }
    if app != t.seller.is_none() || !t.scopes.iter().any(|s| scopes.contains(&s.as_str())) {
        return Err(ebay_forbidden());
    }
    let (rate, burst) = sim.cfg.ebay_burst;
    if let Err(wait) = sim.limiter.take("ebay.app", &m.app.client_id, rate, burst) {
        return Err(resp::throttled(sim.marketplace, wait));
    }
    let now = now_ms();
    if !sim.limiter.take_daily(
        "ebay.daily",
        &m.app.client_id,
        sim.cfg.ebay_daily_quota,
        utc_day(now),
    ) {
        let to_midnight = 86_400_000 - now.rem_euclid(86_400_000);
        return Err(resp::throttled(
            sim.marketplace,
            to_midnight as f64 / 1000.0,
        ));
    }
    Ok(t.seller)
}

fn fulfillment_status(o: &Order) -> &'static str {
    match o.state {
        OrderState::Placed | OrderState::Cancelled => "NOT_STARTED",
        _ => "FULFILLED",
    }
}

fn money(cents: u64) -> Value {
    json!({"value": format!("{}.{:02}", cents / 100, cents % 100), "currency": "USD"})
}

fn order_json(m: &Market, o: &Order, detail: bool) -> Value {
    let now = now_ms();
    let b = &o.buyer;
    let age_days = (now - o.created_ms) / 86_400_000;
    let recent = age_days < 90;
    let mut contact = json!({"city": b.city, "stateOrProvince": b.region, "postalCode": b.postal, "countryCode": b.country});
    if recent && let Some(c) = contact.as_object_mut() {
        c.insert("addressLine1".into(), Value::String(b.line1.clone()));
        if !b.line2.is_empty() {
            c.insert("addressLine2".into(), Value::String(b.line2.clone()));
        }
    }
    let mut ship_to = json!({"contactAddress": contact});
    let mut registration = json!({"contactAddress": contact});
    for v in [&mut ship_to, &mut registration] {
        if let Some(obj) = v.as_object_mut() {
            if recent {
                obj.insert("fullName".into(), Value::String(b.full_name()));
                obj.insert("primaryPhone".into(), json!({"phoneNumber": b.phone}));
            }
            if age_days < 14 {
                obj.insert("email".into(), Value::String(b.email.clone()));
            }
        }
    }
    let status = fulfillment_status(o);
    let mut total = 0u64;
    let items: Vec<Value> = o
        .lines
        .iter()
        .filter_map(|line| {
            let l = m.listings.get(line.listing)?;
            let cost = u64::from(l.price_cents) * u64::from(line.quantity);
            total += cost;
            Some(json!({
                "lineItemId": line.id, "legacyItemId": l.listing_id, "legacyVariationId": null,
                "sku": l.sku, "title": l.title, "quantity": line.quantity,
                "lineItemCost": money(cost), "total": money(cost),
                "lineItemFulfillmentStatus": status, "soldFormat": "FIXED_PRICE",
                "listingMarketplaceId": "EBAY_US", "purchaseMarketplaceId": "EBAY_US",
            }))
        })
        .collect();
    let cancel_state = if o.state == OrderState::Cancelled {
        "CANCELED"
    } else {
        "NONE_REQUESTED"
    };
    let cancel_requests: Vec<Value> = if detail && o.state == OrderState::Cancelled {
        vec![
            json!({"cancelInitiator": "BUYER", "cancelReason": "BUYER_ASKED_CANCEL", "cancelRequestState": "COMPLETED", "cancelRequestedDate": iso_ms(o.updated_ms)}),
        ]
    } else {
        Vec::new()
    };
    json!({
        "orderId": o.id,
        "legacyOrderId": o.legacy_id,
        "creationDate": iso_ms(o.created_ms),
        "lastModifiedDate": iso_ms(o.updated_ms),
        "orderFulfillmentStatus": status,
        "orderPaymentStatus": if o.state == OrderState::Returned { "FULLY_REFUNDED" } else { "PAID" },
        "sellerId": m.sellers.get(o.seller).map(|s| s.id.clone()).unwrap_or_default(),
        "buyer": {"username": o.buyer_username, "buyerRegistrationAddress": registration},
        "pricingSummary": {"priceSubtotal": money(total), "total": money(total)},
        "cancelStatus": {"cancelState": cancel_state, "cancelRequests": cancel_requests},
        "fulfillmentStartInstructions": [{"fulfillmentInstructionsType": "SHIP_TO", "shippingStep": {"shipTo": ship_to, "shippingCarrierCode": "USPS"}}],
        "salesRecordReference": o.seq.to_string(),
        "lineItems": items,
    })
}

#[derive(Debug, Default)]
struct Filter {
    created: Option<(i64, Option<i64>)>,
    modified: Option<(i64, Option<i64>)>,
    statuses: Option<Vec<String>>,
}

fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_range(v: &str) -> Option<(i64, Option<i64>)> {
    let inner = v.strip_prefix('[')?.strip_suffix(']')?;
    let (a, b) = inner.split_once("..")?;
    let from = parse_iso(a)?;
    let to = if b.is_empty() {
        None
    } else {
        Some(parse_iso(b)?)
    };
    Some((from, to))
}

fn parse_filter(s: &str) -> Result<Filter, Response> {
    let mut f = Filter::default();
    for part in split_top(s)
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let Some((name, value)) = part.split_once(':') else {
            return Err(ebay_bad(
                30700,
                "API_FULFILLMENT",
                &format!("Invalid filter: {part}"),
            ));
        };
        let bad_date = || {
            ebay_bad(
                30800,
                "API_FULFILLMENT",
                &format!(
                    "Invalid date range in filter {name}. Use [YYYY-MM-DDThh:mm:ss.sssZ..YYYY-MM-DDThh:mm:ss.sssZ]"
                ),
            )
        };
        match name.trim() {
            "creationdate" => f.created = Some(parse_range(value).ok_or_else(bad_date)?),
            "lastmodifieddate" => f.modified = Some(parse_range(value).ok_or_else(bad_date)?),
            "orderfulfillmentstatus" => {
                let inner = value
                    .strip_prefix('{')
                    .and_then(|v| v.strip_suffix('}'))
                    .ok_or_else(|| {
                        ebay_bad(
                            30700,
                            "API_FULFILLMENT",
                            "Invalid orderfulfillmentstatus filter",
                        )
                    })?;
                let mut set: Vec<String> = inner.split('|').map(|s| s.trim().to_owned()).collect();
                set.sort();
                let ok =
                    set == ["IN_PROGRESS", "NOT_STARTED"] || set == ["FULFILLED", "IN_PROGRESS"];
                if !ok {
                    return Err(ebay_bad(
                        30700,
                        "API_FULFILLMENT",
                        "orderfulfillmentstatus must be {NOT_STARTED|IN_PROGRESS} or {FULFILLED|IN_PROGRESS}",
                    ));
                }
                f.statuses = Some(set);
            }
            other => {
                return Err(ebay_bad(
                    30700,
                    "API_FULFILLMENT",
                    &format!("Invalid filter name: {other}"),
                ));
            }
        }
    }
    Ok(f)
}

async fn get_orders(State(sim): State<Arc<Sim>>, uri: Uri, headers: HeaderMap) -> Response {
    let m = sim.lock();
    let seller = or_return!(seller_of(&sim, &m, &headers, FULFILLMENT));
    let q = parse_query(uri.query().unwrap_or(""));
    let ids_text = query_get(&q, "orderIds").unwrap_or("").to_owned();
    let ids: Vec<&str> = ids_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    // With orderIds eBay ignores every other parameter: no filter, no paging (at most 50
    // orders come back, one page).
    let (limit, offset) = if !ids.is_empty() {
        if ids.len() > 50 {
            return ebay_bad(
                30900,
                "API_FULFILLMENT",
                "Exceeded maximum number of order IDs (the current limit is 50)",
            );
        }
        (50, 0)
    } else {
        let limit = match query_get(&q, "limit") {
            None => 50,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=200).contains(&n) => n,
                _ => {
                    return ebay_bad(31100, "API_FULFILLMENT", &format!("Invalid limit: {s}"));
                }
            },
        };
        let offset = match query_get(&q, "offset") {
            None => 0,
            Some(s) => match s.parse::<usize>() {
                Ok(n) => n,
                _ => {
                    return ebay_bad(31000, "API_FULFILLMENT", &format!("Invalid offset: {s}"));
                }
            },
        };
        (limit, offset)
    };
    let filter_text = query_get(&q, "filter").unwrap_or("").to_owned();
    let mut matching: Vec<&Order> = if !ids.is_empty() {
        ids.iter()
            .filter_map(|id| m.order_index.get(*id))
            .filter_map(|i| m.orders.get(*i))
            .filter(|o| o.seller == seller)
            .collect()
    } else {
        let f = or_return!(parse_filter(&filter_text));
        let now = now_ms();
        let (created, modified) = match (f.created, f.modified) {
            (Some(c), _) => (Some(c), None),
            (None, Some(mo)) => (None, Some(mo)),
            (None, None) => (Some((now - 90 * 86_400_000, None)), None),
        };
        m.orders
            .iter()
            .filter(|o| o.seller == seller)
            .filter(|o| {
                created
                    .is_none_or(|(a, b)| o.created_ms >= a && b.is_none_or(|b| o.created_ms <= b))
            })
            .filter(|o| {
                modified
                    .is_none_or(|(a, b)| o.updated_ms >= a && b.is_none_or(|b| o.updated_ms <= b))
            })
            .filter(|o| {
                f.statuses.as_ref().is_none_or(|set| {
                    let s = fulfillment_status(o);
                    set.iter().any(|x| x == s)
                })
            })
            .collect()
    };
    // eBay returns the newest orders first.
    matching.sort_by_key(|o| std::cmp::Reverse((o.created_ms, o.seq)));
    let total = matching.len();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|o| order_json(&m, o, false))
        .collect();
    let link = |off: usize| {
        let mut s = format!("{}/sell/fulfillment/v1/order?", sim.base_url);
        if !ids_text.is_empty() {
            s.push_str(&format!("orderIds={}&", percent_encode(&ids_text)));
        } else if !filter_text.is_empty() {
            s.push_str(&format!("filter={}&", percent_encode(&filter_text)));
        }
        s.push_str(&format!("limit={limit}&offset={off}"));
        s
    };
    let mut out = json!({"href": link(offset), "total": total, "limit": limit, "offset": offset, "orders": page, "warnings": []});
    if let Some(obj) = out.as_object_mut() {
        if offset + limit < total {
            obj.insert("next".into(), Value::String(link(offset + limit)));
        }
        if offset > 0 {
            obj.insert(
                "prev".into(),
                Value::String(link(offset.saturating_sub(limit))),
            );
        }
    }
    resp::json_response(StatusCode::OK, &out)
}

async fn get_order(
    State(sim): State<Arc<Sim>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let m = sim.lock();
    let seller = or_return!(seller_of(&sim, &m, &headers, FULFILLMENT));
    match m
        .order_index
        .get(&order_id)
        .and_then(|i| m.orders.get(*i))
        .filter(|o| o.seller == seller)
    {
        Some(o) => resp::json_response(StatusCode::OK, &order_json(&m, o, true)),
        None => ebay_err(
            StatusCode::NOT_FOUND,
            32100,
            "API_FULFILLMENT",
            "REQUEST",
            &format!("Invalid order ID: {order_id}"),
            None,
        ),
    }
}

fn sku_error(id: u32, message: &str) -> Value {
    json!({"errorId": id, "domain": "API_INVENTORY", "category": "REQUEST", "message": message})
}

async fn bulk_update(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut m = sim.lock();
    let seller = or_return!(seller_of(&sim, &m, &headers, INVENTORY_WRITE));
    let req = or_return!(bulk_request(&headers, &body));
    let Some(requests) = req.get("requests").and_then(Value::as_array) else {
        return ebay_bad(25709, "API_INVENTORY", "Invalid value for requests.");
    };
    if requests.is_empty() || requests.len() > 25 {
        return ebay_bad(
            25709,
            "API_INVENTORY",
            "Invalid value for requests. Between 1 and 25 requests are allowed per call.",
        );
    }
    let now = now_ms();
    let mut responses = Vec::new();
    let mut all_ok = true;
    for r in requests {
        if let Some((ok, v)) = update_one(&mut m, seller, r, now, sim.cfg.revision_cap) {
            all_ok &= ok;
            responses.push(v);
        }
    }
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    resp::json_response(status, &json!({ "responses": responses }))
}

/// The body of a bulk update: JSON, sent as JSON.
fn bulk_request(headers: &HeaderMap, body: &[u8]) -> Result<Value, Response> {
    if !headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"))
    {
        return Err(ebay_err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            25709,
            "API_INVENTORY",
            "REQUEST",
            "Invalid value for header Content-Type.",
            None,
        ));
    }
    serde_json::from_slice::<Value>(body).map_err(|_| {
        ebay_bad(
            25709,
            "API_INVENTORY",
            "Invalid request body: not valid JSON.",
        )
    })
}

/// A failed request's entry in the answer.
fn sku_failure(sku: &str, status: u16, offer: Option<&str>, err: Value) -> (bool, Value) {
    let mut v = json!({"sku": sku, "statusCode": status, "errors": [err], "warnings": []});
    if let (Some(o), Some(obj)) = (offer, v.as_object_mut()) {
        obj.insert("offerId".into(), Value::String(o.to_owned()));
    }
    (false, v)
}

/// Applies one request of a bulk update to the seller's listing: (succeeded, its entry
/// in the answer), or None when the listing vanished in between (no entry).
fn update_one(
    m: &mut Market,
    seller: usize,
    r: &Value,
    now: i64,
    cap: u32,
) -> Option<(bool, Value)> {
    let sku = r.get("sku").and_then(Value::as_str).unwrap_or("");
    let offers: Vec<&Value> = r
        .get("offers")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let Some(li) = m.listing(seller, sku) else {
        let err = sku_error(25702, &format!("SKU {sku} is not available in the system."));
        return Some(sku_failure(sku, 404, None, err));
    };
    let offer_id = m.listings.get(li)?.offer_id.clone();
    let ship_qty = match r.get("shipToLocationAvailability") {
        None => None,
        Some(s) => match s.get("quantity").map(Value::as_u64) {
            Some(Some(q)) if q <= u64::from(u32::MAX) => Some(q as u32),
            _ => {
                let err = sku_error(
                    25709,
                    "Invalid value for shipToLocationAvailability.quantity.",
                );
                return Some(sku_failure(sku, 400, None, err));
            }
        },
    };
    let offer_qty = match offer_quantity(&offers, &offer_id) {
        Ok(q) => q,
        Err((status, id, err)) => return Some(sku_failure(sku, status, Some(&id), err)),
    };
    if ship_qty.is_none() && offers.is_empty() {
        let err = sku_error(
            25709,
            "Each request needs shipToLocationAvailability or offers.",
        );
        return Some(sku_failure(sku, 400, None, err));
    }
    let listing = m.listings.get_mut(li)?;
    let today = utc_day(now);
    if listing.revision_day != today {
        listing.revision_day = today;
        listing.revisions = 0;
    }
    if listing.revisions >= cap {
        let with_offer = (!offers.is_empty()).then_some(offer_id.as_str());
        let err = sku_error(
            25019,
            "The listing revision limit for today has been reached.",
        );
        return Some(sku_failure(sku, 400, with_offer, err));
    }
    listing.revisions += 1;
    if let Some(q) = offer_qty.or(ship_qty) {
        listing.quantity = q;
        m.qty_history
            .record(li, now, q, crate::qty_history::QtySource::Bulk);
    }
    listing.updated_ms = now;
    Some(if offers.is_empty() {
        (
            true,
            json!({"sku": sku, "statusCode": 200, "errors": [], "warnings": []}),
        )
    } else {
        (
            true,
            json!({"sku": sku, "offerId": offer_id, "statusCode": 200, "errors": [], "warnings": []}),
        )
    })
}

/// The quantity the offers set (the last one given), or the first bad offer: (status,
/// offer id, error).
fn offer_quantity(offers: &[&Value], offer_id: &str) -> Result<Option<u32>, (u16, String, Value)> {
    let mut offer_qty = None;
    for o in offers {
        let id = o.get("offerId").and_then(Value::as_str).unwrap_or("");
        if id != offer_id {
            let err = sku_error(25713, "This Offer is not available.");
            return Err((400, id.to_owned(), err));
        }
        match o.get("availableQuantity") {
            None => {}
            Some(v) => match v.as_u64() {
                Some(q) if q <= u64::from(u32::MAX) => offer_qty = Some(q as u32),
                _ => {
                    let err = sku_error(25709, "Invalid value for availableQuantity.");
                    return Err((400, id.to_owned(), err));
                }
            },
        }
        if o.get("price").is_some_and(|p| p.get("value").is_none()) {
            let err = sku_error(25709, "Invalid value for price.");
            return Err((400, id.to_owned(), err));
        }
    }
    Ok(offer_qty)
}

async fn inventory_item(
    State(sim): State<Arc<Sim>>,
    Path(sku): Path<String>,
    headers: HeaderMap,
) -> Response {
    let m = sim.lock();
    let seller = or_return!(seller_of(&sim, &m, &headers, INVENTORY_READ));
    let Some(l) = m.listing(seller, &sku).and_then(|i| m.listings.get(i)) else {
        return ebay_err(
            StatusCode::NOT_FOUND,
            25710,
            "API_INVENTORY",
            "REQUEST",
            "We didn't find the resource/entity you are requesting. Please verify the request",
            None,
        );
    };
    resp::json_response(
        StatusCode::OK,
        &json!({
            "sku": l.sku, "locale": "en_US", "condition": "NEW",
            "product": {"title": l.title, "aspects": {}, "imageUrls": []},
            "availability": {"shipToLocationAvailability": {"quantity": l.quantity}},
        }),
    )
}

async fn offers(State(sim): State<Arc<Sim>>, uri: Uri, headers: HeaderMap) -> Response {
    let m = sim.lock();
    let seller = or_return!(seller_of(&sim, &m, &headers, INVENTORY_READ));
    let q = parse_query(uri.query().unwrap_or(""));
    let Some(sku) = query_get(&q, "sku").filter(|s| !s.is_empty()) else {
        return ebay_bad(
            25707,
            "API_INVENTORY",
            "This is an invalid value for a SKU.",
        );
    };
    let Some(l) = m.listing(seller, sku).and_then(|i| m.listings.get(i)) else {
        return ebay_err(
            StatusCode::NOT_FOUND,
            25713,
            "API_INVENTORY",
            "REQUEST",
            "This Offer is not available.",
            None,
        );
    };
    let offer = json!({
        "offerId": l.offer_id, "sku": l.sku, "marketplaceId": "EBAY_US", "format": "FIXED_PRICE",
        "availableQuantity": l.quantity, "categoryId": "169291", "listingDescription": l.title,
        "pricingSummary": {"price": {"value": format!("{}.{:02}", l.price_cents / 100, l.price_cents % 100), "currency": "USD"}},
        "listing": {"listingId": l.listing_id, "listingStatus": "ACTIVE", "soldQuantity": 0},
        "status": "PUBLISHED",
    });
    resp::json_response(
        StatusCode::OK,
        &json!({
            "href": format!("{}/sell/inventory/v1/offer?sku={}&limit=25&offset=0", sim.base_url, percent_encode(sku)),
            "limit": 25, "offset": 0, "size": 1, "total": 1, "offers": [offer],
        }),
    )
}

async fn public_key(
    State(sim): State<Arc<Sim>>,
    Path(kid): Path<String>,
    headers: HeaderMap,
) -> Response {
    let m = sim.lock();
    if let Err(r) = auth(&sim, &m, &headers, &[APP_SCOPE], true) {
        return r;
    }
    match sim.ebay_key.as_ref().filter(|k| k.kid == kid) {
        Some(k) => resp::json_response(
            StatusCode::OK,
            &json!({
                "key": format!("-----BEGIN PUBLIC KEY-----{}-----END PUBLIC KEY-----", B64.encode(&k.spki_der)),
                "algorithm": "ECDSA",
                "digest": "SHA1",
            }),
        ),
        None => ebay_err(
            StatusCode::NOT_FOUND,
            195001,
            "API_NOTIFICATION",
            "REQUEST",
            "The specified key id is invalid.",
            None,
        ),
    }
}

fn notification(m: &mut Market, topic: &str, data: Value, event_ms: i64) -> Vec<u8> {
    let id = format!("{}_{}", m.rng.uuid(), m.rng.uuid());
    deliver::compact(&json!({
        "metadata": {"topic": topic, "schemaVersion": "1.0", "deprecated": false},
        "notification": {
            "notificationId": id,
            "eventDate": iso_ms(event_ms),
            "publishDate": iso_ms(now_ms().max(event_ms)),
            "publishAttemptCount": 1,
            "data": data,
        },
    }))
}

/// ORDER_CONFIRMATION, one per line item (sent when an order is placed).
pub(crate) fn order_events(m: &mut Market, o_idx: usize) -> Vec<(String, Vec<u8>)> {
    let Some(o) = m.orders.get(o_idx).cloned() else {
        return Vec::new();
    };
    if o.state != OrderState::Placed {
        return Vec::new();
    }
    let seller = m.sellers.get(o.seller).cloned();
    o.lines
        .iter()
        .map(|line| {
            let data = json!({
                "orderId": o.id, "lineItemId": line.id,
                "username": seller.as_ref().map(|s| s.id.clone()).unwrap_or_default(),
                "userId": seller.as_ref().map(|s| s.user_id.clone()).unwrap_or_default(),
            });
            (
                "ORDER_CONFIRMATION".to_owned(),
                notification(m, "ORDER_CONFIRMATION", data, o.created_ms),
            )
        })
        .collect()
}

/// AUTHORIZATION_REVOCATION or MARKETPLACE_ACCOUNT_DELETION for a seller.
pub(crate) fn account_event(
    m: &mut Market,
    seller: usize,
    topic: &str,
) -> Option<(String, Vec<u8>)> {
    let s = m.sellers.get(seller)?.clone();
    let mut data = json!({"username": s.id, "userId": s.user_id, "eiasToken": s.eias_token});
    if topic == "AUTHORIZATION_REVOCATION"
        && let Some(obj) = data.as_object_mut()
    {
        obj.insert(
            "revokeReason".into(),
            Value::String("REVOKED_BY_USER".into()),
        );
    }
    Some((topic.to_owned(), notification(m, topic, data, now_ms())))
}
