//! eBay connector (reference §3): OAuth refresh, Fulfillment orders, Inventory bulk
//! quantity updates with the daily revision cap, signed notifications and the endpoint
//! challenge.

mod discover;
pub mod wire;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use http::Method;
use serde_json::{Value, json};
use stockade_core::SecretString;
use stockade_core::order::{Marketplace, Order};
// Signatures' timestamps and token expiries: the clock the processes share, the
// database's when this host's wall clock was stepped (stockade_core::clock).
use stockade_core::clock::now_ms;
use stockade_core::time::format_rfc3339_ms;

use crate::events::{EventError, InboundEvent, InboundRequest, check_body_size};
use crate::sign::{EbayDigest, EbayPublicKey, ebay_challenge_body, parse_ebay_signature_header};
use crate::token::TokenCache;
use crate::transport::{HttpRequest, HttpResponse, SharedTransport};
use crate::util::{host_of, percent_encode, query_param, url_with_query};
use crate::{
    Connector, DiscoveredListing, ErrorKind, ListingRef, MarketError, OrderCursor, OrderPage,
    QuantityAck, QuantityUpdate, TokenInfo,
};

const EBAY: Marketplace = Marketplace::Ebay;

/// Operation names (rate buckets).
pub const OPERATIONS: [&str; 9] = [
    "ebay.token",
    "ebay.inventory.items",
    "ebay.orders.search",
    "ebay.orders.get",
    "ebay.inventory.bulk_update",
    "ebay.inventory.offers",
    "ebay.inventory.item",
    "ebay.notification.public_key",
    "ebay.token.app",
];

/// The one rate bucket every eBay operation draws from, per application.
pub const APP_BUCKET: &str = "ebay.app";

/// getOrders calls one [`Connector::get_orders`] keeps in flight.
const ORDER_FETCH_CONCURRENCY: usize = 4;

/// The daily quota name for listing revisions (250 per listing per UTC day).
pub const REVISION_QUOTA: &str = "ebay.listing_revisions";

/// The scope of application tokens (notification public keys).
pub const APP_SCOPE: &str = "https://api.ebay.com/oauth/api_scope";

/// Where and how to reach eBay for one seller.
#[derive(Debug, Clone, PartialEq)]
pub struct EbayConfig {
    /// `https://api.ebay.com` in production.
    pub api_base: String,
    /// `https://api.ebay.com/identity/v1/oauth2/token` in production.
    pub token_url: String,
    /// Scopes requested on refresh (a subset of the granted ones).
    pub scopes: Vec<String>,
    /// Orders per page (1–200).
    pub page_size: u32,
    /// Sent as `X-EBAY-C-MARKETPLACE-ID` when set (unconfirmed whether needed).
    pub marketplace_id: Option<String>,
    /// The notification endpoint URL exactly as registered (for the challenge hash).
    pub endpoint_url: Option<String>,
    /// How long a fetched notification public key is trusted.
    pub key_cache_ttl: Duration,
    /// Revisions per listing per UTC day.
    pub daily_revision_limit: u32,
    /// Client-side rate of the application, all operations and sellers together
    /// (requests/s, burst): eBay counts calls per application.
    pub rate: (f64, u32),
    /// The seller's user id (the daily revision count is kept per seller and SKU).
    pub account: String,
}

impl Default for EbayConfig {
    fn default() -> Self {
        EbayConfig {
            api_base: "https://api.ebay.com".into(),
            token_url: "https://api.ebay.com/identity/v1/oauth2/token".into(),
            scopes: vec![
                "https://api.ebay.com/oauth/api_scope/sell.fulfillment".into(),
                "https://api.ebay.com/oauth/api_scope/sell.inventory".into(),
            ],
            page_size: 200,
            marketplace_id: None,
            endpoint_url: None,
            key_cache_ttl: Duration::from_secs(3600),
            daily_revision_limit: 250,
            rate: (25.0, 50),
            account: "default".into(),
        }
    }
}

