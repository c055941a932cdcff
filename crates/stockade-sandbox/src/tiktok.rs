//! TikTok Shop Partner API (202309) simulator.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::resp::{
    self, TTS_BAD_SIGN, TTS_EXPIRED_TOKEN, TTS_INVALID_TOKEN, tts_bad, tts_err, tts_ok,
};
use crate::sign::tiktok_sign;
use crate::sim::Sim;
use crate::state::{Market, Order};
use crate::util::{ct_eq, parse_query, query_get};
use crate::{OrderState, deliver};

pub(crate) fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/api/v2/token/get", get(token_get))
        .route("/api/v2/token/refresh", get(token_refresh))
        .route("/authorization/202309/shops", get(shops))
        .route("/order/202309/orders/search", post(search_orders))
        .route("/order/202309/orders", get(get_orders))
        .route("/return_refund/202309/returns/search", post(search_returns))
        .route(
            "/product/202309/products/{product_id}/inventory/update",
            post(update_inventory),
        )
        .route("/product/202309/inventory/search", post(search_inventory))
        .route(
            "/product/202309/products/search",
            post(crate::listings_search::tiktok_search_products),
        )
        .with_state(sim)
}

fn now_ms() -> i64 {
    stockade_core::time::now_ms()
}

fn token_data(sim: &Sim, m: &mut Market, seller: usize, refresh_token: &str) -> Value {
    let now = now_ms();
    let access = m.issue_token(Some(seller), Vec::new(), now, sim.cfg.access_ttl_ms);
    let s = m.sellers.get(seller);
    json!({
        "access_token": access,
        "access_token_expire_in": (now + sim.cfg.access_ttl_ms) / 1000,
        "refresh_token": refresh_token,
        "refresh_token_expire_in": (now + sim.cfg.refresh_ttl_ms) / 1000,
        "open_id": s.map(|s| s.user_id.clone()).unwrap_or_default(),
        "seller_name": s.map(|s| s.name.clone()).unwrap_or_default(),
        "seller_base_region": s.map(|s| s.region.clone()).unwrap_or_default(),
        "user_type": 0,
        "granted_scopes": ["seller.authorization.info", "seller.order.info", "seller.product.basic"],
    })
}

fn check_app(m: &Market, q: &[(String, String)]) -> Result<(), Response> {
    let key = query_get(q, "app_key").unwrap_or("");
    let secret = query_get(q, "app_secret").unwrap_or("");
    if key.is_empty() || secret.is_empty() {
        return Err(tts_bad("app_key and app_secret are required"));
    }
    if key != m.app.client_id || !ct_eq(secret.as_bytes(), m.app.client_secret.as_bytes()) {
        return Err(tts_err(
            StatusCode::UNAUTHORIZED,
            resp::TTS_BAD_PARAMS,
            "Invalid app_key or app_secret",
        ));
    }
    Ok(())
}

async fn token_get(State(sim): State<Arc<Sim>>, uri: Uri) -> Response {
    let q = parse_query(uri.query().unwrap_or(""));
    let mut m = sim.lock();
    if let Err(r) = check_app(&m, &q) {
        return r;
    }
    if query_get(&q, "grant_type") != Some("authorized_code") {
        return tts_bad("grant_type must be authorized_code");
    }
    let code = query_get(&q, "auth_code").unwrap_or("");
    let now = now_ms();
    let Some(c) = m.codes.remove(code) else {
        return tts_bad("Invalid auth_code");
    };
    if c.expires_ms <= now {
        return tts_bad("auth_code expired");
    }
    let rt = m
        .sellers
        .get(c.seller)
        .map(|s| s.refresh_token.clone())
        .unwrap_or_default();
    let data = token_data(&sim, &mut m, c.seller, &rt);
    tts_ok(data)
}

async fn token_refresh(State(sim): State<Arc<Sim>>, uri: Uri) -> Response {
    let q = parse_query(uri.query().unwrap_or(""));
    let mut m = sim.lock();
    if let Err(r) = check_app(&m, &q) {
        return r;
    }
    // The documented value is refresh_token; the official SDK sends authorized_code.
    if !matches!(
        query_get(&q, "grant_type"),
        Some("refresh_token" | "authorized_code")
    ) {
        return tts_bad("grant_type must be refresh_token");
    }
    let rt = query_get(&q, "refresh_token").unwrap_or("").to_owned();
    let Some(&seller) = m.refresh_tokens.get(&rt) else {
        return tts_err(
            StatusCode::UNAUTHORIZED,
            TTS_INVALID_TOKEN,
            "Invalid refresh_token",
        );
    };
    let data = token_data(&sim, &mut m, seller, &rt);
    tts_ok(data)
}

