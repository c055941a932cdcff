//! Amazon SP-API connector (reference §1): LWA tokens, Orders v2026-01-01, Listings Items
//! PATCH and JSON_LISTINGS_FEED for stock, ORDER_CHANGE events via EventBridge.

mod discover;
pub mod reports;
pub mod summary;
pub mod wire;

use std::fmt;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use stockade_core::SecretString;
use stockade_core::order::{Marketplace, Order};
// Signatures' timestamps and token expiries: the clock the processes share, the
// database's when this host's wall clock was stepped (stockade_core::clock).
use stockade_core::clock::now_ms;
use stockade_core::time::format_rfc3339_ms;

use crate::events::{EventError, InboundEvent, InboundRequest};
use crate::token::TokenCache;
use crate::transport::{HttpRequest, HttpResponse, SharedTransport};
use crate::util::{host_of, percent_encode, url_with_query};
use crate::{
    Connector, DiscoveredListing, ErrorKind, ListingRef, MarketError, OrderCursor, OrderPage,
    QuantityAck, QuantityUpdate, TokenInfo,
};

const AMZ: Marketplace = Marketplace::Amazon;

/// Published per-operation limits `(operation, rate req/s, burst)`; buckets are per
/// (operation, selling partner).
pub const RATE_LIMITS: [(&str, f64, u32); 13] = [
    ("amazon.searchOrders", 0.0056, 20),
    ("amazon.getOrder", 0.5, 30),
    ("amazon.patchListingsItem", 5.0, 5),
    ("amazon.getListingsItem", 5.0, 10),
    ("amazon.searchListingsItems", 5.0, 5),
    ("amazon.createFeedDocument", 0.5, 10),
    ("amazon.createFeed", 0.0083, 15),
    ("amazon.getFeed", 2.0, 15),
    ("amazon.getFeedDocument", 0.0222, 10),
    ("amazon.createReport", 0.0167, 15),
    ("amazon.getReport", 2.0, 15),
    ("amazon.getReportDocument", 0.0167, 15),
    ("amazon.lwa", 1.0, 5),
];

/// getOrder calls one [`Connector::get_orders`] keeps in flight (within getOrder's
/// burst of 30).
const ORDER_FETCH_CONCURRENCY: usize = 8;

/// Where and how to reach SP-API for one selling partner.
#[derive(Debug, Clone, PartialEq)]
pub struct AmazonConfig {
    /// Regional SP-API host, `https://sellingpartnerapi-na.amazon.com` by default.
    pub api_base: String,
    /// LWA token endpoint, `https://api.amazon.com/auth/o2/token`.
    pub lwa_url: String,
    /// The selling partner id (`A…`): listings paths, feed header, rate partition (with
    /// the application).
    pub seller_id: String,
    pub marketplace_ids: Vec<String>,
    /// `productType` sent when a listing does not name its own (unconfirmed that Amazon
    /// accepts the generic `PRODUCT`).
    pub default_product_type: String,
    /// Batches larger than this go through JSON_LISTINGS_FEED instead of per-SKU PATCH.
    pub feed_threshold: usize,
    /// Orders per page (1–100).
    pub page_size: u32,
    /// `includedData` for searchOrders / getOrder.
    pub included_data: Vec<String>,
    /// The header carrying the shared secret on EventBridge deliveries.
    pub event_header: String,
    /// How often and how many times to poll a submitted feed.
    pub feed_poll_interval: Duration,
    pub feed_poll_attempts: u32,
    /// Hosts of the presigned feed- and report-document URLs (S3), added to the egress
    /// allowlist.
    pub document_hosts: Vec<String>,
    /// The returns report is requested at most this often (createReport allows one call
    /// a minute per seller, shared with every other report).
    pub returns_report_interval: Duration,
    /// How often and how many times one check of a requested report calls getReport
    /// (a report not done by then is checked again at the next poll).
    pub report_poll_interval: Duration,
    pub report_poll_attempts: u32,
}