impl EbayConfig {
    /// Defaults against another API host (a sandbox); the token endpoint is on it.
    pub fn with_base_url(api_base: impl Into<String>) -> Self {
        let api_base: String = api_base.into();
        let token_url = format!(
            "{}/identity/v1/oauth2/token",
            api_base.trim_end_matches('/')
        );
        EbayConfig {
            api_base,
            token_url,
            ..EbayConfig::default()
        }
    }

    /// The hosts this configuration talks to (for the egress allowlist).
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = [&self.api_base, &self.token_url]
            .into_iter()
            .filter_map(|u| host_of(u))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// An eBay app's credentials for one seller.
#[derive(Debug, Clone)]
pub struct EbayCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
    /// The verification token registered with the notification destination.
    pub verification_token: Option<SecretString>,
}

impl EbayCredentials {
    /// From the vault: `connection/<name>/client_id`, `…/client_secret`,
    /// `…/refresh_token`, and optionally `…/verification_token`.
    #[cfg(feature = "vault")]
    pub async fn from_vault(
        vault: &stockade_vault::Vault,
        connection: &str,
    ) -> Result<Self, stockade_vault::VaultError> {
        Ok(EbayCredentials {
            client_id: crate::creds::read_plain(vault, connection, "client_id").await?,
            client_secret: crate::creds::read(vault, connection, "client_secret").await?,
            refresh_token: crate::creds::read(vault, connection, "refresh_token").await?,
            verification_token: crate::creds::read_optional(
                vault,
                connection,
                "verification_token",
            )
            .await?,
        })
    }
}

/// The eBay connector.
pub struct EbayConnector {
    config: EbayConfig,
    client_id: String,
    basic_auth: SecretString,
    verification_token: Option<SecretString>,
    tokens: TokenCache,
    app_tokens: TokenCache,
    keys: Mutex<HashMap<String, CachedKey>>,
    /// Held while a key is fetched: notifications arrive concurrently, and the first
    /// to miss the cache fetches the key for all of them.
    key_fetch: tokio::sync::Mutex<()>,
    transport: SharedTransport,
}

impl fmt::Debug for EbayConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EbayConnector")
            .field("api_base", &self.config.api_base)
            .field("account", &self.config.account)
            .finish_non_exhaustive()
    }
}

/// A fetched public key, its digest and when it was fetched.
type CachedKey = (EbayPublicKey, Option<EbayDigest>, i64);

/// At most this many public keys are cached.
const MAX_CACHED_KEYS: usize = 64;

impl EbayConnector {
    /// The gateway's key of a listing's daily revision count: per seller and SKU.
    fn revision_key(&self, sku: &str) -> String {
        format!("{}/{}", self.config.account, sku)
    }