/// The checks every API call goes through; returns the seller and the query pairs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check(
    sim: &Sim,
    m: &Market,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    shop_scoped: bool,
    op: &'static str,
) -> Result<(usize, Vec<(String, String)>), Response> {
    let q = parse_query(uri.query().unwrap_or(""));
    let app_key = query_get(&q, "app_key").unwrap_or("");
    if app_key.is_empty() {
        return Err(tts_bad("app_key is required"));
    }
    if app_key != m.app.client_id {
        return Err(tts_err(
            StatusCode::UNAUTHORIZED,
            resp::TTS_BAD_PARAMS,
            "Invalid app_key",
        ));
    }
    let Some(ts) = query_get(&q, "timestamp").and_then(|t| t.parse::<i64>().ok()) else {
        return Err(tts_bad("timestamp is required (Unix seconds)"));
    };
    if (now_ms() / 1000 - ts).abs() > sim.cfg.skew_s {
        return Err(tts_bad("timestamp is out of the allowed window"));
    }
    let Some(sign) = query_get(&q, "sign") else {
        return Err(tts_bad("sign is required"));
    };
    if *method != Method::GET {
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/json") {
            return Err(tts_bad("Content-Type must be application/json"));
        }
    }
    let signed_body = (*method != Method::GET && !body.is_empty()).then_some(body);
    let expected = tiktok_sign(&m.app.client_secret, uri.path(), &q, signed_body);
    if !ct_eq(expected.as_bytes(), sign.as_bytes()) {
        return Err(tts_err(
            StatusCode::UNAUTHORIZED,
            TTS_BAD_SIGN,
            "Invalid signature",
        ));
    }
    let token = headers
        .get("x-tts-access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(t) = m.tokens.get(token) else {
        return Err(tts_err(
            StatusCode::UNAUTHORIZED,
            TTS_INVALID_TOKEN,
            "Invalid credentials",
        ));
    };
    if t.expires_ms <= now_ms() {
        return Err(tts_err(
            StatusCode::UNAUTHORIZED,
            TTS_EXPIRED_TOKEN,
            "Expired credentials",
        ));
    }
    let Some(seller) = t.seller else {
        return Err(tts_err(
            StatusCode::UNAUTHORIZED,
            TTS_INVALID_TOKEN,
            "Invalid credentials",
        ));
    };
    let s = m
        .sellers
        .get(seller)
        .ok_or_else(|| tts_bad("unknown shop"))?;
    if shop_scoped {
        match query_get(&q, "shop_cipher") {
            None | Some("") => return Err(tts_bad("shop_cipher is required")),
            Some(c) if c != s.cipher => return Err(tts_bad("shop_cipher is invalid")),
            Some(_) => {}
        }
    }
    let (rate, burst) = sim.cfg.tiktok_rate;
    if let Err(wait) = sim.limiter.take(op, &s.id, rate, burst) {
        return Err(resp::throttled(sim.marketplace, wait));
    }
    Ok((seller, q))
}

async fn shops(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let m = sim.lock();
    let (seller, _) = or_return!(check(
        &sim,
        &m,
        &method,
        &uri,
        &headers,
        b"",
        false,
        "authorization",
    ));
    let shops: Vec<Value> = m
        .sellers
        .get(seller)
        .map(|s| {
            vec![json!({
                "id": s.id, "name": s.name, "region": s.region,
                "code": format!("US{}", &s.id[s.id.len().saturating_sub(6)..]),
                "cipher": s.cipher, "seller_type": "LOCAL",
            })]
        })
        .unwrap_or_default();
    tts_ok(json!({ "shops": shops }))
}

pub(crate) fn status_str(state: OrderState) -> &'static str {
    match state {
        OrderState::Placed => "AWAITING_SHIPMENT",
        OrderState::Shipped => "IN_TRANSIT",
        OrderState::Delivered => "DELIVERED",
        OrderState::Cancelled => "CANCELLED",
        OrderState::Returned => "COMPLETED",
    }
}

