//! Amazon SP-API simulator: LWA tokens, Orders v2026-01-01, Listings Items 2021-08-01,
//! Feeds 2021-06-30 (with presigned document URLs on the same server); the returns report
//! of the Reports API is in `amazon_reports`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use crate::resp::{self, amz_err, amz_invalid, amz_ok, amz_unauthorized, lwa_err};
use crate::sim::Sim;
use crate::state::{ALNUM, Feed, FeedDoc, Market, Order};
use crate::util::{ct_eq, iso_ms, iso_s, parse_form, parse_iso, parse_query, query_get};
use crate::{OrderState, deliver};

/// (operation, rate per second, burst): the published usage plans.
pub(crate) const RATES: &[(&str, f64, u32)] = &[
    ("searchOrders", 0.0056, 20),
    ("getOrder", 0.5, 30),
    ("patchListingsItem", 5.0, 5),
    ("getListingsItem", 5.0, 10),
    ("searchListingsItems", 5.0, 5),
    ("createFeedDocument", 0.5, 10),
    ("createFeed", 0.0083, 15),
    ("getFeed", 2.0, 15),
    ("getFeedDocument", 0.0222, 10),
    ("createReport", 0.0167, 15),
    ("getReport", 2.0, 15),
    ("getReportDocument", 0.0167, 15),
];

pub(crate) const URL_TTL_MS: i64 = 5 * 60 * 1000;

pub(crate) fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/auth/o2/token", post(token))
        .route("/orders/2026-01-01/orders", get(search_orders))
        .route("/orders/2026-01-01/orders/{order_id}", get(get_order))
        .route(
            "/listings/2021-08-01/items/{seller_id}/{sku}",
            get(get_listing).patch(patch_listing),
        )
        .route(
            "/listings/2021-08-01/items/{seller_id}",
            get(crate::listings_search::amazon_search_listings),
        )
        .route("/feeds/2021-06-30/documents", post(create_document))
        .route("/feeds/2021-06-30/documents/{doc_id}", get(get_document))
        .route("/feeds/2021-06-30/feeds", post(create_feed))
        .route("/feeds/2021-06-30/feeds/{feed_id}", get(get_feed))
        .route("/s3/{doc_id}", put(upload).get(download))
        .route(
            "/reports/2021-06-30/reports",
            post(crate::amazon_reports::create_report),
        )
        .route(
            "/reports/2021-06-30/reports/{report_id}",
            get(crate::amazon_reports::get_report),
        )
        .route(
            "/reports/2021-06-30/documents/{doc_id}",
            get(crate::amazon_reports::get_report_document),
        )
        .with_state(sim)
}

fn now_ms() -> i64 {
    stockade_core::time::now_ms()
}