impl Default for AmazonConfig {
    fn default() -> Self {
        AmazonConfig {
            api_base: "https://sellingpartnerapi-na.amazon.com".into(),
            lwa_url: "https://api.amazon.com/auth/o2/token".into(),
            seller_id: String::new(),
            marketplace_ids: vec!["ATVPDKIKX0DER".into()],
            default_product_type: "PRODUCT".into(),
            feed_threshold: 20,
            page_size: 100,
            included_data: vec!["BUYER".into(), "RECIPIENT".into(), "FULFILLMENT".into()],
            event_header: "x-stockade-event-key".into(),
            feed_poll_interval: Duration::from_secs(30),
            feed_poll_attempts: 60,
            document_hosts: Vec::new(),
            returns_report_interval: Duration::from_secs(30 * 60),
            report_poll_interval: Duration::from_secs(5),
            report_poll_attempts: 3,
        }
    }
}

impl AmazonConfig {
    /// Defaults with other base URLs (a sandbox) for one seller.
    pub fn with_base_urls(
        api_base: impl Into<String>,
        lwa_url: impl Into<String>,
        seller_id: impl Into<String>,
    ) -> Self {
        AmazonConfig {
            api_base: api_base.into(),
            lwa_url: lwa_url.into(),
            seller_id: seller_id.into(),
            ..AmazonConfig::default()
        }
    }

    /// The hosts this configuration talks to (for the egress allowlist).
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = [&self.api_base, &self.lwa_url]
            .into_iter()
            .filter_map(|u| host_of(u))
            .chain(self.document_hosts.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// An SP-API app's LWA credentials for one selling partner.
#[derive(Debug, Clone)]
pub struct AmazonCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
    /// The shared secret EventBridge sends in the event header; events are refused
    /// without it.
    pub event_key: Option<SecretString>,
}

impl AmazonCredentials {
    /// From the vault: `connection/<name>/client_id`, `…/client_secret`,
    /// `…/refresh_token`, and optionally `…/event_key`.
    #[cfg(feature = "vault")]
    pub async fn from_vault(
        vault: &stockade_vault::Vault,
        connection: &str,
    ) -> Result<Self, stockade_vault::VaultError> {
        Ok(AmazonCredentials {
            client_id: crate::creds::read_plain(vault, connection, "client_id").await?,
            client_secret: crate::creds::read(vault, connection, "client_secret").await?,
            refresh_token: crate::creds::read(vault, connection, "refresh_token").await?,
            event_key: crate::creds::read_optional(vault, connection, "event_key").await?,
        })
    }
}

/// The Amazon SP-API connector.
pub struct AmazonConnector {
    config: AmazonConfig,
    client_id: String,
    client_secret: SecretString,
    event_key: Option<SecretString>,
    tokens: TokenCache,
    transport: SharedTransport,
}

impl fmt::Debug for AmazonConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmazonConnector")
            .field("api_base", &self.config.api_base)
            .field("seller_id", &self.config.seller_id)
            .finish_non_exhaustive()
    }
}

impl AmazonConnector {
    pub(crate) fn with_transport(
        config: AmazonConfig,
        credentials: AmazonCredentials,
        transport: SharedTransport,
    ) -> Self {
        AmazonConnector {
            config,
            client_id: credentials.client_id,
            client_secret: credentials.client_secret,
            event_key: credentials.event_key,
            tokens: TokenCache::new(credentials.refresh_token),
            transport,
        }
    }

    /// The configuration in use.
    /// The app this connection's credentials belong to (its LWA client id).
    pub fn app_id(&self) -> &str {
        &self.client_id
    }

    /// The rate partition: usage plans apply per application and selling partner.
    fn rate_partition(&self) -> String {
        format!("{}/{}", self.client_id, self.config.seller_id)
    }

    pub fn config(&self) -> &AmazonConfig {
        &self.config
    }

