//! TikTok Shop connector (reference §2).

mod discover;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use http::Method;
use serde_json::json;
use stockade_core::SecretString;
use stockade_core::order::{Marketplace, Order};
// Signatures' timestamps and token expiries: the clock the processes share, the
// database's when this host's wall clock was stepped (stockade_core::clock).
use stockade_core::clock::now_ms;

use crate::events::{EventError, FreshnessWindow, InboundEvent, InboundRequest};
use crate::sign::tiktok_sign;
use crate::token::TokenCache;
use crate::transport::{HttpRequest, HttpResponse, SharedTransport};
use crate::util::{host_of, percent_encode, url_with_query};
use crate::{
    Connector, DiscoveredListing, ErrorKind, ListingRef, MarketError, OrderCursor, OrderPage,
    QuantityAck, QuantityUpdate, TokenInfo,
};

const TT: Marketplace = Marketplace::TikTok;

/// Operation names (rate buckets) and their conservative default limits.
pub const OPERATIONS: [&str; 7] = [
    "tiktok.token",
    "tiktok.products.search",
    "tiktok.orders.search",
    "tiktok.orders.get",
    "tiktok.returns.search",
    "tiktok.inventory.update",
    "tiktok.inventory.search",
];

/// Where and how to reach TikTok Shop.
#[derive(Debug, Clone, PartialEq)]
pub struct TikTokConfig {
    /// API host, `https://open-api.tiktokglobalshop.com` in production.
    pub api_base: String,
    /// Token host, `https://auth.tiktok-shops.com` in production.
    pub auth_base: String,
    /// The shop's cipher (from `GET /authorization/202309/shops`), sent on shop calls.
    pub shop_cipher: Option<String>,
    /// The shop id: the rate-limit partition and the account webhooks name.
    pub shop_id: Option<String>,
    /// Orders per search page (1–100).
    pub page_size: u32,
    /// `grant_type` sent on refresh (`refresh_token`; the official SDK sends
    /// `authorized_code`).
    pub refresh_grant_type: String,
    /// Client-side rate per shop and operation (requests/s, burst).
    pub rate: (f64, u32),
    /// SKUs per inventory call.
    pub inventory_batch: usize,
    /// How old (and how far ahead) a webhook's signed `timestamp` may be. TikTok Shop
    /// documents no window; 15 minutes old and 5 minutes ahead by default.
    pub webhook_window: FreshnessWindow,
}

impl Default for TikTokConfig {
    fn default() -> Self {
        TikTokConfig {
            api_base: "https://open-api.tiktokglobalshop.com".into(),
            auth_base: "https://auth.tiktok-shops.com".into(),
            shop_cipher: None,
            shop_id: None,
            page_size: 100,
            refresh_grant_type: "refresh_token".into(),
            rate: (10.0, 10),
            inventory_batch: 100,
            webhook_window: FreshnessWindow {
                max_age_s: 15 * 60,
                max_ahead_s: 5 * 60,
            },
        }
    }
}

impl TikTokConfig {
    /// Production defaults with other base URLs (a sandbox).
    pub fn with_base_urls(api_base: impl Into<String>, auth_base: impl Into<String>) -> Self {
        TikTokConfig {
            api_base: api_base.into(),
            auth_base: auth_base.into(),
            ..TikTokConfig::default()
        }
    }

    /// The hosts this configuration talks to (for the egress allowlist).
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = [&self.api_base, &self.auth_base]
            .into_iter()
            .filter_map(|u| host_of(u))
            .collect();
        hosts.dedup();
        hosts
    }

    fn partition(&self) -> String {
        self.shop_id
            .clone()
            .or_else(|| self.shop_cipher.clone())
            .unwrap_or_else(|| "default".into())
    }
}

/// A TikTok Shop app's credentials for one shop.
#[derive(Debug, Clone)]
pub struct TikTokCredentials {
    pub app_key: String,
    pub app_secret: SecretString,
    pub refresh_token: SecretString,
}