async fn token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let fields: Vec<(String, String)> = if ct.starts_with("application/json") {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => map
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
                .collect(),
            _ => return lwa_err("invalid_request", "The request body is not valid JSON"),
        }
    } else if ct.starts_with("application/x-www-form-urlencoded") {
        parse_form(&body)
    } else {
        return lwa_err(
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded or application/json",
        );
    };
    let get = |k: &str| query_get(&fields, k).unwrap_or("");
    let grant = get("grant_type");
    if !matches!(
        grant,
        "refresh_token" | "authorization_code" | "client_credentials"
    ) {
        return lwa_err(
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server",
        );
    }
    if get("client_id").is_empty() || get("client_secret").is_empty() {
        return lwa_err(
            "invalid_request",
            "The request is missing a required parameter : client_id or client_secret",
        );
    }
    let mut m = sim.lock();
    if get("client_id") != m.app.client_id
        || !ct_eq(
            get("client_secret").as_bytes(),
            m.app.client_secret.as_bytes(),
        )
    {
        return resp::oauth_err(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    let now = now_ms();
    let ttl = sim.cfg.access_ttl_ms;
    let seller_grant = match grant {
        "refresh_token" => {
            let rt = get("refresh_token");
            if rt.is_empty() {
                return lwa_err(
                    "invalid_request",
                    "The request is missing a required parameter : refresh_token",
                );
            }
            match m.refresh_tokens.get(rt) {
                Some(&s) => Some((s, rt.to_owned())),
                None => {
                    return lwa_err(
                        "invalid_grant",
                        "The request has an invalid grant parameter : refresh_token",
                    );
                }
            }
        }
        "authorization_code" => {
            let code = get("code");
            match m.codes.remove(code) {
                Some(c) if c.expires_ms > now => {
                    let rt = m
                        .sellers
                        .get(c.seller)
                        .map(|s| s.refresh_token.clone())
                        .unwrap_or_default();
                    Some((c.seller, rt))
                }
                _ => {
                    return lwa_err(
                        "invalid_grant",
                        "The request has an invalid grant parameter : code",
                    );
                }
            }
        }
        _ => None,
    };
    match seller_grant {
        Some((seller, rt)) => {
            let access = m.issue_token(Some(seller), Vec::new(), now, ttl);
            resp::json_response(
                StatusCode::OK,
                &json!({"access_token": access, "refresh_token": rt, "token_type": "bearer", "expires_in": ttl / 1000}),
            )
        }
        None => {
            let scope = get("scope");
            if !matches!(
                scope,
                "sellingpartnerapi::notifications" | "sellingpartnerapi::migration"
            ) {
                return lwa_err(
                    "invalid_scope",
                    "The requested scope is invalid, unknown, or malformed",
                );
            }
            let access = m.issue_token(None, vec![scope.to_owned()], now, ttl);
            resp::json_response(
                StatusCode::OK,
                &json!({"access_token": access, "scope": scope, "token_type": "bearer", "expires_in": ttl / 1000}),
            )
        }
    }
}

/// The token check and the per-(operation, seller) rate limit.
pub(crate) fn auth(
    sim: &Sim,
    m: &Market,
    headers: &HeaderMap,
    op: &'static str,
) -> Result<usize, Response> {
    let Some(token) = headers
        .get("x-amz-access-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    else {
        return Err(amz_unauthorized(
            "Access token is missing in the request header.",
        ));
    };
    let Some(t) = m.tokens.get(token) else {
        return Err(amz_unauthorized(
            "The access token you provided is revoked, malformed or invalid.",
        ));
    };
    if t.expires_ms <= now_ms() {
        return Err(amz_unauthorized(
            "The access token you provided has expired.",
        ));
    }
    let Some(seller) = t.seller else {
        return Err(amz_unauthorized(
            "The access token you provided is revoked, malformed or invalid.",
        ));
    };
    if let Some((_, rate, burst)) = RATES.iter().find(|(o, _, _)| *o == op) {
        let id = m.sellers.get(seller).map(|s| s.id.as_str()).unwrap_or("");
        if let Err(wait) = sim.limiter.take(op, id, *rate, *burst) {
            return Err(resp::throttled(sim.marketplace, wait));
        }
    }
    Ok(seller)
}

pub(crate) fn fulfillment_status(state: OrderState) -> &'static str {
    match state {
        OrderState::Placed => "UNSHIPPED",
        OrderState::Shipped | OrderState::Delivered | OrderState::Returned => "SHIPPED",
        OrderState::Cancelled => "CANCELLED",
    }
}

fn v0_status(state: OrderState) -> &'static str {
    match state {
        OrderState::Placed => "Unshipped",
        OrderState::Shipped | OrderState::Delivered | OrderState::Returned => "Shipped",
        OrderState::Cancelled => "Canceled",
    }
}

fn order_json(m: &Market, o: &Order, included: &[String]) -> Value {
    let seller = m.sellers.get(o.seller);
    let shipped = !matches!(o.state, OrderState::Placed | OrderState::Cancelled);
    let items: Vec<Value> = o
        .lines
        .iter()
        .filter_map(|line| {
            let l = m.listings.get(line.listing)?;
            let done = if shipped { line.quantity } else { 0 };
            Some(json!({
                "orderItemId": line.id, "quantityOrdered": line.quantity,
                "product": {"asin": l.asin, "sellerSku": l.sku, "title": l.title},
                "fulfillment": {"quantityFulfilled": done, "quantityUnfulfilled": line.quantity - done},
            }))
        })
        .collect();
    let mut order = json!({
        "orderId": o.id,
        "createdTime": iso_s(o.created_ms),
        "lastUpdatedTime": iso_s(o.updated_ms),
        "salesChannel": {"channelName": "AMAZON", "marketplaceId": seller.map(|s| s.marketplace_id.clone()).unwrap_or_default(), "marketplaceName": "Amazon.com"},
        "fulfillment": {"fulfillmentStatus": fulfillment_status(o.state), "fulfilledBy": "MERCHANT"},
        "orderItems": items,
    });
    let b = &o.buyer;
    let Some(obj) = order.as_object_mut() else {
        return order;
    };
    if included.iter().any(|i| i == "BUYER") {
        let mut buyer = json!({"buyerName": b.full_name()});
        if o.state != OrderState::Cancelled
            && let Some(bo) = buyer.as_object_mut()
        {
            bo.insert(
                "buyerEmail".into(),
                Value::String(format!(
                    "{}@marketplace.amazon.com",
                    o.buyer_user_id.get(..14).unwrap_or("buyer")
                )),
            );
        }
        obj.insert("buyer".into(), buyer);
    }
    if included.iter().any(|i| i == "RECIPIENT") {
        let mut addr = json!({
            "name": b.full_name(), "addressLine1": b.line1, "city": b.city,
            "stateOrRegion": b.region, "postalCode": b.postal, "countryCode": b.country,
            "phone": b.phone,
        });
        if !b.line2.is_empty()
            && let Some(a) = addr.as_object_mut()
        {
            a.insert("addressLine2".into(), Value::String(b.line2.clone()));
        }
        obj.insert("recipient".into(), json!({"deliveryAddress": addr}));
    }
    order
}