fn order_json(m: &Market, o: &Order) -> Value {
    let b = &o.buyer;
    let status = status_str(o.state);
    let mut items = Vec::new();
    let mut total = 0u64;
    for line in &o.lines {
        let Some(l) = m.listings.get(line.listing) else {
            continue;
        };
        for unit in &line.unit_ids {
            total += u64::from(l.price_cents);
            items.push(json!({
                "id": unit, "sku_id": l.sku_id, "seller_sku": l.sku, "product_id": l.product_id,
                "product_name": l.title, "sku_name": "Default", "display_status": status,
                "sale_price": cents(l.price_cents), "original_price": cents(l.price_cents),
                "currency": "USD", "is_gift": false,
                "package_id": if o.state == OrderState::Placed { Value::Null } else { Value::String(format!("11{}", &unit[2..])) },
            }));
        }
    }
    let full_address = [
        b.line1.as_str(),
        b.line2.as_str(),
        b.city.as_str(),
        b.region.as_str(),
        b.postal.as_str(),
        b.country.as_str(),
    ]
    .iter()
    .filter(|s| !s.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join(", ");
    let warehouse = o
        .lines
        .first()
        .and_then(|l| m.listings.get(l.listing))
        .map(|l| l.warehouse_id.clone())
        .unwrap_or_default();
    json!({
        "id": o.id,
        "status": status,
        "create_time": o.created_ms / 1000,
        "update_time": o.updated_ms / 1000,
        "paid_time": o.created_ms / 1000,
        "user_id": o.buyer_user_id,
        "buyer_email": format!("v{}@scs.tiktokw.us", &o.buyer_user_id[..12.min(o.buyer_user_id.len())]),
        "buyer_message": "",
        "shipping_type": "SELLER",
        "fulfillment_type": "FULFILLMENT_BY_SELLER",
        "warehouse_id": warehouse,
        "is_cod": false,
        "cancel_reason": if o.state == OrderState::Cancelled { "Buyer changed mind" } else { "" },
        "payment": {"currency": "USD", "sub_total": cents_u64(total), "total_amount": cents_u64(total), "shipping_fee": "0.00", "tax": "0.00"},
        "recipient_address": {
            "name": b.full_name(), "first_name": b.first, "last_name": b.last,
            "phone_number": b.phone, "address_line1": b.line1, "address_line2": b.line2,
            "address_line3": "", "address_line4": "", "postal_code": b.postal,
            "region_code": b.country, "full_address": full_address,
            "district_info": [
                {"address_level_name": "Country", "address_name": b.country, "address_level": "L0"},
                {"address_level_name": "State", "address_name": b.region, "address_level": "L1"},
                {"address_level_name": "City", "address_name": b.city, "address_level": "L3"},
            ],
        },
        "line_items": items,
    })
}

fn cents(c: u32) -> String {
    cents_u64(u64::from(c))
}

fn cents_u64(c: u64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

fn page_token(key_ms: i64, seq: u64) -> String {
    hex::encode(format!("{key_ms}:{seq}"))
}

/// Where a `page_token` continues a search (None: from the start).
fn page_after(q: &[(String, String)]) -> Result<Option<(i64, u64)>, Response> {
    match query_get(q, "page_token") {
        None | Some("") => Ok(None),
        Some(t) => parse_page_token(t)
            .map(Some)
            .ok_or_else(|| tts_bad("page_token is invalid")),
    }
}

fn parse_page_token(t: &str) -> Option<(i64, u64)> {
    let raw = String::from_utf8(hex::decode(t).ok()?).ok()?;
    let (a, b) = raw.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn body_json(body: &[u8]) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(tts_bad("The request body is not a valid JSON object")),
    }
}

/// A search body's time bounds in ms: created ≥, created <, updated ≥, updated <.
fn time_bounds(filter: &Value) -> Result<[Option<i64>; 4], Response> {
    let mut bounds = [None; 4];
    for (i, k) in [
        "create_time_ge",
        "create_time_lt",
        "update_time_ge",
        "update_time_lt",
    ]
    .iter()
    .enumerate()
    {
        bounds[i] = opt_secs(filter, k)?.map(|s| s * 1000);
    }
    Ok(bounds)
}

fn opt_secs(v: &Value, key: &str) -> Result<Option<i64>, Response> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_i64()
            .map(Some)
            .ok_or_else(|| tts_bad(&format!("{key} must be a Unix timestamp in seconds"))),
    }
}

