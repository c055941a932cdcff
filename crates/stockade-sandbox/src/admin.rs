//! Operations behind the Rust API and the loopback-only `/_sandbox/` HTTP routes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use stockade_core::order::Marketplace;

use crate::faults::Faults;
use crate::resp::json_response;
use crate::sim::Sim;
use crate::state::Market;
use crate::{
    ListingState, OrderAction, OrderState, OrderSummary, SandboxError, amazon, deliver, ebay,
    tiktok,
};

fn now_ms() -> i64 {
    stockade_core::time::now_ms()
}

/// Queue the events an order change causes.
fn order_events(sim: &Sim, m: &mut Market, idx: usize, new: bool) {
    let events: Vec<(String, Vec<u8>)> = match sim.marketplace {
        Marketplace::TikTok => m
            .orders
            .get(idx)
            .and_then(|o| tiktok::order_event(m, o))
            .into_iter()
            .collect(),
        Marketplace::Amazon => amazon::order_event(m, idx).into_iter().collect(),
        Marketplace::Ebay if new => ebay::order_events(m, idx),
        Marketplace::Ebay => Vec::new(),
    };
    let order = m.orders.get(idx).map(|o| o.id.clone());
    for (kind, body) in events {
        deliver::emit_about(sim, m, &kind, body, order.clone());
    }
}

pub(crate) fn seller_index(sim: &Sim, m: &Market, seller_id: &str) -> Result<usize, SandboxError> {
    m.seller_index(seller_id)
        .ok_or_else(|| SandboxError::UnknownSeller {
            marketplace: sim.marketplace,
            seller_id: seller_id.to_owned(),
        })
}

impl Sim {
    pub fn generate(&self, n: usize) -> Vec<String> {
        let mut m = self.lock();
        let made = m.generate(n, now_ms(), self.cfg.us_share);
        let ids: Vec<String> = made
            .iter()
            .filter_map(|i| m.orders.get(*i).map(|o| o.id.clone()))
            .collect();
        for i in made {
            order_events(self, &mut m, i, true);
        }
        ids
    }

    pub fn advance(&self, order_id: &str, action: OrderAction) -> Result<OrderState, SandboxError> {
        let mut m = self.lock();
        let idx = *m
            .order_index
            .get(order_id)
            .ok_or_else(|| SandboxError::UnknownOrder {
                marketplace: self.marketplace,
                order_id: order_id.to_owned(),
            })?;
        let state = m
            .advance(idx, action, now_ms())
            .map_err(SandboxError::InvalidTransition)?;
        order_events(self, &mut m, idx, false);
        Ok(state)
    }

    /// An Amazon buyer returns units of an order (the returns report lists it).
    pub fn amazon_return(
        &self,
        order_id: &str,
        sku: Option<&str>,
        quantity: Option<u32>,
        status: &str,
        delivered: bool,
    ) -> Result<(), SandboxError> {
        let mut m = self.lock();
        let idx = *m
            .order_index
            .get(order_id)
            .ok_or_else(|| SandboxError::UnknownOrder {
                marketplace: self.marketplace,
                order_id: order_id.to_owned(),
            })?;
        let at = m.tick(now_ms());
        crate::amazon_reports::record_return(&mut m, idx, sku, quantity, status, delivered, at)
            .map_err(SandboxError::InvalidTransition)?;
        Ok(())
    }

    /// The order's returned packages still on their way reach the seller now.
    pub fn amazon_returns_arrive(&self, order_id: &str) -> Result<usize, SandboxError> {
        let mut m = self.lock();
        let idx = *m
            .order_index
            .get(order_id)
            .ok_or_else(|| SandboxError::UnknownOrder {
                marketplace: self.marketplace,
                order_id: order_id.to_owned(),
            })?;
        let at = m.tick(now_ms());
        Ok(crate::amazon_reports::returns_arrive(&mut m, idx, at))
    }

    pub fn advance_random(&self, n: usize) -> Vec<String> {
        let mut m = self.lock();
        let changed = m.advance_random(n, now_ms());
        let ids = changed
            .iter()
            .filter_map(|i| m.orders.get(*i).map(|o| o.id.clone()))
            .collect();
        for i in changed {
            order_events(self, &mut m, i, false);
        }
        ids
    }