const INCLUDED: &[&str] = &[
    "BUYER",
    "RECIPIENT",
    "PROCEEDS",
    "EXPENSE",
    "PROMOTION",
    "CANCELLATION",
    "FULFILLMENT",
    "PACKAGES",
    "TAX",
    "PAYMENT",
    "FULFILLMENT_ORDERS",
];

fn parse_included(q: &[(String, String)]) -> Result<Vec<String>, Response> {
    let mut out = Vec::new();
    for (k, v) in q.iter().filter(|(k, _)| k == "includedData") {
        let _ = k;
        for part in v.split(',').filter(|s| !s.is_empty()) {
            if !INCLUDED.contains(&part) {
                return Err(amz_invalid(&format!("Invalid includedData value: {part}")));
            }
            out.push(part.to_owned());
        }
    }
    Ok(out)
}

struct Cursor {
    by_update: bool,
    after: i64,
    before: Option<i64>,
    last: Option<(i64, u64)>,
}

fn encode_cursor(c: &Cursor) -> String {
    hex::encode(format!(
        "{}:{}:{}:{}:{}",
        if c.by_update { "u" } else { "c" },
        c.after,
        c.before.map(|b| b.to_string()).unwrap_or_default(),
        c.last.map(|l| l.0).unwrap_or(0),
        c.last.map(|l| l.1).unwrap_or(0)
    ))
}

fn decode_cursor(s: &str) -> Option<Cursor> {
    let raw = String::from_utf8(hex::decode(s).ok()?).ok()?;
    let parts: Vec<&str> = raw.split(':').collect();
    let [kind, after, before, k, seq] = parts.as_slice() else {
        return None;
    };
    Some(Cursor {
        by_update: *kind == "u",
        after: after.parse().ok()?,
        before: if before.is_empty() {
            None
        } else {
            Some(before.parse().ok()?)
        },
        last: Some((k.parse().ok()?, seq.parse().ok()?)),
    })
}

async fn search_orders(State(sim): State<Arc<Sim>>, uri: Uri, headers: HeaderMap) -> Response {
    let m = sim.lock();
    let seller = or_return!(auth(&sim, &m, &headers, "searchOrders"));
    let q = parse_query(uri.query().unwrap_or(""));
    let included = or_return!(parse_included(&q));
    let page_size = match query_get(&q, "maxResultsPerPage") {
        None => 100,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => return amz_invalid("maxResultsPerPage must be between 1 and 100"),
        },
    };
    let cursor = or_return!(search_cursor(&q));
    let statuses = or_return!(fulfillment_statuses(&q));
    let key = |o: &Order| {
        if cursor.by_update {
            o.updated_ms
        } else {
            o.created_ms
        }
    };
    let mut matching: Vec<&Order> = m
        .orders
        .iter()
        .filter(|o| o.seller == seller)
        .filter(|o| key(o) >= cursor.after && cursor.before.is_none_or(|b| key(o) < b))
        .filter(|o| statuses.is_empty() || statuses.contains(&fulfillment_status(o.state)))
        .filter(|_| query_get(&q, "fulfilledBy").is_none_or(|f| f == "MERCHANT"))
        .collect();
    matching.sort_by_key(|o| (key(o), o.seq));
    let start = match cursor.last {
        None => 0,
        Some(last) => matching
            .iter()
            .position(|o| (key(o), o.seq) > last)
            .unwrap_or(matching.len()),
    };
    let page: Vec<&Order> = matching
        .iter()
        .skip(start)
        .take(page_size)
        .copied()
        .collect();
    let more = start + page.len() < matching.len();
    let orders: Vec<Value> = page.iter().map(|o| order_json(&m, o, &included)).collect();
    let mut out = json!({ "orders": orders });
    if let Some(obj) = out.as_object_mut() {
        if more && let Some(last) = page.last() {
            let next = Cursor {
                last: Some((key(last), last.seq)),
                ..cursor
            };
            obj.insert(
                "pagination".into(),
                json!({"nextToken": encode_cursor(&next)}),
            );
        }
        let bound = cursor.before.unwrap_or_else(now_ms);
        let name = if cursor.by_update {
            "lastUpdatedBefore"
        } else {
            "createdBefore"
        };
        obj.insert(name.into(), Value::String(iso_s(bound)));
    }
    amz_ok(StatusCode::OK, &out)
}