impl TikTokCredentials {
    /// From the vault: `connection/<name>/app_key`, `…/app_secret`, `…/refresh_token`.
    #[cfg(feature = "vault")]
    pub async fn from_vault(
        vault: &stockade_vault::Vault,
        connection: &str,
    ) -> Result<Self, stockade_vault::VaultError> {
        Ok(TikTokCredentials {
            app_key: crate::creds::read_plain(vault, connection, "app_key").await?,
            app_secret: crate::creds::read(vault, connection, "app_secret").await?,
            refresh_token: crate::creds::read(vault, connection, "refresh_token").await?,
        })
    }
}

/// The TikTok Shop connector.
pub struct TikTokConnector {
    config: TikTokConfig,
    app_key: String,
    app_secret: SecretString,
    tokens: TokenCache,
    transport: SharedTransport,
}

impl fmt::Debug for TikTokConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TikTokConnector")
            .field("api_base", &self.config.api_base)
            .field("shop_id", &self.config.shop_id)
            .finish_non_exhaustive()
    }
}

impl TikTokConnector {
    pub(crate) fn with_transport(
        config: TikTokConfig,
        credentials: TikTokCredentials,
        transport: SharedTransport,
    ) -> Self {
        TikTokConnector {
            config,
            app_key: credentials.app_key,
            app_secret: credentials.app_secret,
            tokens: TokenCache::new(credentials.refresh_token),
            transport,
        }
    }

    /// The configuration in use.
    /// The app this connection's credentials belong to (its app key): webhooks signed
    /// with this app's secret may act only on connections of the same app.
    pub fn app_id(&self) -> &str {
        &self.app_key
    }

    pub fn config(&self) -> &TikTokConfig {
        &self.config
    }

    /// A refresh token the marketplace rotated during an automatic refresh, not yet
    /// collected: store it in the vault.
    pub fn take_rotated_refresh_token(&self) -> Option<SecretString> {
        self.tokens.take_rotated()
    }

    /// Build a signed request: `app_key`, `timestamp`, `shop_cipher` (shop calls) and
    /// `sign` added to the query; the access token in `x-tts-access-token`.
    #[allow(clippy::too_many_arguments)]
    fn signed(
        &self,
        method: Method,
        path: &str,
        template: &'static str,
        operation: &'static str,
        mut query: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
        token: &SecretString,
    ) -> HttpRequest {
        query.push(("app_key", self.app_key.clone()));
        query.push(("timestamp", now_ms().div_euclid(1000).to_string()));
        if let Some(cipher) = &self.config.shop_cipher {
            query.push(("shop_cipher", cipher.clone()));
        }
        let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let signed_body = if method == Method::GET {
            None
        } else {
            body.as_deref()
        };
        let sign = tiktok_sign(self.app_secret.expose_secret(), path, &pairs, signed_body);
        let mut pairs = pairs;
        pairs.push(("sign", &sign));
        let url = url_with_query(&self.config.api_base, path, &pairs);
        let mut req = HttpRequest::new(method, url, template, operation)
            .secret_header("x-tts-access-token", token.clone())
            .partition(self.config.partition());
        req = match body {
            Some(b) => req.json_bytes(b),
            None => req.header("content-type", "application/json"),
        };
        req
    }

    async fn access_token(&self) -> Result<SecretString, MarketError> {
        if let Some(t) = self.tokens.current() {
            return Ok(t);
        }
        let _guard = self.tokens.refreshing.lock().await;
        if let Some(t) = self.tokens.current() {
            return Ok(t);
        }
        self.do_refresh().await?;
        self.tokens.current().ok_or_else(|| {
            MarketError::new(
                TT,
                ErrorKind::Auth,
                "the new access token is already expired",
            )
        })
    }