    pub fn revoke(&self, seller_id: &str) -> Result<(), SandboxError> {
        let mut m = self.lock();
        let s = seller_index(self, &m, seller_id)?;
        m.revoke(s);
        match self.marketplace {
            Marketplace::TikTok => {
                let body = deliver::compact(&json!({
                    "type": 6, "shop_id": seller_id, "timestamp": now_ms() / 1000,
                    "data": {"message": "The seller has deauthorized the application."},
                }));
                deliver::emit(self, &m, "SELLER_DEAUTHORIZATION", body);
            }
            Marketplace::Ebay => {
                if let Some((kind, body)) =
                    ebay::account_event(&mut m, s, "AUTHORIZATION_REVOCATION")
                {
                    deliver::emit(self, &m, &kind, body);
                }
            }
            // Amazon sends no deauthorization event: refresh answers invalid_grant.
            Marketplace::Amazon => {}
        }
        Ok(())
    }

    pub fn reauthorize(&self, seller_id: &str) -> Result<String, SandboxError> {
        let mut m = self.lock();
        let s = seller_index(self, &m, seller_id)?;
        m.reauthorize(s).ok_or_else(|| SandboxError::UnknownSeller {
            marketplace: self.marketplace,
            seller_id: seller_id.to_owned(),
        })
    }

    pub fn authorization_expiring(
        &self,
        seller_id: &str,
        expires_at_ms: i64,
    ) -> Result<(), SandboxError> {
        let m = self.lock();
        seller_index(self, &m, seller_id)?;
        let body = deliver::compact(&json!({
            "type": 7, "shop_id": seller_id, "timestamp": now_ms() / 1000,
            "data": {"message": "The authorization of this shop will expire soon. Please ask the seller to re-authorize.", "expiration_time": expires_at_ms / 1000},
        }));
        deliver::emit(self, &m, "UPCOMING_AUTHORIZATION_EXPIRATION", body);
        Ok(())
    }

    pub fn account_deletion(&self, seller_id: &str) -> Result<(), SandboxError> {
        let mut m = self.lock();
        let s = seller_index(self, &m, seller_id)?;
        if let Some((kind, body)) = ebay::account_event(&mut m, s, "MARKETPLACE_ACCOUNT_DELETION") {
            deliver::emit(self, &m, &kind, body);
        }
        Ok(())
    }

    pub fn auth_code(&self, seller_id: &str) -> Result<String, SandboxError> {
        let mut m = self.lock();
        let s = seller_index(self, &m, seller_id)?;
        Ok(m.issue_code(s, now_ms(), 5 * 60 * 1000))
    }

    pub fn expire_tokens(&self) {
        let mut m = self.lock();
        let past = now_ms() - 1;
        for t in m.tokens.values_mut() {
            t.expires_ms = past;
        }
    }

    pub fn set_webhook(self: &Arc<Self>, url: Option<String>) {
        let mut m = self.lock();
        m.webhook = url.clone();
        m.ebay_verified = false;
        if self.marketplace == Marketplace::Ebay
            && let Some(u) = url
        {
            deliver::send_challenge(self, &mut m, &u);
        }
    }

    pub fn listings(&self) -> Vec<ListingState> {
        let m = self.lock();
        let today = crate::util::utc_day(now_ms());
        m.listings
            .iter()
            .map(|l| ListingState {
                marketplace: self.marketplace,
                seller_id: m
                    .sellers
                    .get(l.seller)
                    .map(|s| s.id.clone())
                    .unwrap_or_default(),
                sku: l.sku.clone(),
                quantity: l.quantity,
                title: l.title.clone(),
                product_id: l.product_id.clone(),
                sku_id: l.sku_id.clone(),
                warehouse_id: l.warehouse_id.clone(),
                product_type: l.product_type.clone(),
                asin: l.asin.clone(),
                offer_id: l.offer_id.clone(),
                listing_id: l.listing_id.clone(),
                revisions_today: if l.revision_day == today {
                    l.revisions
                } else {
                    0
                },
                updated_ms: l.updated_ms,
            })
            .collect()
    }

    pub fn orders(&self) -> Vec<OrderSummary> {
        let m = self.lock();
        m.orders
            .iter()
            .map(|o| OrderSummary {
                marketplace: self.marketplace,
                order_id: o.id.clone(),
                seller_id: m
                    .sellers
                    .get(o.seller)
                    .map(|s| s.id.clone())
                    .unwrap_or_default(),
                state: o.state,
                created_ms: o.created_ms,
                updated_ms: o.updated_ms,
                lines: o
                    .lines
                    .iter()
                    .map(|l| {
                        (
                            m.listings
                                .get(l.listing)
                                .map(|x| x.sku.clone())
                                .unwrap_or_default(),
                            l.quantity,
                        )
                    })
                    .collect(),
            })
            .collect()
    }