    /// A refresh token rotated during an automatic refresh, not yet collected.
    pub fn take_rotated_refresh_token(&self) -> Option<SecretString> {
        self.tokens.take_rotated()
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
                AMZ,
                ErrorKind::Auth,
                "the new access token is already expired",
            )
        })
    }

    async fn do_refresh(&self) -> Result<TokenInfo, MarketError> {
        let refresh = self.tokens.refresh_token();
        let req = HttpRequest::new(
            Method::POST,
            self.config.lwa_url.clone(),
            "/auth/o2/token",
            "amazon.lwa",
        )
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose_secret()),
            ("client_id", &self.client_id),
            ("client_secret", self.client_secret.expose_secret()),
        ])
        .partition(self.rate_partition())
        .idempotent(true);
        let resp = self.transport.send(AMZ, req).await?;
        if !resp.is_success() {
            return Err(wire::lwa_error(resp.status, &resp.body));
        }
        let token: wire::LwaToken = wire::parse_ok(resp.status, &resp.body)?;
        if token.access_token.is_empty() {
            return Err(MarketError::malformed(
                AMZ,
                "the LWA answer has no access_token",
            ));
        }
        let expires_at_ms = now_ms() + token.expires_in.unwrap_or(3600).max(1).saturating_mul(1000);
        self.tokens
            .store(SecretString::from(token.access_token), expires_at_ms);
        let rotated = self.tokens.rotate(token.refresh_token.as_deref());
        Ok(TokenInfo {
            expires_at_ms,
            rotated_refresh_token: rotated,
        })
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
        HttpRequest::new(
            method,
            url_with_query(&self.config.api_base, path, query),
            template,
            operation,
        )
        .secret_header("x-amz-access-token", token.clone())
        .partition(self.rate_partition())
    }

    /// Send an SP-API call; on 401/403 refresh the token once and retry. Returns the
    /// 2xx answer or the mapped error.
    async fn call(
        &self,
        build: impl Fn(&SecretString) -> HttpRequest + Send + Sync,
    ) -> Result<HttpResponse, MarketError> {
        let token = self.access_token().await?;
        let mut resp = self.transport.send(AMZ, build(&token)).await?;
        if matches!(resp.status, 401 | 403) {
            self.tokens.invalidate();
            let token = self.access_token().await?;
            resp = self.transport.send(AMZ, build(&token)).await?;
        }
        if resp.is_success() {
            Ok(resp)
        } else {
            Err(wire::api_error(
                resp.status,
                resp.header("x-amzn-errortype"),
                &resp.body,
            ))
        }
    }

    fn marketplace_ids(&self) -> String {
        self.config.marketplace_ids.join(",")
    }

    async fn patch_one(&self, update: &QuantityUpdate) -> Result<(), MarketError> {
        let product_type = update
            .listing
            .product_type
            .clone()
            .unwrap_or_else(|| self.config.default_product_type.clone());
        let body = serde_json::to_vec(&wire::quantity_patch(&product_type, update.quantity))
            .map_err(|_| MarketError::malformed(AMZ, "could not encode the patch"))?;
        let path = format!(
            "/listings/2021-08-01/items/{}/{}",
            percent_encode(&self.config.seller_id),
            percent_encode(&update.sku)
        );
        let ids = self.marketplace_ids();
        let resp = self
            .call(|t| {
                self.api_request(
                    Method::PATCH,
                    &path,
                    &[("marketplaceIds", &ids)],
                    "/listings/2021-08-01/items/{sellerId}/{sku}",
                    "amazon.patchListingsItem",
                    t,
                )
                .json_bytes(body.clone())
                .idempotent(true)
            })
            .await?;
        let result: wire::PatchResult = wire::parse_ok(resp.status, &resp.body)?;
        if result.status.eq_ignore_ascii_case("INVALID")
            || result.issues.iter().any(wire::Issue::is_error)
        {
            let first = result.issues.iter().find(|i| i.is_error());
            return Err(first.map_or_else(
                || MarketError::new(AMZ, ErrorKind::Invalid, "the listing patch was refused"),
                wire::Issue::to_error,
            ));
        }
        Ok(())
    }

    async fn create_document(&self) -> Result<wire::FeedDocument, MarketError> {
        let body = serde_json::to_vec(&json!({"contentType": "application/json; charset=UTF-8"}))
            .map_err(|_| {
            MarketError::malformed(AMZ, "could not encode the document request")
        })?;
        let resp = self
            .call(|t| {
                self.api_request(
                    Method::POST,
                    "/feeds/2021-06-30/documents",
                    &[],
                    "/feeds/2021-06-30/documents",
                    "amazon.createFeedDocument",
                    t,
                )
                .json_bytes(body.clone())
            })
            .await?;
        wire::parse_ok(resp.status, &resp.body)
    }

    /// Send the whole batch as one JSON_LISTINGS_FEED and read the processing report.
    async fn run_feed(
        &self,
        updates: &[QuantityUpdate],
    ) -> Result<Vec<Option<MarketError>>, MarketError> {
        let items: Vec<(&str, u32, &str)> = updates
            .iter()
            .map(|u| {
                (
                    u.sku.as_str(),
                    u.quantity,
                    u.listing
                        .product_type
                        .as_deref()
                        .unwrap_or(&self.config.default_product_type),
                )
            })
            .collect();
        let document = serde_json::to_vec(&wire::listings_feed(&self.config.seller_id, &items))
            .map_err(|_| MarketError::malformed(AMZ, "could not encode the feed"))?;

        let doc = self.create_document().await?;
        let upload = HttpRequest::new(
            Method::PUT,
            doc.url.clone(),
            "/{presigned-feed-document}",
            "amazon.uploadFeedDocument",
        )
        .body(document, "application/json; charset=UTF-8")
        .partition(self.rate_partition());
        let resp = self.transport.send(AMZ, upload).await?;
        if !resp.is_success() {
            return Err(MarketError::new(
                AMZ,
                ErrorKind::Server,
                "the feed document upload was refused",
            )
            .with_status(resp.status));
        }

        let create = serde_json::to_vec(&json!({
            "feedType": "JSON_LISTINGS_FEED",
            "marketplaceIds": self.config.marketplace_ids,
            "inputFeedDocumentId": doc.feed_document_id,
        }))
        .map_err(|_| MarketError::malformed(AMZ, "could not encode the feed request"))?;
        let resp = self
            .call(|t| {
                self.api_request(
                    Method::POST,
                    "/feeds/2021-06-30/feeds",
                    &[],
                    "/feeds/2021-06-30/feeds",
                    "amazon.createFeed",
                    t,
                )
                .json_bytes(create.clone())
            })
            .await?;
        let feed: wire::CreatedFeed = wire::parse_ok(resp.status, &resp.body)?;

        let feed_path = format!("/feeds/2021-06-30/feeds/{}", percent_encode(&feed.feed_id));
        let mut done: Option<wire::Feed> = None;
        for attempt in 0..self.config.feed_poll_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.config.feed_poll_interval).await;
            }
            let resp = self
                .call(|t| {
                    self.api_request(
                        Method::GET,
                        &feed_path,
                        &[],
                        "/feeds/2021-06-30/feeds/{feedId}",
                        "amazon.getFeed",
                        t,
                    )
                })
                .await?;
            let status: wire::Feed = wire::parse_ok(resp.status, &resp.body)?;
            if matches!(
                status.processing_status.as_str(),
                "DONE" | "FATAL" | "CANCELLED"
            ) {
                done = Some(status);
                break;
            }
        }
        let feed_state = done.ok_or_else(|| {
            MarketError::new(
                AMZ,
                ErrorKind::Transport,
                "the feed did not finish in time; its result is unknown",
            )
        })?;
        if feed_state.processing_status != "DONE" {
            return Err(
                MarketError::new(AMZ, ErrorKind::Invalid, "the feed was not processed")
                    .with_code(feed_state.processing_status),
            );
        }
        let Some(result_id) = feed_state.result_feed_document_id else {
            return Ok(vec![None; updates.len()]);
        };
        let doc_path = format!("/feeds/2021-06-30/documents/{}", percent_encode(&result_id));
        let resp = self
            .call(|t| {
                self.api_request(
                    Method::GET,
                    &doc_path,
                    &[],
                    "/feeds/2021-06-30/documents/{feedDocumentId}",
                    "amazon.getFeedDocument",
                    t,
                )
            })
            .await?;
        let result_doc: wire::FeedDocument = wire::parse_ok(resp.status, &resp.body)?;
        if result_doc
            .compression_algorithm
            .is_some_and(|c| !c.is_empty())
        {
            return Err(MarketError::malformed(
                AMZ,
                "the processing report is compressed, which is not supported",
            ));
        }
        let download = HttpRequest::new(
            Method::GET,
            result_doc.url,
            "/{presigned-feed-document}",
            "amazon.downloadFeedDocument",
        )
        .partition(self.rate_partition());
        let resp = self.transport.send(AMZ, download).await?;
        if !resp.is_success() {
            return Err(MarketError::new(
                AMZ,
                ErrorKind::Server,
                "the processing report download failed",
            )
            .with_status(resp.status));
        }
        let report: wire::ProcessingReport = wire::parse_ok(resp.status, &resp.body)?;
        let mut out = vec![None; updates.len()];
        for issue in report.issues.iter().filter(|i| i.is_error()) {
            let index = issue
                .message_id
                .and_then(|m| usize::try_from(m).ok())
                .and_then(|m| m.checked_sub(1));
            if let Some(slot) = index.and_then(|i| out.get_mut(i))
                && slot.is_none()
            {
                *slot = Some(issue.to_error());
            }
        }
        Ok(out)
    }
}