    async fn do_refresh(&self) -> Result<TokenInfo, MarketError> {
        let refresh = self.tokens.refresh_token();
        let url = url_with_query(
            &self.config.auth_base,
            "/api/v2/token/refresh",
            &[
                ("app_key", &self.app_key),
                ("app_secret", self.app_secret.expose_secret()),
                ("refresh_token", refresh.expose_secret()),
                ("grant_type", &self.config.refresh_grant_type),
            ],
        );
        let req = HttpRequest::new(Method::GET, url, "/api/v2/token/refresh", "tiktok.token")
            .partition(self.config.partition());
        let resp = self.transport.send(TT, req).await?;
        let token: wire::TokenData =
            wire::required(wire::check_response(resp.status, &resp.body)?)?;
        if token.access_token.is_empty() {
            return Err(MarketError::malformed(
                TT,
                "the token answer has no access_token",
            ));
        }
        let expires_at_ms = wire::expiry_ms(token.access_token_expire_in, now_ms());
        self.tokens
            .store(SecretString::from(token.access_token), expires_at_ms);
        let rotated = self.tokens.rotate(token.refresh_token.as_deref());
        Ok(TokenInfo {
            expires_at_ms,
            rotated_refresh_token: rotated,
        })
    }

    /// Send a signed call, refreshing the token once if TikTok says it is invalid or
    /// expired. Returns the envelope's `data` decoded into `T` (`None` when absent).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        build: impl Fn(&SecretString) -> HttpRequest + Send + Sync,
    ) -> Result<Option<T>, MarketError> {
        let token = self.access_token().await?;
        let resp = self.transport.send(TT, build(&token)).await?;
        match check(&resp) {
            Err(e) if is_token_error(&e) => {
                self.tokens.invalidate();
                let token = self.access_token().await?;
                let resp = self.transport.send(TT, build(&token)).await?;
                check(&resp)
            }
            other => other,
        }
    }

    async fn update_product(
        &self,
        product_id: &str,
        updates: &[&QuantityUpdate],
    ) -> Result<Vec<Option<MarketError>>, MarketError> {
        let skus: Vec<serde_json::Value> = updates
            .iter()
            .map(|u| {
                let sku_id = u.listing.variant_id.clone().unwrap_or_default();
                let inventory: Vec<serde_json::Value> = if u.listing.warehouse_ids.is_empty() {
                    vec![json!({ "quantity": u.quantity })]
                } else {
                    // The absolute quantity goes to the first warehouse; the others
                    // (which TikTok requires to be listed) are set to zero.
                    u.listing
                        .warehouse_ids
                        .iter()
                        .enumerate()
                        .map(|(i, w)| {
                            json!({ "warehouse_id": w, "quantity": if i == 0 { u.quantity } else { 0 } })
                        })
                        .collect()
                };
                json!({ "id": sku_id, "inventory": inventory })
            })
            .collect();
        let body = serde_json::to_vec(&json!({ "skus": skus }))
            .map_err(|_| MarketError::malformed(TT, "could not encode the inventory body"))?;
        let path = format!(
            "/product/202309/products/{}/inventory/update",
            percent_encode(product_id)
        );
        let data = self
            .call(|t| {
                self.signed(
                    Method::POST,
                    &path,
                    "/product/202309/products/{product_id}/inventory/update",
                    "tiktok.inventory.update",
                    Vec::new(),
                    Some(body.clone()),
                    t,
                )
                .idempotent(true)
            })
            .await?;
        let parsed: wire::InventoryUpdateData = data.unwrap_or_default();
        let mut out = vec![None; updates.len()];
        for err in parsed.errors {
            let e = MarketError::new(TT, ErrorKind::Invalid, &err.message)
                .with_code(err.code.unwrap_or_default());
            match err.detail.and_then(|d| d.sku_id) {
                Some(sku_id) => {
                    for (i, u) in updates.iter().enumerate() {
                        if u.listing.variant_id.as_deref() == Some(sku_id.as_str()) {
                            out[i] = Some(e.clone());
                        }
                    }
                }
                None => out.iter_mut().for_each(|slot| *slot = Some(e.clone())),
            }
        }
        Ok(out)
    }

    /// Get Order Detail (`GET /order/202309/orders?ids=a,b`, at most 50 ids): the orders
    /// TikTok found, unknown ids simply missing.
    async fn order_detail(&self, ids: String) -> Result<Vec<wire::TtOrder>, MarketError> {
        let data = self
            .call(|t| {
                self.signed(
                    Method::GET,
                    "/order/202309/orders",
                    "/order/202309/orders",
                    "tiktok.orders.get",
                    vec![("ids", ids.clone())],
                    None,
                    t,
                )
            })
            .await?;
        let list: wire::OrderList = wire::required(data)?;
        Ok(list.orders)
    }

    /// Search Returns (`POST /return_refund/202309/returns/search`): every page of the
    /// returns updated since `since_ms`, or of the given orders.
    async fn search_returns(
        &self,
        since_ms: Option<i64>,
        order_ids: &[String],
    ) -> Result<Vec<wire::TtReturn>, MarketError> {
        let mut body = serde_json::Map::new();
        if let Some(since) = since_ms {
            body.insert("update_time_ge".into(), since.div_euclid(1000).into());
        }
        if !order_ids.is_empty() {
            body.insert("order_ids".into(), order_ids.into());
        }
        let bytes = serde_json::to_vec(&body)
            .map_err(|_| MarketError::malformed(TT, "could not encode the returns search"))?;
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..crate::MAX_PAGES {
            let mut query = vec![
                ("page_size", "50".to_owned()),
                ("sort_field", "update_time".to_owned()),
                ("sort_order", "ASC".to_owned()),
            ];
            if let Some(p) = &page {
                query.push(("page_token", p.clone()));
            }
            let data = self
                .call(|t| {
                    self.signed(
                        Method::POST,
                        "/return_refund/202309/returns/search",
                        "/return_refund/202309/returns/search",
                        "tiktok.returns.search",
                        query.clone(),
                        Some(bytes.clone()),
                        t,
                    )
                    .idempotent(true)
                })
                .await?;
            let list: wire::ReturnList = data.unwrap_or_default();
            out.extend(list.return_orders);
            match list.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) if page.as_deref() != Some(next.as_str()) => page = Some(next),
                Some(_) => {
                    return Err(MarketError::malformed(
                        TT,
                        "the marketplace returned the same next-page marker twice",
                    ));
                }
                None => return Ok(out),
            }
        }
        Err(MarketError::malformed(TT, "too many pages of returns"))
    }

    async fn search_inventory(
        &self,
        body: serde_json::Value,
    ) -> Result<wire::InventorySearchData, MarketError> {
        let bytes = serde_json::to_vec(&body)
            .map_err(|_| MarketError::malformed(TT, "could not encode the inventory search"))?;
        let data = self
            .call(|t| {
                self.signed(
                    Method::POST,
                    "/product/202309/inventory/search",
                    "/product/202309/inventory/search",
                    "tiktok.inventory.search",
                    Vec::new(),
                    Some(bytes.clone()),
                    t,
                )
                .idempotent(true)
            })
            .await?;
        Ok(data.unwrap_or_default())
    }
}