/// Where a search starts: its pagination token, or its date-time bounds checked as
/// Amazon checks them.
fn search_cursor(q: &[(String, String)]) -> Result<Cursor, Response> {
    let time = |k: &str| -> Result<Option<i64>, Response> {
        match query_get(q, k) {
            None => Ok(None),
            Some(v) => parse_iso(v)
                .map(Some)
                .ok_or_else(|| amz_invalid(&format!("{k} is not a valid ISO 8601 date-time"))),
        }
    };
    if let Some(token) = query_get(q, "paginationToken") {
        return decode_cursor(token).ok_or_else(|| amz_invalid("Invalid paginationToken"));
    }
    let (ca, cb, ua, ub) = match (
        time("createdAfter"),
        time("createdBefore"),
        time("lastUpdatedAfter"),
        time("lastUpdatedBefore"),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(r), ..) | (_, Err(r), ..) | (_, _, Err(r), _) | (.., Err(r)) => return Err(r),
    };
    match (ca, ua) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(amz_invalid(
                "Exactly one of createdAfter and lastUpdatedAfter must be specified",
            ));
        }
        _ => {}
    }
    if ca.is_some() && ub.is_some() {
        return Err(amz_invalid(
            "lastUpdatedBefore can only be used with lastUpdatedAfter",
        ));
    }
    if ua.is_some() && cb.is_some() {
        return Err(amz_invalid(
            "createdBefore can only be used with createdAfter",
        ));
    }
    let (by_update, after, before) = match (ca, ua) {
        (Some(a), _) => (false, a, cb),
        (_, Some(a)) => (true, a, ub),
        _ => (false, 0, None),
    };
    if before.is_some_and(|b| b <= after) {
        return Err(amz_invalid(
            "The Before date must be later than the After date",
        ));
    }
    Ok(Cursor {
        by_update,
        after,
        before,
        last: None,
    })
}

/// The fulfillment statuses asked for; refuses too many marketplaces, an unknown status
/// or an unknown `fulfilledBy`.
fn fulfillment_statuses(q: &[(String, String)]) -> Result<Vec<&str>, Response> {
    if q.iter()
        .filter(|(k, _)| k == "marketplaceIds")
        .flat_map(|(_, v)| v.split(','))
        .count()
        > 50
    {
        return Err(amz_invalid("At most 50 marketplaceIds"));
    }
    let statuses: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "fulfillmentStatuses")
        .flat_map(|(_, v)| v.split(','))
        .filter(|s| !s.is_empty())
        .collect();
    for s in &statuses {
        if !matches!(
            *s,
            "PENDING_AVAILABILITY"
                | "PENDING"
                | "UNSHIPPED"
                | "PARTIALLY_SHIPPED"
                | "SHIPPED"
                | "CANCELLED"
                | "UNFULFILLABLE"
        ) {
            return Err(amz_invalid(&format!(
                "Invalid fulfillmentStatuses value: {s}"
            )));
        }
    }
    if let Some(f) = query_get(q, "fulfilledBy")
        && !matches!(f, "MERCHANT" | "AMAZON")
    {
        return Err(amz_invalid("fulfilledBy must be MERCHANT or AMAZON"));
    }
    Ok(statuses)
}

async fn get_order(
    State(sim): State<Arc<Sim>>,
    Path(order_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let m = sim.lock();
    let seller = or_return!(auth(&sim, &m, &headers, "getOrder"));
    let q = parse_query(uri.query().unwrap_or(""));
    let included = or_return!(parse_included(&q));
    match m
        .order_index
        .get(&order_id)
        .and_then(|i| m.orders.get(*i))
        .filter(|o| o.seller == seller)
    {
        Some(o) => amz_ok(
            StatusCode::OK,
            &json!({"order": order_json(&m, o, &included)}),
        ),
        None => amz_err(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("Order {order_id} was not found"),
            "",
        ),
    }
}

fn listing_for(
    m: &Market,
    seller: usize,
    seller_id: &str,
    sku: &str,
    q: &[(String, String)],
) -> Result<usize, Response> {
    let s = m.sellers.get(seller).ok_or_else(|| amz_unauthorized(""))?;
    if s.id != seller_id {
        return Err(amz_unauthorized(
            "The access token you provided does not grant access to this seller.",
        ));
    }
    let ids: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "marketplaceIds")
        .flat_map(|(_, v)| v.split(','))
        .filter(|s| !s.is_empty())
        .collect();
    if ids.is_empty() {
        return Err(amz_invalid("Missing required parameter: marketplaceIds"));
    }
    if ids.len() != 1 || ids.first() != Some(&s.marketplace_id.as_str()) {
        return Err(amz_invalid(
            "marketplaceIds must name one marketplace the seller sells in",
        ));
    }
    m.listing(seller, sku).ok_or_else(|| {
        amz_err(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("SKU '{sku}' not found in marketplace {}", s.marketplace_id),
            "",
        )
    })
}

fn submission_id(m: &mut Market) -> String {
    m.rng.chars(32, b"0123456789abcdef")
}

/// Read `/attributes/fulfillment_availability` values: the DEFAULT channel's quantity.
fn availability_quantity(value: &Value) -> Result<u32, String> {
    let arr = value
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("value must be a non-empty array")?;
    for entry in arr {
        let code = entry
            .get("fulfillment_channel_code")
            .and_then(Value::as_str)
            .ok_or("fulfillment_channel_code is required")?;
        if code != "DEFAULT" {
            continue;
        }
        let q = entry
            .get("quantity")
            .and_then(Value::as_u64)
            .ok_or("quantity must be a non-negative integer")?;
        return u32::try_from(q).map_err(|_| "quantity is too large".to_owned());
    }
    Err("no DEFAULT fulfillment_channel_code entry".to_owned())
}