impl Connector for AmazonConnector {
    fn marketplace(&self) -> Marketplace {
        AMZ
    }

    async fn refresh_token(&self) -> Result<TokenInfo, MarketError> {
        let _guard = self.tokens.refreshing.lock().await;
        self.do_refresh().await
    }

    async fn list_orders(&self, cursor: &OrderCursor) -> Result<OrderPage, MarketError> {
        let since = format_rfc3339_ms(cursor.since_ms);
        let ids = self.marketplace_ids();
        let page_size = self.config.page_size.clamp(1, 100).to_string();
        let included = self.config.included_data.join(",");
        let mut query: Vec<(&str, &str)> = vec![
            ("lastUpdatedAfter", &since),
            ("marketplaceIds", &ids),
            ("maxResultsPerPage", &page_size),
        ];
        if !included.is_empty() {
            query.push(("includedData", &included));
        }
        if let Some(page) = &cursor.page {
            query.push(("paginationToken", page));
        }
        let resp = self
            .call(|t| {
                self.api_request(
                    Method::GET,
                    "/orders/2026-01-01/orders",
                    &query,
                    "/orders/2026-01-01/orders",
                    "amazon.searchOrders",
                    t,
                )
            })
            .await?;
        let list: wire::SearchOrders = wire::parse_ok(resp.status, &resp.body)?;
        let orders: Vec<Order> = list
            .orders
            .into_iter()
            .map(wire::AmzOrder::into_order)
            .collect();
        let high_water_ms = orders
            .iter()
            .map(|o| o.updated_at_ms)
            .fold(cursor.since_ms, i64::max);
        Ok(OrderPage {
            orders,
            next: list
                .pagination
                .and_then(|p| p.next_token)
                .filter(|t| !t.is_empty()),
            high_water_ms,
        })
    }