async fn search_orders(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = sim.lock();
    let (seller, q) = or_return!(check(
        &sim, &m, &method, &uri, &headers, &body, true, "order"
    ));
    let page_size = match query_get(&q, "page_size") {
        None => 20,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => return tts_bad("page_size must be between 1 and 100"),
        },
    };
    let by_update = match query_get(&q, "sort_field") {
        None | Some("create_time") => false,
        Some("update_time") => true,
        Some(_) => return tts_bad("sort_field must be create_time or update_time"),
    };
    let asc = match query_get(&q, "sort_order") {
        None | Some("DESC") => false,
        Some("ASC") => true,
        Some(_) => return tts_bad("sort_order must be ASC or DESC"),
    };
    let after = or_return!(page_after(&q));
    let filter = or_return!(body_json(&body));
    let bounds = or_return!(time_bounds(&filter));
    let status = filter.get("order_status").and_then(Value::as_str);
    let key = |o: &Order| {
        if by_update {
            o.updated_ms
        } else {
            o.created_ms
        }
    };
    let mut matching: Vec<&Order> = m
        .orders
        .iter()
        .filter(|o| o.seller == seller)
        .filter(|o| bounds[0].is_none_or(|t| o.created_ms >= t))
        .filter(|o| bounds[1].is_none_or(|t| o.created_ms < t))
        .filter(|o| bounds[2].is_none_or(|t| o.updated_ms >= t))
        .filter(|o| bounds[3].is_none_or(|t| o.updated_ms < t))
        .filter(|o| status.is_none_or(|s| s == status_str(o.state)))
        .collect();
    let total = matching.len();
    matching.sort_by_key(|o| (key(o), o.seq));
    if !asc {
        matching.reverse();
    }
    let start = match after {
        None => 0,
        Some(cursor) => matching
            .iter()
            .position(|o| {
                let k = (key(o), o.seq);
                if asc { k > cursor } else { k < cursor }
            })
            .unwrap_or(matching.len()),
    };
    let page: Vec<&Order> = matching
        .iter()
        .skip(start)
        .take(page_size)
        .copied()
        .collect();
    let more = start + page.len() < matching.len();
    let next = match (more, page.last()) {
        (true, Some(o)) => page_token(key(o), o.seq),
        _ => String::new(),
    };
    let orders: Vec<Value> = page.iter().map(|o| order_json(&m, o)).collect();
    tts_ok(json!({"orders": orders, "next_page_token": next, "total_count": total}))
}

async fn get_orders(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let m = sim.lock();
    let (seller, q) = or_return!(check(&sim, &m, &method, &uri, &headers, b"", true, "order"));
    let ids: Vec<&str> = query_get(&q, "ids")
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .collect();
    if ids.is_empty() || ids.len() > 50 {
        return tts_bad("ids must list 1 to 50 order ids");
    }
    let orders: Vec<Value> = ids
        .iter()
        .filter_map(|id| m.order_index.get(*id))
        .filter_map(|i| m.orders.get(*i))
        .filter(|o| o.seller == seller)
        .map(|o| order_json(&m, o))
        .collect();
    tts_ok(json!({ "orders": orders }))
}