/// Validate a patch list; returns the new quantity if one is set, or the issues.
fn apply_patches(patches: Option<&Value>) -> Result<Option<u32>, Vec<Value>> {
    let issue = |code: &str, msg: String, attr: &str| json!({"code": code, "message": msg, "severity": "ERROR", "attributeNames": [attr]});
    let Some(list) = patches.and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        return Err(vec![issue(
            "4000001",
            "patches must be a non-empty array".into(),
            "patches",
        )]);
    };
    let mut qty = None;
    let mut issues = Vec::new();
    for p in list {
        let op = p.get("op").and_then(Value::as_str).unwrap_or("");
        let path = p.get("path").and_then(Value::as_str).unwrap_or("");
        if !matches!(op, "add" | "replace" | "merge" | "delete") {
            issues.push(issue(
                "4000001",
                format!("op '{op}' is not one of add, replace, merge, delete"),
                "op",
            ));
            continue;
        }
        if !path.starts_with("/attributes/") {
            issues.push(issue(
                "4000001",
                format!("path '{path}' is not an attribute path"),
                "path",
            ));
            continue;
        }
        if path == "/attributes/fulfillment_availability" {
            if op == "delete" {
                qty = Some(0);
                continue;
            }
            match p.get("value").map(availability_quantity) {
                Some(Ok(q)) => qty = Some(q),
                Some(Err(e)) => issues.push(issue("90220", e, "fulfillment_availability")),
                None => issues.push(issue(
                    "90220",
                    "value is required".into(),
                    "fulfillment_availability",
                )),
            }
        }
    }
    if issues.is_empty() {
        Ok(qty)
    } else {
        Err(issues)
    }
}

async fn patch_listing(
    State(sim): State<Arc<Sim>>,
    Path((seller_id, sku)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut m = sim.lock();
    let seller = or_return!(auth(&sim, &m, &headers, "patchListingsItem"));
    let q = parse_query(uri.query().unwrap_or(""));
    let li = or_return!(listing_for(&m, seller, &seller_id, &sku, &q));
    let preview = match query_get(&q, "mode") {
        None => false,
        Some("VALIDATION_PREVIEW") => true,
        Some(_) => return amz_invalid("mode must be VALIDATION_PREVIEW"),
    };
    if !headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return amz_err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "Content-Type must be application/json",
            "",
        );
    }
    let Ok(req @ Value::Object(_)) = serde_json::from_slice::<Value>(&body) else {
        return amz_invalid("The request body is not a valid ListingsItemPatchRequest");
    };
    if req
        .get("productType")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return amz_invalid("productType is required");
    }
    let sid = submission_id(&mut m);
    match apply_patches(req.get("patches")) {
        Err(issues) => amz_ok(
            StatusCode::OK,
            &json!({"sku": sku, "status": "INVALID", "submissionId": sid, "issues": issues}),
        ),
        Ok(qty) => {
            if preview {
                return amz_ok(
                    StatusCode::OK,
                    &json!({"sku": sku, "status": "VALID", "submissionId": sid, "issues": []}),
                );
            }
            let now = now_ms();
            if let (Some(q), Some(l)) = (qty, m.listings.get_mut(li)) {
                l.quantity = q;
                l.updated_ms = now;
                m.qty_history
                    .record(li, now, q, crate::qty_history::QtySource::PerListing);
            }
            amz_ok(
                StatusCode::OK,
                &json!({"sku": sku, "status": "ACCEPTED", "submissionId": sid, "issues": []}),
            )
        }
    }
}