    async fn get_order(&self, id: &str) -> Result<Order, MarketError> {
        let path = format!("/orders/2026-01-01/orders/{}", percent_encode(id));
        let included = self.config.included_data.join(",");
        let query: Vec<(&str, &str)> = if included.is_empty() {
            vec![]
        } else {
            vec![("includedData", &included)]
        };
        let resp = self
            .call(|t| {
                self.api_request(
                    Method::GET,
                    &path,
                    &query,
                    "/orders/2026-01-01/orders/{orderId}",
                    "amazon.getOrder",
                    t,
                )
            })
            .await?;
        let value: Value = wire::parse_ok(resp.status, &resp.body)?;
        wire::order_from_value(value)
    }

    /// One getOrder per id, a few in flight. Orders v2026-01-01 has no by-ids search
    /// (searchOrders filters only by time, status and channel), and v0 getOrders'
    /// `AmazonOrderIds` would not save a call: v0 returns no items, so each order would
    /// still need getOrderItems, plus a restricted data token for buyer and address,
    /// whereas getOrder brings items, buyer and recipient in one call. The gateway paces
    /// the calls to getOrder's usage plan (0.5 req/s, burst 30).
    async fn get_orders(&self, ids: &[String]) -> Result<Vec<Order>, MarketError> {
        let wanted = crate::batch_ids(ids);
        // Collected first: a lazy `map` held across the await trips the Send check.
        let calls: Vec<_> = wanted
            .iter()
            .map(|&id| async move {
                match self.get_order(id).await {
                    Ok(order) => Ok(Some(order)),
                    Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .collect();
        let found = crate::try_join_bounded(calls, ORDER_FETCH_CONCURRENCY).await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Returns come from the returns report (the Orders API has no return state).
    fn returns_report(&self) -> Option<Duration> {
        Some(self.config.returns_report_interval)
    }

    async fn request_returns_report(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<String, MarketError> {
        self.create_returns_report(from_ms, to_ms).await
    }

    async fn check_returns_report(
        &self,
        report_id: &str,
    ) -> Result<crate::ReturnsReport, MarketError> {
        self.follow_returns_report(report_id).await
    }

    async fn set_quantities(
        &self,
        updates: &[QuantityUpdate],
    ) -> Result<Vec<QuantityAck>, MarketError> {
        if updates.len() > self.config.feed_threshold {
            self.feed_all(updates).await
        } else {
            self.patch_all(updates).await
        }
    }

    /// patchListingsItem (5/s, burst 5) for one listing at a time, or one
    /// JSON_LISTINGS_FEED for them all; a feed is refused when feeds are off
    /// (`feed_threshold` unbounded) and then goes listing by listing.
    fn push_paths(&self) -> crate::PushPaths {
        let (rate, burst) = RATE_LIMITS
            .iter()
            .find(|(op, _, _)| *op == "amazon.patchListingsItem")
            .map_or((5.0, 5), |(_, r, b)| (*r, *b));
        crate::PushPaths {
            per_listing: Some((rate, burst)),
            slow_bulk: self.config.feed_threshold != usize::MAX,
            calls_per_s: rate,
            listings_per_call: 1,
            daily_revisions: None,
        }
    }

    async fn set_quantities_via(
        &self,
        updates: &[QuantityUpdate],
        path: crate::QuantityPath,
    ) -> Result<Vec<QuantityAck>, MarketError> {
        match path {
            crate::QuantityPath::Bulk if self.config.feed_threshold != usize::MAX => {
                self.feed_all(updates).await
            }
            _ => self.patch_all(updates).await,
        }
    }

    async fn get_quantities(
        &self,
        listings: &[ListingRef],
    ) -> Result<Vec<(String, u32)>, MarketError> {
        self.read_quantities(listings).await
    }

    async fn discover_listings(&self) -> Result<Vec<DiscoveredListing>, MarketError> {
        self.discover().await
    }

    async fn verify_event(&self, request: &InboundRequest) -> Result<InboundEvent, EventError> {
        self.verify(request)
    }
}

impl AmazonConnector {
    /// The whole batch as one JSON_LISTINGS_FEED.
    async fn feed_all(&self, updates: &[QuantityUpdate]) -> Result<Vec<QuantityAck>, MarketError> {
        Ok(match self.run_feed(updates).await {
            Ok(errors) => updates
                .iter()
                .zip(errors)
                .map(|(u, e)| match e {
                    None => QuantityAck::ok(u),
                    Some(e) => QuantityAck::failed(u, e),
                })
                .collect(),
            Err(e) => updates
                .iter()
                .map(|u| QuantityAck::failed(u, e.clone()))
                .collect(),
        })
    }

    /// One patchListingsItem per listing, started in order with a few in flight (the
    /// gateway paces them to 5/s); two patches of one SKU never overlap.
    async fn patch_all(&self, updates: &[QuantityUpdate]) -> Result<Vec<QuantityAck>, MarketError> {
        let calls: Vec<_> = updates
            .iter()
            .map(|u| (vec![u.sku.as_str()], self.patch_one(u)))
            .collect();
        let results = crate::fan_out::in_order(
            AMZ,
            calls,
            self.transport.round_calls(crate::PUSH_CONCURRENCY),
        )
        .await;
        Ok(updates
            .iter()
            .zip(results)
            .map(|(u, r)| match r {
                Ok(()) => QuantityAck::ok(u),
                Err(e) => QuantityAck::failed(u, e),
            })
            .collect())
    }

    async fn read_quantities(
        &self,
        listings: &[ListingRef],
    ) -> Result<Vec<(String, u32)>, MarketError> {
        let ids = self.marketplace_ids();
        let mut out = Vec::with_capacity(listings.len());
        for l in listings {
            let path = format!(
                "/listings/2021-08-01/items/{}/{}",
                percent_encode(&self.config.seller_id),
                percent_encode(&l.sku)
            );
            let result = self
                .call(|t| {
                    self.api_request(
                        Method::GET,
                        &path,
                        &[
                            ("marketplaceIds", &ids),
                            ("includedData", "attributes,summaries"),
                        ],
                        "/listings/2021-08-01/items/{sellerId}/{sku}",
                        "amazon.getListingsItem",
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
            if let Some(q) = wire::listing_quantity(&item) {
                out.push((l.sku.clone(), q));
            }
        }
        Ok(out)
    }

    fn verify(&self, request: &InboundRequest) -> Result<InboundEvent, EventError> {
        if request.method != Method::POST {
            return Err(EventError::MethodNotAllowed(request.method.to_string()));
        }
        let key = self.event_key.as_ref().ok_or(EventError::NotConfigured(
            "no event key is set for this connection",
        ))?;
        wire::verify_event(
            request.header(&self.config.event_header),
            &self.config.event_header,
            key.expose_secret(),
            &request.body,
        )
    }
}