async fn update_inventory(
    State(sim): State<Arc<Sim>>,
    Path(product_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut m = sim.lock();
    let (seller, _) = or_return!(check(
        &sim, &m, &method, &uri, &headers, &body, true, "product"
    ));
    let req = or_return!(body_json(&body));
    let product: Vec<usize> = m
        .listings
        .iter()
        .enumerate()
        .filter(|(_, l)| l.seller == seller && l.product_id == product_id)
        .map(|(i, _)| i)
        .collect();
    if product.is_empty() {
        return tts_bad("product_id is invalid or does not belong to this shop");
    }
    let Some(skus) = req
        .get("skus")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return tts_bad("skus is required");
    };
    let now = now_ms();
    let mut errors = Vec::new();
    let mut updates = Vec::new();
    for sku in skus {
        let id = sku.get("id").and_then(Value::as_str).unwrap_or("");
        let err = |message: &str| json!({"code": resp::TTS_BAD_PARAMS, "message": message, "detail": {"sku_id": id, "extra_errors": []}});
        let Some(&li) = product
            .iter()
            .find(|i| m.listings.get(**i).is_some_and(|l| l.sku_id == id))
        else {
            errors.push(err("The SKU does not belong to this product"));
            continue;
        };
        let Some(inv) = sku
            .get("inventory")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        else {
            errors.push(err("inventory is required"));
            continue;
        };
        let warehouse = m
            .listings
            .get(li)
            .map(|l| l.warehouse_id.clone())
            .unwrap_or_default();
        let mut qty = None;
        let mut bad = None;
        for w in inv {
            match w.get("warehouse_id") {
                None | Some(Value::Null) if inv.len() == 1 => {}
                Some(Value::String(wid)) if *wid == warehouse => {}
                _ => bad = Some("warehouse_id is not assigned to this SKU"),
            }
            match w.get("quantity").and_then(Value::as_u64) {
                Some(q) if q <= 99_999 => qty = Some(q as u32),
                _ => bad = Some("quantity must be an integer between 0 and 99999"),
            }
        }
        match (bad, qty) {
            (Some(msg), _) => errors.push(err(msg)),
            (None, Some(q)) => updates.push((li, q)),
            (None, None) => errors.push(err("quantity is required")),
        }
    }
    for (li, q) in updates {
        if let Some(l) = m.listings.get_mut(li) {
            l.quantity = q;
            l.updated_ms = now;
            m.qty_history
                .record(li, now, q, crate::qty_history::QtySource::PerListing);
        }
    }
    tts_ok(json!({ "errors": errors }))
}

async fn search_inventory(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = sim.lock();
    let (seller, _) = or_return!(check(
        &sim, &m, &method, &uri, &headers, &body, true, "product"
    ));
    let req = or_return!(body_json(&body));
    let list = |k: &str| -> Option<Vec<String>> {
        req.get(k).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
    };
    let sku_ids = list("sku_ids");
    let product_ids = list("product_ids");
    if sku_ids.is_none() && product_ids.is_none() {
        return tts_bad("sku_ids or product_ids is required");
    }
    if sku_ids.as_ref().is_some_and(|v| v.len() > 100)
        || product_ids.as_ref().is_some_and(|v| v.len() > 100)
    {
        return tts_bad("at most 100 ids");
    }
    let mut products: Vec<(String, Vec<Value>)> = Vec::new();
    for l in m.listings.iter().filter(|l| l.seller == seller) {
        let hit = sku_ids.as_ref().is_some_and(|v| v.contains(&l.sku_id))
            || product_ids
                .as_ref()
                .is_some_and(|v| v.contains(&l.product_id));
        if !hit {
            continue;
        }
        let sku = json!({
            "id": l.sku_id, "seller_sku": l.sku, "total_available_quantity": l.quantity,
            "total_committed_quantity": 0,
            "warehouse_inventory": [{"warehouse_id": l.warehouse_id, "available_quantity": l.quantity, "committed_quantity": 0}],
        });
        match products.iter_mut().find(|(p, _)| *p == l.product_id) {
            Some((_, skus)) => skus.push(sku),
            None => products.push((l.product_id.clone(), vec![sku])),
        }
    }
    let inventory: Vec<Value> = products
        .into_iter()
        .map(|(p, skus)| json!({"product_id": p, "skus": skus}))
        .collect();
    tts_ok(json!({ "inventory": inventory }))
}

/// Events for a changed order (type 1 ORDER_STATUS_CHANGE).
/// The return of a returned order, as Search Returns shows it: a return-and-refund of
/// every unit, complete (the simulator's buyers return whole orders).
fn return_json(m: &Market, o: &Order) -> Value {
    let items: Vec<Value> = o
        .lines
        .iter()
        .filter_map(|line| m.listings.get(line.listing).map(|l| (line, l)))
        .flat_map(|(line, l)| {
            line.unit_ids.iter().map(move |unit| {
                json!({"return_line_item_id": format!("R{unit}"), "order_line_item_id": unit,
                       "sku_id": l.sku_id, "seller_sku": l.sku, "product_name": l.title,
                       "sku_name": "Default"})
            })
        })
        .collect();
    json!({
        "return_id": format!("40{}", o.id), "order_id": o.id,
        "return_type": "RETURN_AND_REFUND", "return_status": "RETURN_OR_REFUND_REQUEST_COMPLETE",
        "role": "BUYER", "return_reason": "ecom_order_delivered_refund_and_return_reason_not_as_described",
        "shipment_type": "PLATFORM", "create_time": o.updated_ms / 1000,
        "update_time": o.updated_ms / 1000, "return_line_items": items,
    })
}