    pub fn set_quantity(
        &self,
        seller_id: &str,
        sku: &str,
        quantity: u32,
    ) -> Result<(), SandboxError> {
        let mut m = self.lock();
        let s = seller_index(self, &m, seller_id)?;
        let li = m.listing(s, sku).ok_or_else(|| SandboxError::UnknownSku {
            marketplace: self.marketplace,
            sku: sku.to_owned(),
        })?;
        let now = now_ms();
        if let Some(l) = m.listings.get_mut(li) {
            l.quantity = quantity;
            l.updated_ms = now;
            m.qty_history
                .record(li, now, quantity, crate::qty_history::QtySource::Direct);
        }
        Ok(())
    }

    pub fn set_product_type(
        &self,
        seller_id: &str,
        sku: &str,
        product_type: &str,
    ) -> Result<(), SandboxError> {
        let mut m = self.lock();
        let s = seller_index(self, &m, seller_id)?;
        let li = m.listing(s, sku).ok_or_else(|| SandboxError::UnknownSku {
            marketplace: self.marketplace,
            sku: sku.to_owned(),
        })?;
        if let Some(l) = m.listings.get_mut(li) {
            l.product_type = product_type.to_owned();
        }
        Ok(())
    }
}

// ---- HTTP ----

pub(crate) async fn loopback_only(req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if !peer.is_some_and(|p| p.ip().is_loopback()) {
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": "the sandbox admin routes answer loopback clients only"}),
        );
    }
    next.run(req).await
}

fn bad(msg: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": msg }))
}

fn from_error(e: SandboxError) -> Response {
    let status = match e {
        SandboxError::UnknownSeller { .. }
        | SandboxError::UnknownOrder { .. }
        | SandboxError::UnknownSku { .. } => StatusCode::NOT_FOUND,
        SandboxError::InvalidTransition(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json_response(status, &json!({ "error": e.to_string() }))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad(&format!("invalid JSON body: {e}")))
}

async fn get_faults(State(sim): State<Arc<Sim>>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::to_value(sim.faults()).unwrap_or(Value::Null),
    )
}

async fn put_faults(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    match parse::<Faults>(&body) {
        Ok(f) => {
            sim.set_faults(f.clone());
            json_response(
                StatusCode::OK,
                &serde_json::to_value(f).unwrap_or(Value::Null),
            )
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct Generate {
    count: usize,
}

async fn post_orders(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    match parse::<Generate>(&body) {
        Ok(g) if g.count <= 100_000 => {
            json_response(StatusCode::OK, &json!({"order_ids": sim.generate(g.count)}))
        }
        Ok(_) => bad("count must be at most 100000"),
        Err(r) => r,
    }
}

async fn get_orders(State(sim): State<Arc<Sim>>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::to_value(sim.orders()).unwrap_or(Value::Null),
    )
}

#[derive(Deserialize)]
struct Advance {
    action: OrderAction,
}

async fn post_advance(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match parse::<Advance>(&body) {
        Ok(a) => match sim.advance(&id, a.action) {
            Ok(state) => json_response(StatusCode::OK, &json!({"order_id": id, "state": state})),
            Err(e) => from_error(e),
        },
        Err(r) => r,
    }
}

/// `POST /_sandbox/orders/{id}/returns` (Amazon): `{"sku", "quantity", "status",
/// "delivered"}`; without `sku`, every unit of the order; `status` defaults to
/// `Approved`, `delivered` to true.
#[derive(Deserialize)]
struct NewReturn {
    sku: Option<String>,
    quantity: Option<u32>,
    status: Option<String>,
    delivered: Option<bool>,
}

async fn post_return(State(sim): State<Arc<Sim>>, Path(id): Path<String>, body: Bytes) -> Response {
    if sim.marketplace != Marketplace::Amazon {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "returns are made this way on Amazon only"}),
        );
    }
    match parse::<NewReturn>(&body) {
        Ok(r) => match sim.amazon_return(
            &id,
            r.sku.as_deref(),
            r.quantity,
            r.status.as_deref().unwrap_or("Approved"),
            r.delivered.unwrap_or(true),
        ) {
            Ok(()) => json_response(StatusCode::CREATED, &json!({"order_id": id})),
            Err(e) => from_error(e),
        },
        Err(r) => r,
    }
}