    pub(crate) fn with_transport(
        config: EbayConfig,
        credentials: EbayCredentials,
        transport: SharedTransport,
    ) -> Self {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            credentials.client_id,
            credentials.client_secret.expose_secret()
        ));
        EbayConnector {
            config,
            client_id: credentials.client_id.clone(),
            basic_auth: SecretString::from(format!("Basic {basic}")),
            verification_token: credentials.verification_token,
            tokens: TokenCache::new(credentials.refresh_token),
            app_tokens: TokenCache::new(SecretString::from(String::new())),
            keys: Mutex::new(HashMap::new()),
            key_fetch: tokio::sync::Mutex::new(()),
            transport,
        }
    }

    /// The configuration in use.
    /// The app this connection's credentials belong to (its OAuth client id).
    pub fn app_id(&self) -> &str {
        &self.client_id
    }

    pub fn config(&self) -> &EbayConfig {
        &self.config
    }

    /// A refresh token rotated during an automatic refresh, not yet collected.
    pub fn take_rotated_refresh_token(&self) -> Option<SecretString> {
        self.tokens.take_rotated()
    }

    async fn token_call(
        &self,
        form: &[(&str, &str)],
        operation: &'static str,
    ) -> Result<wire::OAuthToken, MarketError> {
        let req = HttpRequest::new(
            Method::POST,
            self.config.token_url.clone(),
            "/identity/v1/oauth2/token",
            operation,
        )
        .secret_header("authorization", self.basic_auth.clone())
        .form(form)
        .partition(self.client_id.clone())
        .idempotent(true);
        let resp = self.transport.send(EBAY, req).await?;
        if !resp.is_success() {
            return Err(wire::oauth_error(resp.status, &resp.body));
        }
        let token: wire::OAuthToken = wire::parse_ok(resp.status, &resp.body)?;
        if token.access_token.is_empty() {
            return Err(MarketError::malformed(
                EBAY,
                "the token answer has no access_token",
            ));
        }
        Ok(token)
    }

    async fn do_refresh(&self) -> Result<TokenInfo, MarketError> {
        let refresh = self.tokens.refresh_token();
        let scope = self.config.scopes.join(" ");
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose_secret().as_str()),
        ];
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let token = self.token_call(&form, "ebay.token").await?;
        let expires_at_ms = now_ms() + token.expires_in.unwrap_or(7200).max(1).saturating_mul(1000);
        self.tokens
            .store(SecretString::from(token.access_token), expires_at_ms);
        let rotated = self.tokens.rotate(token.refresh_token.as_deref());
        Ok(TokenInfo {
            expires_at_ms,
            rotated_refresh_token: rotated,
        })
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
                EBAY,
                ErrorKind::Auth,
                "the new access token is already expired",
            )
        })
    }

    async fn app_token(&self) -> Result<SecretString, MarketError> {
        if let Some(t) = self.app_tokens.current() {
            return Ok(t);
        }
        let _guard = self.app_tokens.refreshing.lock().await;
        if let Some(t) = self.app_tokens.current() {
            return Ok(t);
        }
        let token = self
            .token_call(
                &[("grant_type", "client_credentials"), ("scope", APP_SCOPE)],
                "ebay.token.app",
            )
            .await?;
        let expires_at_ms = now_ms() + token.expires_in.unwrap_or(7200).max(1).saturating_mul(1000);
        let access = SecretString::from(token.access_token);
        self.app_tokens.store(access.clone(), expires_at_ms);
        Ok(access)
    }

    fn api_request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        template: &'static str,
        operation: &'static str,
        token: &SecretString,
    ) -> HttpRequest {
        let mut req = HttpRequest::new(
            method,
            url_with_query(&self.config.api_base, path, query),
            template,
            operation,
        )
        .secret_header(
            "authorization",
            SecretString::from(format!("Bearer {}", token.expose_secret())),
        )
        .partition(self.client_id.clone());
        if let Some(m) = &self.config.marketplace_id {
            req = req.header("x-ebay-c-marketplace-id", m.clone());
        }
        req
    }

    /// Send a user-token call; on 401 refresh once and retry.
    async fn call(
        &self,
        build: impl Fn(&SecretString) -> HttpRequest + Send + Sync,
    ) -> Result<HttpResponse, MarketError> {
        let token = self.access_token().await?;
        let mut resp = self.transport.send(EBAY, build(&token)).await?;
        if resp.status == 401 {
            self.tokens.invalidate();
            let token = self.access_token().await?;
            resp = self.transport.send(EBAY, build(&token)).await?;
        }
        if resp.is_success() {
            Ok(resp)
        } else {
            Err(wire::api_error(resp.status, &resp.body))
        }
    }

    async fn offers_for(&self, sku: &str) -> Result<Vec<String>, MarketError> {
        let result = self
            .call(|t| {
                self.api_request(
                    Method::GET,
                    "/sell/inventory/v1/offer",
                    &[("sku", sku)],
                    "/sell/inventory/v1/offer",
                    "ebay.inventory.offers",
                    t,
                )
            })
            .await;
        match result {
            Ok(resp) => {
                let offers: wire::Offers = wire::parse_ok(resp.status, &resp.body)?;
                Ok(offers
                    .offers
                    .into_iter()
                    .map(|o| o.offer_id)
                    .filter(|o| !o.is_empty())
                    .collect())
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    async fn bulk_update(
        &self,
        batch: &[(&QuantityUpdate, Vec<String>)],
    ) -> Result<Vec<Option<MarketError>>, MarketError> {
        let requests: Vec<Value> = batch
            .iter()
            .map(|(u, offers)| {
                let mut r =
                    json!({"sku": u.sku, "shipToLocationAvailability": {"quantity": u.quantity}});
                if !offers.is_empty() {
                    r["offers"] = Value::Array(
                        offers
                            .iter()
                            .map(|o| json!({"offerId": o, "availableQuantity": u.quantity}))
                            .collect(),
                    );
                }
                r
            })
            .collect();
        let body = serde_json::to_vec(&json!({ "requests": requests }))
            .map_err(|_| MarketError::malformed(EBAY, "could not encode the bulk update"))?;
        let resp = self
            .call(|t| {
                self.api_request(
                    Method::POST,
                    "/sell/inventory/v1/bulk_update_price_quantity",
                    &[],
                    "/sell/inventory/v1/bulk_update_price_quantity",
                    "ebay.inventory.bulk_update",
                    t,
                )
                .json_bytes(body.clone())
                .idempotent(true)
            })
            .await?;
        let parsed: wire::BulkResponse = if resp.body.iter().all(u8::is_ascii_whitespace) {
            wire::BulkResponse {
                responses: Vec::new(),
            }
        } else {
            wire::parse_ok(resp.status, &resp.body)?
        };
        Ok(batch
            .iter()
            .map(|(u, _)| {
                let mine: Vec<&wire::BulkItem> =
                    parsed.responses.iter().filter(|r| r.sku == u.sku).collect();
                if mine.is_empty() {
                    return (resp.status != 200).then(|| {
                        MarketError::malformed(EBAY, "the bulk answer has no entry for this SKU")
                            .with_status(resp.status)
                    });
                }
                mine.iter()
                    .find(|r| !matches!(r.status_code, Some(200..=299)))
                    .map(|r| match r.errors.first() {
                        Some(e) => e.to_error(r.status_code.and_then(|s| u16::try_from(s).ok())),
                        None => {
                            MarketError::new(EBAY, ErrorKind::Invalid, "the update was refused")
                        }
                    })
            })
            .collect())
    }

    /// The public key for `kid`, from the cache or eBay.
    async fn public_key(
        &self,
        kid: &str,
    ) -> Result<(EbayPublicKey, Option<EbayDigest>), EventError> {
        let ttl = i64::try_from(self.config.key_cache_ttl.as_millis()).unwrap_or(i64::MAX);
        let cached = |now: i64| {
            self.keys.lock().ok().and_then(|cache| {
                cache
                    .get(kid)
                    .filter(|(_, _, at)| now.saturating_sub(*at) < ttl)
                    .map(|(key, digest, _)| (key.clone(), *digest))
            })
        };
        if let Some(hit) = cached(now_ms()) {
            return Ok(hit);
        }
        let _fetching = self.key_fetch.lock().await;
        // Another notification may have fetched it while this one waited.
        let now = now_ms();
        if let Some(hit) = cached(now) {
            return Ok(hit);
        }
        let token = self.app_token().await.map_err(EventError::KeyUnavailable)?;
        let path = format!(
            "/commerce/notification/v1/public_key/{}",
            percent_encode(kid)
        );
        let req = self.api_request(
            Method::GET,
            &path,
            &[],
            "/commerce/notification/v1/public_key/{public_key_id}",
            "ebay.notification.public_key",
            &token,
        );
        let resp = self
            .transport
            .send(EBAY, req)
            .await
            .map_err(EventError::KeyUnavailable)?;
        if !resp.is_success() {
            let e = wire::api_error(resp.status, &resp.body);
            if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Invalid) {
                // An unknown key id: the signature cannot be eBay's.
                return Err(EventError::BadSignature);
            }
            if resp.status == 401 {
                self.app_tokens.invalidate();
            }
            return Err(EventError::KeyUnavailable(e));
        }
        let answer: wire::PublicKeyAnswer =
            wire::parse_ok(resp.status, &resp.body).map_err(EventError::KeyUnavailable)?;
        let key = EbayPublicKey::from_pem(&answer.key).map_err(|_| {
            EventError::KeyUnavailable(MarketError::malformed(
                EBAY,
                "the public key is not a P-256 key",
            ))
        })?;
        let digest = answer
            .digest
            .as_deref()
            .and_then(|d| EbayDigest::parse(d).ok());
        if let Ok(mut cache) = self.keys.lock() {
            if cache.len() >= MAX_CACHED_KEYS {
                cache.retain(|_, (_, _, at)| now.saturating_sub(*at) < ttl);
                if cache.len() >= MAX_CACHED_KEYS {
                    cache.clear();
                }
            }
            cache.insert(kid.to_owned(), (key.clone(), digest, now));
        }
        Ok((key, digest))
    }
}

impl Connector for EbayConnector {
    fn marketplace(&self) -> Marketplace {
        EBAY
    }

    async fn refresh_token(&self) -> Result<TokenInfo, MarketError> {
        let _guard = self.tokens.refreshing.lock().await;
        self.do_refresh().await
    }

    async fn list_orders(&self, cursor: &OrderCursor) -> Result<OrderPage, MarketError> {
        let offset: u64 = match &cursor.page {
            None => 0,
            Some(p) => p.parse().map_err(|_| {
                MarketError::new(EBAY, ErrorKind::Invalid, "the page marker is not an offset")
            })?,
        };
        let filter = format!(
            "lastmodifieddate:[{}..]",
            format_rfc3339_ms(cursor.since_ms)
        );
        let limit = self.config.page_size.clamp(1, 200);
        let limit_text = limit.to_string();
        let offset_text = offset.to_string();
        let query: [(&str, &str); 3] = [
            ("filter", &filter),
            ("limit", &limit_text),
            ("offset", &offset_text),
        ];
        let resp = self
            .call(|t| {
                self.api_request(
                    Method::GET,
                    "/sell/fulfillment/v1/order",
                    &query,
                    "/sell/fulfillment/v1/order",
                    "ebay.orders.search",
                    t,
                )
                .idempotent(true)
            })
            .await?;
        let page: wire::OrderPageRaw = wire::parse_ok(resp.status, &resp.body)?;
        let count = page.orders.len();
        let next = match page.next.filter(|n| !n.is_empty()) {
            Some(href) if count > 0 => {
                let from_href = query_param(&href, "offset").and_then(|o| o.parse::<u64>().ok());
                let step = page
                    .limit
                    .and_then(|l| u64::try_from(l).ok())
                    .unwrap_or(u64::from(limit));
                let base = page
                    .offset
                    .and_then(|o| u64::try_from(o).ok())
                    .unwrap_or(offset);
                Some(from_href.unwrap_or(base + step).to_string())
            }
            _ => None,
        };
        let orders: Vec<Order> = page
            .orders
            .into_iter()
            .map(wire::EbayOrder::into_order)
            .collect();
        let high_water_ms = orders
            .iter()
            .map(|o| o.updated_at_ms)
            .fold(cursor.since_ms, i64::max);
        Ok(OrderPage {
            orders,
            next,
            high_water_ms,
        })
    }

    async fn get_order(&self, id: &str) -> Result<Order, MarketError> {
        let path = format!("/sell/fulfillment/v1/order/{}", percent_encode(id));
        let resp = self
            .call(|t| {
                self.api_request(
                    Method::GET,
                    &path,
                    &[],
                    "/sell/fulfillment/v1/order/{orderId}",
                    "ebay.orders.get",
                    t,
                )
            })
            .await?;
        let raw: wire::EbayOrder = wire::parse_ok(resp.status, &resp.body)?;
        Ok(raw.into_order())
    }

    /// getOrders with `orderIds` (up to 50 a call; eBay then ignores every other
    /// parameter, paging included), a few calls in flight. getOrders leaves
    /// `cancelStatus.cancelRequests` empty, which the normalised order does not use.
    async fn get_orders(&self, ids: &[String]) -> Result<Vec<Order>, MarketError> {
        let wanted = crate::batch_ids(ids);
        // Collected first: a lazy `map` held across the await trips the Send check.
        let calls: Vec<_> = wanted
            .chunks(crate::MAX_IDS_PER_CALL)
            .map(|chunk| async move {
                let joined = chunk.join(",");
                let resp = self
                    .call(|t| {
                        self.api_request(
                            Method::GET,
                            "/sell/fulfillment/v1/order",
                            &[("orderIds", &joined)],
                            "/sell/fulfillment/v1/order",
                            "ebay.orders.search",
                            t,
                        )
                        .idempotent(true)
                    })
                    .await?;
                let page: wire::OrderPageRaw = wire::parse_ok(resp.status, &resp.body)?;
                Ok(page
                    .orders
                    .into_iter()
                    .filter(|o| chunk.contains(&o.order_id.as_str()))
                    .map(wire::EbayOrder::into_order)
                    .collect::<Vec<Order>>())
            })
            .collect();
        let pages = crate::try_join_bounded(calls, ORDER_FETCH_CONCURRENCY).await?;
        Ok(pages.into_iter().flatten().collect())
    }

    /// bulkUpdatePriceQuantity, 25 listings a call, within the app's rate; 250 revisions
    /// per listing per UTC day.
    fn push_paths(&self) -> crate::PushPaths {
        crate::PushPaths {
            per_listing: None,
            slow_bulk: false,
            calls_per_s: self.config.rate.0,
            listings_per_call: 25,
            daily_revisions: Some(self.config.daily_revision_limit),
        }
    }

    /// The gateway's count of each listing's revisions today starts from `used`.
    fn seed_revisions(&self, used: &[(String, u32)]) {
        for (sku, n) in used {
            self.transport
                .seed_daily(REVISION_QUOTA, &self.revision_key(sku), *n);
        }
    }

    async fn set_quantities(
        &self,
        updates: &[QuantityUpdate],
    ) -> Result<Vec<QuantityAck>, MarketError> {
        let mut acks: Vec<Option<QuantityAck>> = vec![None; updates.len()];
        let mut ready: Vec<(usize, Vec<String>)> = Vec::new();
        for (i, u) in updates.iter().enumerate() {
            let offers = if u.listing.offer_ids.is_empty() {
                match self.offers_for(&u.sku).await {
                    Ok(o) => o,
                    Err(e) => {
                        acks[i] = Some(QuantityAck::failed(u, e));
                        continue;
                    }
                }
            } else {
                u.listing.offer_ids.clone()
            };
            if !self.transport.take_daily(
                REVISION_QUOTA,
                &self.revision_key(&u.sku),
                self.config.daily_revision_limit,
            ) {
                acks[i] = Some(QuantityAck::failed(
                    u,
                    MarketError::new(
                        EBAY,
                        ErrorKind::Throttled,
                        "the listing reached its revisions for today (UTC)",
                    )
                    .with_code("daily_revision_limit"),
                ));
                continue;
            }
            ready.push((i, offers));
        }
        // Bulk calls of 25, a few in flight; two calls holding one SKU never overlap.
        let chunks: Vec<&[(usize, Vec<String>)]> = ready.chunks(25).collect();
        let calls: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let keys: Vec<&str> = chunk
                    .iter()
                    .map(|(i, _)| updates[*i].sku.as_str())
                    .collect();
                let batch: Vec<(&QuantityUpdate, Vec<String>)> = chunk
                    .iter()
                    .map(|(i, o)| (&updates[*i], o.clone()))
                    .collect();
                (keys, async move { self.bulk_update(&batch).await })
            })
            .collect();
        let results = crate::fan_out::in_order(
            EBAY,
            calls,
            self.transport.round_calls(crate::PUSH_CONCURRENCY),
        )
        .await;
        for (chunk, result) in chunks.iter().zip(results) {
            match result {
                Ok(errors) => {
                    for ((i, _), err) in chunk.iter().zip(errors) {
                        acks[*i] = Some(match err {
                            None => QuantityAck::ok(&updates[*i]),
                            Some(e) => QuantityAck::failed(&updates[*i], e),
                        });
                    }
                }
                Err(e) => {
                    for (i, _) in chunk.iter() {
                        acks[*i] = Some(QuantityAck::failed(&updates[*i], e.clone()));
                    }
                }
            }
        }
        Ok(acks
            .into_iter()
            .zip(updates)
            .map(|(a, u)| {
                a.unwrap_or_else(|| {
                    QuantityAck::failed(u, MarketError::new(EBAY, ErrorKind::Invalid, "not sent"))
                })
            })
            .collect())
    }

    async fn get_quantities(
        &self,
        listings: &[ListingRef],
    ) -> Result<Vec<(String, u32)>, MarketError> {
        let mut out = Vec::with_capacity(listings.len());
        for l in listings {
            let path = format!(
                "/sell/inventory/v1/inventory_item/{}",
                percent_encode(&l.sku)
            );
            let result = self
                .call(|t| {
                    self.api_request(
                        Method::GET,
                        &path,
                        &[],
                        "/sell/inventory/v1/inventory_item/{sku}",
                        "ebay.inventory.item",
                        t,
                    )
                })
                .await;
            let resp = match result {
                Ok(r) => r,
                Err(e) if e.kind == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let item: Value = wire::parse_ok(resp.status, &resp.body)?;
            if let Some(q) = wire::inventory_quantity(&item) {
                out.push((l.sku.clone(), q));
            }
        }
        Ok(out)
    }

    async fn discover_listings(&self) -> Result<Vec<DiscoveredListing>, MarketError> {
        self.discover().await
    }

    async fn verify_event(&self, request: &InboundRequest) -> Result<InboundEvent, EventError> {
        if request.method == Method::GET {
            let code = query_param(&request.path_and_query, "challenge_code")
                .filter(|c| !c.is_empty() && c.len() <= 1024)
                .ok_or_else(|| EventError::Malformed("challenge_code is missing".into()))?;
            let token = self
                .verification_token
                .as_ref()
                .ok_or(EventError::NotConfigured(
                    "no verification token is set for this connection",
                ))?;
            let endpoint = self
                .config
                .endpoint_url
                .as_deref()
                .ok_or(EventError::NotConfigured(
                    "no endpoint URL is set for this connection",
                ))?;
            return Ok(InboundEvent::Challenge {
                response_body: ebay_challenge_body(&code, token.expose_secret(), endpoint),
            });
        }
        if request.method != Method::POST {
            return Err(EventError::MethodNotAllowed(request.method.to_string()));
        }
        check_body_size(&request.body)?;
        let header = request
            .header("x-ebay-signature")
            .ok_or_else(|| EventError::MissingSignature("x-ebay-signature".into()))?;
        let sig = parse_ebay_signature_header(header)?;
        let (key, digest) = self.public_key(&sig.kid).await?;
        wire::verify_notification(&key, digest, Some(header), &request.body)
    }
}