async fn get_listing(
    State(sim): State<Arc<Sim>>,
    Path((seller_id, sku)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let m = sim.lock();
    let seller = or_return!(auth(&sim, &m, &headers, "getListingsItem"));
    let q = parse_query(uri.query().unwrap_or(""));
    let li = or_return!(listing_for(&m, seller, &seller_id, &sku, &q));
    let Some(l) = m.listings.get(li) else {
        return resp::no_route(sim.marketplace);
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
    let marketplace_id = m
        .sellers
        .get(seller)
        .map(|s| s.marketplace_id.clone())
        .unwrap_or_default();
    let mut out = json!({"sku": l.sku});
    let Some(obj) = out.as_object_mut() else {
        return resp::no_route(sim.marketplace);
    };
    for part in included {
        match part {
            "summaries" => {
                obj.insert("summaries".into(), json!([{
                    "marketplaceId": marketplace_id, "asin": l.asin, "productType": l.product_type,
                    "conditionType": "new_new", "status": ["BUYABLE", "DISCOVERABLE"],
                    "itemName": l.title, "createdDate": iso_s(l.updated_ms.min(now_ms())),
                    "lastUpdatedDate": iso_s(l.updated_ms),
                }]));
            }
            "attributes" => {
                obj.insert("attributes".into(), json!({
                    "fulfillment_availability": [{"fulfillment_channel_code": "DEFAULT", "quantity": l.quantity}],
                    "item_name": [{"value": l.title, "language_tag": "en_US", "marketplace_id": marketplace_id}],
                }));
            }
            "fulfillmentAvailability" => {
                obj.insert(
                    "fulfillmentAvailability".into(),
                    json!([{"fulfillmentChannelCode": "DEFAULT", "quantity": l.quantity}]),
                );
            }
            "issues" => {
                obj.insert("issues".into(), json!([]));
            }
            "offers" | "procurement" | "relationships" | "productTypes" => {}
            other => return amz_invalid(&format!("Invalid includedData value: {other}")),
        }
    }
    amz_ok(StatusCode::OK, &out)
}

pub(crate) fn doc_url(sim: &Sim, id: &str, key: &str) -> String {
    format!(
        "{}/s3/{id}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=300&X-Amz-Signature={key}",
        sim.base_url
    )
}

async fn create_document(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut m = sim.lock();
    let seller = or_return!(auth(&sim, &m, &headers, "createFeedDocument"));
    let Some(content_type) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("contentType")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .filter(|c| !c.is_empty())
    else {
        return amz_invalid("contentType is required");
    };
    let id = format!("amzn1.tortuga.4.na.{}", m.rng.uuid());
    let key = m.rng.chars(64, b"0123456789abcdef");
    m.docs.insert(
        id.clone(),
        FeedDoc {
            seller,
            content_type,
            url_key: key.clone(),
            url_expires_ms: now_ms() + URL_TTL_MS,
            content: None,
        },
    );
    amz_ok(
        StatusCode::CREATED,
        &json!({"feedDocumentId": id, "url": doc_url(&sim, &id, &key)}),
    )
}

fn s3_error(code: &str, message: &str) -> Response {
    let mut r = Response::new(axum::body::Body::from(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )));
    *r.status_mut() = StatusCode::FORBIDDEN;
    resp::with_header(r, "content-type", "application/xml")
}

fn presigned<'a>(m: &'a mut Market, id: &str, uri: &Uri) -> Result<&'a mut FeedDoc, Response> {
    let q = parse_query(uri.query().unwrap_or(""));
    let sig = query_get(&q, "X-Amz-Signature").unwrap_or("");
    let Some(doc) = m.docs.get_mut(id) else {
        return Err(s3_error("AccessDenied", "Access Denied"));
    };
    if !ct_eq(sig.as_bytes(), doc.url_key.as_bytes()) {
        return Err(s3_error(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    if doc.url_expires_ms <= now_ms() {
        return Err(s3_error("AccessDenied", "Request has expired"));
    }
    Ok(doc)
}

async fn upload(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut m = sim.lock();
    let doc = or_return!(presigned(&mut m, &id, &uri));
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let norm = |s: &str| s.to_ascii_lowercase().replace(' ', "");
    if norm(ct) != norm(&doc.content_type) {
        return s3_error(
            "SignatureDoesNotMatch",
            "The Content-Type does not match the one the document was created with.",
        );
    }
    doc.content = Some(body.to_vec());
    let mut r = Response::new(axum::body::Body::empty());
    *r.status_mut() = StatusCode::OK;
    r
}

async fn download(State(sim): State<Arc<Sim>>, Path(id): Path<String>, uri: Uri) -> Response {
    let mut m = sim.lock();
    let doc = or_return!(presigned(&mut m, &id, &uri));
    let ct = doc.content_type.clone();
    let body = doc.content.clone().unwrap_or_default();
    let r = Response::new(axum::body::Body::from(body));
    resp::with_header(r, "content-type", &ct)
}

async fn get_document(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut m = sim.lock();
    let seller = or_return!(auth(&sim, &m, &headers, "getFeedDocument"));
    let key = m.rng.chars(64, b"0123456789abcdef");
    let Some(doc) = m.docs.get_mut(&id).filter(|d| d.seller == seller) else {
        return amz_err(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The feed document was not found.",
            "",
        );
    };
    doc.url_key = key.clone();
    doc.url_expires_ms = now_ms() + URL_TTL_MS;
    amz_ok(
        StatusCode::OK,
        &json!({"feedDocumentId": id, "url": doc_url(&sim, &id, &key)}),
    )
}

async fn create_feed(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut m = sim.lock();
    let seller = or_return!(auth(&sim, &m, &headers, "createFeed"));
    let Ok(req @ Value::Object(_)) = serde_json::from_slice::<Value>(&body) else {
        return amz_invalid("The request body is not a valid CreateFeedSpecification");
    };
    let feed_type = req.get("feedType").and_then(Value::as_str).unwrap_or("");
    if feed_type.is_empty() {
        return amz_invalid("feedType is required");
    }
    let marketplace_ids: Vec<String> = req
        .get("marketplaceIds")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if marketplace_ids.is_empty() {
        return amz_invalid("marketplaceIds is required");
    }
    let doc_id = req
        .get("inputFeedDocumentId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match m.docs.get(&doc_id) {
        Some(d) if d.seller == seller && d.content.is_some() => {}
        Some(d) if d.seller == seller => {
            return amz_invalid(
                "The input feed document has no content: upload it to the presigned url first",
            );
        }
        _ => return amz_invalid("inputFeedDocumentId is not a valid feed document"),
    }
    let id = m.rng.digits(11);
    m.feeds.push(Feed {
        id: id.clone(),
        seller,
        feed_type: feed_type.to_owned(),
        marketplace_ids,
        input_doc: doc_id,
        created_ms: now_ms(),
        status: "IN_QUEUE",
        started_ms: None,
        ended_ms: None,
        result_doc: None,
    });
    drop(m);
    let step = Duration::from_millis(sim.cfg.feed_step_ms.max(1) as u64);
    let worker = sim.clone();
    let feed_id = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(step).await;
        {
            let mut m = worker.lock();
            if let Some(f) = m.feeds.iter_mut().find(|f| f.id == feed_id) {
                f.status = "IN_PROGRESS";
                f.started_ms = Some(now_ms());
            }
        }
        tokio::time::sleep(step).await;
        let mut m = worker.lock();
        process_feed(&mut m, &feed_id);
    });
    amz_ok(StatusCode::ACCEPTED, &json!({ "feedId": id }))
}