/// Get Order Detail calls one [`Connector::get_orders`] keeps in flight; the gateway's
/// per-shop bucket still paces them.
const ORDER_FETCH_CONCURRENCY: usize = 4;

fn check<T: serde::de::DeserializeOwned>(resp: &HttpResponse) -> Result<Option<T>, MarketError> {
    wire::check_response(resp.status, &resp.body)
}

fn is_token_error(e: &MarketError) -> bool {
    e.kind == ErrorKind::Auth
        && e.code
            .as_deref()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|c| c != wire::CODE_BAD_SIGN)
}

impl Connector for TikTokConnector {
    fn marketplace(&self) -> Marketplace {
        TT
    }

    async fn refresh_token(&self) -> Result<TokenInfo, MarketError> {
        let _guard = self.tokens.refreshing.lock().await;
        self.do_refresh().await
    }

    async fn list_orders(&self, cursor: &OrderCursor) -> Result<OrderPage, MarketError> {
        let mut query = vec![
            ("page_size", self.config.page_size.clamp(1, 100).to_string()),
            ("sort_field", "update_time".to_owned()),
            ("sort_order", "ASC".to_owned()),
        ];
        if let Some(page) = &cursor.page {
            query.push(("page_token", page.clone()));
        }
        let body =
            serde_json::to_vec(&json!({ "update_time_ge": cursor.since_ms.div_euclid(1000) }))
                .map_err(|_| MarketError::malformed(TT, "could not encode the search body"))?;
        let data = self
            .call(|t| {
                self.signed(
                    Method::POST,
                    "/order/202309/orders/search",
                    "/order/202309/orders/search",
                    "tiktok.orders.search",
                    query.clone(),
                    Some(body.clone()),
                    t,
                )
                .idempotent(true)
            })
            .await?;
        let list: wire::OrderList = wire::required(data)?;
        let orders: Vec<Order> = list
            .orders
            .into_iter()
            .map(wire::TtOrder::into_order)
            .collect();
        let high_water_ms = orders
            .iter()
            .map(|o| o.updated_at_ms)
            .fold(cursor.since_ms, i64::max);
        Ok(OrderPage {
            orders,
            next: list.next_page_token.filter(|t| !t.is_empty()),
            high_water_ms,
        })
    }