async fn post_returns_arrive(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    if sim.marketplace != Marketplace::Amazon {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "returns are made this way on Amazon only"}),
        );
    }
    match sim.amazon_returns_arrive(&id) {
        Ok(n) => json_response(StatusCode::OK, &json!({"order_id": id, "arrived": n})),
        Err(e) => from_error(e),
    }
}

#[derive(Deserialize)]
struct AdvanceRandom {
    count: usize,
}

async fn post_advance_random(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    match parse::<AdvanceRandom>(&body) {
        Ok(a) => json_response(
            StatusCode::OK,
            &json!({"order_ids": sim.advance_random(a.count)}),
        ),
        Err(r) => r,
    }
}

async fn get_listings(State(sim): State<Arc<Sim>>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::to_value(sim.listings()).unwrap_or(Value::Null),
    )
}

#[derive(Deserialize)]
struct Quantity {
    quantity: u32,
}

async fn put_listing(
    State(sim): State<Arc<Sim>>,
    Path((seller, sku)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    match parse::<Quantity>(&body) {
        Ok(q) => match sim.set_quantity(&seller, &sku, q.quantity) {
            Ok(()) => json_response(
                StatusCode::OK,
                &json!({"seller_id": seller, "sku": sku, "quantity": q.quantity}),
            ),
            Err(e) => from_error(e),
        },
        Err(r) => r,
    }
}

async fn get_deliveries(State(sim): State<Arc<Sim>>) -> Response {
    let list: Vec<Value> = sim
        .outbox
        .deliveries()
        .into_iter()
        .filter(|d| d.marketplace == sim.marketplace)
        .map(|d| {
            json!({"kind": d.kind, "url": d.url, "status": d.status, "attempts": d.attempts,
                   "error": d.error, "body": d.body, "at_ms": d.at_ms, "ok": d.ok()})
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(list))
}

/// The delivery counters (all marketplaces share one outbox).
async fn get_delivery_stats(State(sim): State<Arc<Sim>>) -> Response {
    json_response(StatusCode::OK, &json!(sim.outbox.stats()))
}

#[derive(Deserialize)]
struct SellerRef {
    seller_id: String,
}

async fn post_revoke(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    match parse::<SellerRef>(&body) {
        Ok(s) => match sim.revoke(&s.seller_id) {
            Ok(()) => json_response(StatusCode::OK, &json!({"revoked": s.seller_id})),
            Err(e) => from_error(e),
        },
        Err(r) => r,
    }
}

async fn post_expire(State(sim): State<Arc<Sim>>) -> Response {
    sim.expire_tokens();
    json_response(StatusCode::OK, &json!({"expired": true}))
}

#[derive(Deserialize)]
struct Webhook {
    url: Option<String>,
}

async fn put_webhook(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    match parse::<Webhook>(&body) {
        Ok(w) => {
            if w.url.as_deref().is_some_and(|u| !u.starts_with("https://")) {
                return bad("the webhook url must be https://");
            }
            sim.set_webhook(w.url.clone());
            json_response(StatusCode::OK, &json!({"url": w.url}))
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct RateLimits {
    enabled: bool,
}

async fn put_rate_limits(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    match parse::<RateLimits>(&body) {
        Ok(r) => {
            sim.limiter.set_enabled(r.enabled);
            json_response(StatusCode::OK, &json!({"enabled": r.enabled}))
        }
        Err(r) => r,
    }
}

pub(crate) fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/_sandbox/faults", get(get_faults).put(put_faults))
        .route("/_sandbox/orders", get(get_orders).post(post_orders))
        .route("/_sandbox/orders/advance", post(post_advance_random))
        .route("/_sandbox/orders/{order_id}/returns", post(post_return))
        .route(
            "/_sandbox/orders/{order_id}/returns/arrive",
            post(post_returns_arrive),
        )
        .route("/_sandbox/orders/{order_id}/advance", post(post_advance))
        .route("/_sandbox/listings", get(get_listings))
        .route("/_sandbox/listings/{seller_id}/{sku}", put(put_listing))
        .route("/_sandbox/deliveries", get(get_deliveries))
        .route("/_sandbox/delivery-stats", get(get_delivery_stats))
        .route("/_sandbox/revoke", post(post_revoke))
        .route("/_sandbox/expire-tokens", post(post_expire))
        .route("/_sandbox/webhook", put(put_webhook))
        .route("/_sandbox/rate-limits", put(put_rate_limits))
        .layer(axum::middleware::from_fn(loopback_only))
        .with_state(sim)
}