/// Apply a JSON_LISTINGS_FEED and write its processing report.
fn process_feed(m: &mut Market, feed_id: &str) {
    let Some(fi) = m.feeds.iter().position(|f| f.id == feed_id) else {
        return;
    };
    let (seller, input, feed_type) = match m.feeds.get(fi) {
        Some(f) => (f.seller, f.input_doc.clone(), f.feed_type.clone()),
        None => return,
    };
    let seller_id = m
        .sellers
        .get(seller)
        .map(|s| s.id.clone())
        .unwrap_or_default();
    let content = m
        .docs
        .get(&input)
        .and_then(|d| d.content.clone())
        .unwrap_or_default();
    let mut issues = Vec::new();
    let mut processed = 0u64;
    let mut accepted = 0u64;
    let mut fatal = false;
    let now = now_ms();
    let doc: Option<Value> = serde_json::from_slice(&content).ok();
    if feed_type != "JSON_LISTINGS_FEED" {
        fatal = true;
        issues.push(json!({"code": "4000000", "severity": "ERROR", "message": format!("The sandbox processes only JSON_LISTINGS_FEED, not {feed_type}")}));
    } else if let Some(doc) = doc {
        let header_seller = doc
            .pointer("/header/sellerId")
            .and_then(Value::as_str)
            .unwrap_or("");
        if header_seller != seller_id {
            fatal = true;
            issues.push(json!({"code": "4000003", "severity": "ERROR", "message": "header.sellerId does not match the selling partner of this feed"}));
        } else {
            let messages = doc
                .get("messages")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for msg in messages {
                processed += 1;
                let mid = msg.get("messageId").cloned().unwrap_or(Value::Null);
                let sku = msg.get("sku").and_then(Value::as_str).unwrap_or("");
                let op = msg
                    .get("operationType")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let err = |code: &str, message: String| json!({"messageId": mid, "code": code, "severity": "ERROR", "message": message});
                let Some(li) = m.listing(seller, sku) else {
                    issues.push(err("18", format!("SKU '{sku}' was not found")));
                    continue;
                };
                match op {
                    "PATCH" => {
                        if msg
                            .get("productType")
                            .and_then(Value::as_str)
                            .is_none_or(str::is_empty)
                        {
                            issues.push(err("4000001", "productType is required".into()));
                            continue;
                        }
                        match apply_patches(msg.get("patches")) {
                            Ok(q) => {
                                if let (Some(q), Some(l)) = (q, m.listings.get_mut(li)) {
                                    l.quantity = q;
                                    l.updated_ms = now;
                                    m.qty_history.record(
                                        li,
                                        now,
                                        q,
                                        crate::qty_history::QtySource::Bulk,
                                    );
                                }
                                accepted += 1;
                            }
                            Err(list) => {
                                for i in list {
                                    issues.push(err(
                                        i.get("code").and_then(Value::as_str).unwrap_or("90220"),
                                        i.get("message")
                                            .and_then(Value::as_str)
                                            .unwrap_or("")
                                            .to_owned(),
                                    ));
                                }
                            }
                        }
                    }
                    "UPDATE" | "PARTIAL_UPDATE" | "DELETE" => accepted += 1,
                    other => issues.push(err(
                        "4000001",
                        format!("operationType '{other}' is not valid"),
                    )),
                }
            }
        }
    } else {
        fatal = true;
        issues.push(json!({"code": "4000002", "severity": "ERROR", "message": "The feed document is not valid JSON"}));
    }
    let report = json!({
        "header": {"sellerId": seller_id, "version": "2.0", "feedId": feed_id},
        "issues": issues,
        "summary": {"errors": issues.len(), "warnings": 0, "messagesProcessed": processed, "messagesAccepted": accepted, "messagesInvalid": processed - accepted},
    });
    let result_id = format!("amzn1.tortuga.4.na.{}", m.rng.uuid());
    let key = m.rng.chars(64, b"0123456789abcdef");
    m.docs.insert(
        result_id.clone(),
        FeedDoc {
            seller,
            content_type: "application/json".into(),
            url_key: key,
            url_expires_ms: now + URL_TTL_MS,
            content: Some(deliver::compact(&report)),
        },
    );
    if let Some(f) = m.feeds.get_mut(fi) {
        f.status = if fatal { "FATAL" } else { "DONE" };
        f.started_ms.get_or_insert(now);
        f.ended_ms = Some(now);
        f.result_doc = Some(result_id);
    }
}