    async fn get_order(&self, id: &str) -> Result<Order, MarketError> {
        self.order_detail(id.to_owned())
            .await?
            .into_iter()
            .find(|o| o.id == id)
            .map(wire::TtOrder::into_order)
            .ok_or_else(|| MarketError::new(TT, ErrorKind::NotFound, "no such order"))
    }

    /// Get Order Detail with up to 50 ids a call, a few calls in flight.
    async fn get_orders(&self, ids: &[String]) -> Result<Vec<Order>, MarketError> {
        let wanted = crate::batch_ids(ids);
        // Collected first: a lazy `map` held across the await trips the Send check.
        let calls: Vec<_> = wanted
            .chunks(crate::MAX_IDS_PER_CALL)
            .map(|chunk| async move {
                let found = self.order_detail(chunk.join(",")).await?;
                // Only what was asked for, as `get_order` does.
                Ok(found
                    .into_iter()
                    .filter(|o| chunk.contains(&o.id.as_str()))
                    .map(wire::TtOrder::into_order)
                    .collect::<Vec<Order>>())
            })
            .collect();
        let pages = crate::try_join_bounded(calls, ORDER_FETCH_CONCURRENCY).await?;
        Ok(pages.into_iter().flatten().collect())
    }

    /// Orders with a return that brought goods back (TikTok keeps the order `COMPLETED`
    /// and reports returns in its Return & Refund API), as returned orders.
    async fn returned_orders(
        &self,
        since_ms: Option<i64>,
        order_ids: &[String],
    ) -> Result<Vec<Order>, MarketError> {
        let returns = self.search_returns(since_ms, order_ids).await?;
        let mut by_order: BTreeMap<&str, Vec<&wire::TtReturn>> = BTreeMap::new();
        for r in returns.iter().filter(|r| r.restocks()) {
            if let Some(id) = r.order_id.as_deref().filter(|id| !id.is_empty()) {
                by_order.entry(id).or_default().push(r);
            }
        }
        if by_order.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = by_order.keys().map(|s| (*s).to_owned()).collect();
        let orders = self.get_orders(&ids).await?;
        Ok(orders
            .into_iter()
            .filter_map(|o| {
                let rs = by_order.get(o.external_id.as_str())?;
                Some(wire::returned_order(o, rs))
            })
            .collect())
    }

    /// One inventory call per product within the shop's rate.
    fn push_paths(&self) -> crate::PushPaths {
        crate::PushPaths {
            calls_per_s: self.config.rate.0,
            ..crate::PushPaths::default()
        }
    }