/// Search Returns (`POST /return_refund/202309/returns/search`): filters `order_ids`,
/// `return_ids`, `return_types`, `return_status`, create and update time ranges; pages
/// of at most 50 (default 10), `page_token` from `next_page_token` (empty on the last).
async fn search_returns(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = sim.lock();
    let (seller, q) = or_return!(check(
        &sim, &m, &method, &uri, &headers, &body, true, "order"
    ));
    let page_size = match query_get(&q, "page_size") {
        None => 10,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=50).contains(&n) => n,
            _ => return tts_bad("page_size must be between 1 and 50"),
        },
    };
    let after = or_return!(page_after(&q));
    let filter = or_return!(body_json(&body));
    let strings = |k: &str| -> Option<Vec<String>> {
        filter.get(k).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
    };
    let order_ids = strings("order_ids");
    if order_ids.as_ref().is_some_and(|ids| ids.len() > 50) {
        return tts_bad("order_ids must list at most 50 ids");
    }
    let types = strings("return_types");
    let statuses = strings("return_status");
    let bounds = or_return!(time_bounds(&filter));
    let has = |list: &Option<Vec<String>>, v: &str| {
        list.as_ref().is_none_or(|l| l.iter().any(|x| x == v))
    };
    // A returned order's return was created and last updated when it was returned.
    let mut matching: Vec<&Order> = m
        .orders
        .iter()
        .filter(|o| o.seller == seller && o.state == OrderState::Returned)
        .filter(|o| has(&order_ids, &o.id))
        .filter(|_| has(&types, "RETURN_AND_REFUND"))
        .filter(|_| has(&statuses, "RETURN_OR_REFUND_REQUEST_COMPLETE"))
        .filter(|o| bounds[0].is_none_or(|t| o.updated_ms >= t))
        .filter(|o| bounds[1].is_none_or(|t| o.updated_ms < t))
        .filter(|o| bounds[2].is_none_or(|t| o.updated_ms >= t))
        .filter(|o| bounds[3].is_none_or(|t| o.updated_ms < t))
        .collect();
    let total = matching.len();
    matching.sort_by_key(|o| (o.updated_ms, o.seq));
    let start = match after {
        None => 0,
        Some(cursor) => matching
            .iter()
            .position(|o| (o.updated_ms, o.seq) > cursor)
            .unwrap_or(matching.len()),
    };
    let page: Vec<&Order> = matching
        .iter()
        .skip(start)
        .take(page_size)
        .copied()
        .collect();
    let next = match (start + page.len() < matching.len(), page.last()) {
        (true, Some(o)) => page_token(o.updated_ms, o.seq),
        _ => String::new(),
    };
    let returns: Vec<Value> = page.iter().map(|o| return_json(&m, o)).collect();
    tts_ok(json!({"return_orders": returns, "next_page_token": next, "total_count": total}))
}

pub(crate) fn order_event(m: &Market, o: &Order) -> Option<(String, Vec<u8>)> {
    let shop = m.sellers.get(o.seller)?;
    if o.state == OrderState::Returned {
        // A return is announced as RETURN_STATUS_CHANGE (type 12); the order stays COMPLETED.
        let body = json!({
            "type": 12,
            "shop_id": shop.id,
            "timestamp": stockade_core::time::now_ms() / 1000,
            "data": {"order_id": o.id, "return_id": format!("40{}", o.id), "return_role": "BUYER",
                     "return_type": "RETURN_AND_REFUND", "return_status": "RETURN_OR_REFUND_REQUEST_COMPLETE",
                     "create_time": o.updated_ms / 1000, "update_time": o.updated_ms / 1000},
        });
        return Some(("RETURN_STATUS_CHANGE".into(), deliver::compact(&body)));
    }
    let body = json!({
        "type": 1,
        "shop_id": shop.id,
        // The envelope's timestamp is the time of sending (inside the signed body).
        "timestamp": stockade_core::time::now_ms() / 1000,
        "data": {"order_id": o.id, "order_status": status_str(o.state), "update_time": o.updated_ms / 1000},
    });
    Some(("ORDER_STATUS_CHANGE".into(), deliver::compact(&body)))
}