async fn get_feed(
    State(sim): State<Arc<Sim>>,
    Path(feed_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let m = sim.lock();
    let seller = or_return!(auth(&sim, &m, &headers, "getFeed"));
    let Some(f) = m
        .feeds
        .iter()
        .find(|f| f.id == feed_id && f.seller == seller)
    else {
        return amz_err(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The feed was not found.",
            "",
        );
    };
    let mut out = json!({
        "feedId": f.id, "feedType": f.feed_type, "marketplaceIds": f.marketplace_ids,
        "createdTime": iso_s(f.created_ms), "processingStatus": f.status,
    });
    if let Some(obj) = out.as_object_mut() {
        if let Some(t) = f.started_ms {
            obj.insert("processingStartTime".into(), Value::String(iso_s(t)));
        }
        if let Some(t) = f.ended_ms {
            obj.insert("processingEndTime".into(), Value::String(iso_s(t)));
        }
        if let Some(d) = &f.result_doc {
            obj.insert("resultFeedDocumentId".into(), Value::String(d.clone()));
        }
    }
    amz_ok(StatusCode::OK, &out)
}

/// The EventBridge envelope carrying an ORDER_CHANGE notification.
pub(crate) fn order_event(m: &mut Market, o_idx: usize) -> Option<(String, Vec<u8>)> {
    let o = m.orders.get(o_idx)?.clone();
    let seller = m.sellers.get(o.seller)?.clone();
    let app_id = m.app.application_id.clone();
    let items: Vec<Value> = o
        .lines
        .iter()
        .filter_map(|line| {
            let l = m.listings.get(line.listing)?;
            let shipped = if matches!(o.state, OrderState::Placed | OrderState::Cancelled) {
                0
            } else {
                line.quantity
            };
            Some(json!({
                "OrderItemId": line.id, "SellerSKU": l.sku, "SupplySourceId": null,
                "Quantity": line.quantity, "QuantityShipped": shipped,
                "OrderItemStatus": v0_status(o.state), "IsBuyerRequestedCancel": false,
            }))
        })
        .collect();
    let event_id = m.rng.uuid();
    let notification_id = m.rng.uuid();
    let subscription_id = m.rng.uuid();
    let _ = ALNUM;
    let detail = json!({
        "NotificationVersion": "1.0",
        "NotificationType": "ORDER_CHANGE",
        "PayloadVersion": "1.0",
        "EventTime": iso_ms(o.updated_ms),
        "Payload": {"OrderChangeNotification": {
            "NotificationLevel": "OrderLevel",
            "SellerId": seller.id,
            "AmazonOrderId": o.id,
            "OrderChangeType": "OrderStatusChange",
            "OrderChangeTrigger": {"TimeOfOrderChange": iso_ms(o.updated_ms), "ChangeReason": "Order status changed"},
            "Summary": {
                "MarketplaceId": seller.marketplace_id,
                "OrderStatus": v0_status(o.state),
                "PurchaseDate": iso_ms(o.created_ms),
                "DestinationPostalCode": null,
                "FulfillmentType": "MFN",
                "OrderType": "StandardOrder",
                "OrderPrograms": [],
                "ShippingPrograms": [],
                "OrderItems": items,
            },
        }},
        "NotificationMetadata": {
            "ApplicationId": app_id,
            "SubscriptionId": subscription_id,
            "PublishTime": iso_ms(now_ms()),
            "NotificationId": notification_id,
        },
    });
    let envelope = json!({
        "version": "0",
        "id": event_id,
        "detail-type": "ORDER_CHANGE",
        "source": format!("aws.partner/sellingpartnerapi.amazon/{app_id}"),
        "account": "123456789012",
        "time": iso_s(now_ms()),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    });
    Some(("ORDER_CHANGE".into(), deliver::compact(&envelope)))
}