    async fn set_quantities(
        &self,
        updates: &[QuantityUpdate],
    ) -> Result<Vec<QuantityAck>, MarketError> {
        let mut acks: Vec<Option<QuantityAck>> = vec![None; updates.len()];
        // Products in the order of their first update (zeros and low stock come first).
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (i, u) in updates.iter().enumerate() {
            match (&u.listing.product_id, &u.listing.variant_id) {
                (Some(p), Some(_)) if !p.is_empty() => {
                    let g = *group_of.entry(p.as_str()).or_insert_with(|| {
                        groups.push((p.as_str(), Vec::new()));
                        groups.len() - 1
                    });
                    if let Some((_, indices)) = groups.get_mut(g) {
                        indices.push(i);
                    }
                }
                _ => {
                    acks[i] = Some(QuantityAck::failed(
                        u,
                        MarketError::new(
                            TT,
                            ErrorKind::Invalid,
                            "the listing needs product_id and variant_id (sku_id)",
                        ),
                    ));
                }
            }
        }
        // One call per product (per chunk of its SKUs), a few in flight; the chunks of one
        // product never overlap.
        let chunks: Vec<(&str, &[usize])> = groups
            .iter()
            .flat_map(|(product_id, indices)| {
                indices
                    .chunks(self.config.inventory_batch.max(1))
                    .map(move |chunk| (*product_id, chunk))
            })
            .collect();
        let calls: Vec<_> = chunks
            .iter()
            .map(|&(product_id, chunk)| {
                let batch: Vec<&QuantityUpdate> = chunk.iter().map(|&i| &updates[i]).collect();
                (vec![product_id], async move {
                    self.update_product(product_id, &batch).await
                })
            })
            .collect();
        let results = crate::fan_out::in_order(
            TT,
            calls,
            self.transport.round_calls(crate::PUSH_CONCURRENCY),
        )
        .await;
        for (&(_, chunk), result) in chunks.iter().zip(results) {
            match result {
                Ok(errors) => {
                    for (&i, err) in chunk.iter().zip(errors) {
                        acks[i] = Some(match err {
                            None => QuantityAck::ok(&updates[i]),
                            Some(e) => QuantityAck::failed(&updates[i], e),
                        });
                    }
                }
                Err(e) => {
                    for &i in chunk {
                        acks[i] = Some(QuantityAck::failed(&updates[i], e.clone()));
                    }
                }
            }
        }
        Ok(acks
            .into_iter()
            .zip(updates)
            .map(|(a, u)| {
                a.unwrap_or_else(|| {
                    QuantityAck::failed(u, MarketError::new(TT, ErrorKind::Invalid, "not sent"))
                })
            })
            .collect())
    }

    async fn get_quantities(
        &self,
        listings: &[ListingRef],
    ) -> Result<Vec<(String, u32)>, MarketError> {
        let sku_ids: Vec<&str> = listings
            .iter()
            .filter_map(|l| l.variant_id.as_deref())
            .collect();
        let product_ids: Vec<&str> = listings
            .iter()
            .filter(|l| l.variant_id.is_none())
            .filter_map(|l| l.product_id.as_deref())
            .collect();
        let mut found: Vec<wire::InventorySku> = Vec::new();
        for chunk in sku_ids.chunks(self.config.inventory_batch.max(1)) {
            let data = self.search_inventory(json!({ "sku_ids": chunk })).await?;
            found.extend(data.inventory.into_iter().flat_map(|p| p.skus));
        }
        for chunk in product_ids.chunks(self.config.inventory_batch.max(1)) {
            let data = self
                .search_inventory(json!({ "product_ids": chunk }))
                .await?;
            found.extend(data.inventory.into_iter().flat_map(|p| p.skus));
        }
        Ok(listings
            .iter()
            .filter_map(|l| {
                let hit = match &l.variant_id {
                    Some(v) => found.iter().find(|s| &s.id == v),
                    None => found
                        .iter()
                        .find(|s| s.seller_sku.as_deref() == Some(l.sku.as_str())),
                }?;
                Some((l.sku.clone(), hit.available()))
            })
            .collect())
    }

    async fn discover_listings(&self) -> Result<Vec<DiscoveredListing>, MarketError> {
        self.discover().await
    }

    async fn verify_event(&self, request: &InboundRequest) -> Result<InboundEvent, EventError> {
        if request.method != Method::POST {
            return Err(EventError::MethodNotAllowed(request.method.to_string()));
        }
        wire::verify_fresh_webhook(
            &self.app_key,
            self.app_secret.expose_secret(),
            request.header("authorization"),
            &request.body,
            &self.config.webhook_window,
            now_ms().div_euclid(1000),
        )
    }
}
