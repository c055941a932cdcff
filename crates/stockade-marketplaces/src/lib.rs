//! Marketplace connectors: TikTok Shop, Amazon SP-API and eBay behind one [`Connector`]
//! trait, with [`AnyConnector`] for dynamic use.
//!
//! Every outbound request goes through the egress gateway (`stockade_egress`): the
//! connectors never open a socket. Signing, webhook verification and payload parsing are
//! pure functions ([`sign`], [`tiktok::wire`], [`amazon::wire`], [`ebay::wire`]) so they
//! can be unit-tested against the reference vectors and fuzzed.
//!
//! Secrets (app secrets, client secrets, refresh and access tokens) are held in
//! `SecretString` and never appear in errors, logs or `Debug` output; buyer data is held
//! in `Pii<String>`.

// Without the gateway the connectors cannot be built, only their pure parts are used.
#![cfg_attr(not(feature = "egress"), allow(dead_code))]

use std::fmt;
use std::future::Future;

use stockade_core::SecretString;
pub use stockade_core::order::{Address, Buyer, Marketplace, Order, OrderLine, OrderStatus};

pub mod amazon;
#[cfg(feature = "vault")]
pub mod creds;
mod de;
pub mod ebay;
#[cfg(feature = "egress")]
mod egress;
pub mod events;
mod fan_out;
pub mod json;
#[cfg(test)]
mod mock_tests;
mod push_path;
pub mod sign;
mod sink;
pub mod tiktok;
mod token;
mod transport;
pub mod util;

pub use amazon::{AmazonConfig, AmazonConnector, AmazonCredentials};
pub use ebay::{EbayConfig, EbayConnector, EbayCredentials};
pub use events::{EventError, FreshnessWindow, InboundEvent, InboundRequest, MAX_EVENT_BODY};
pub use fan_out::PUSH_CONCURRENCY;
pub use push_path::{PushPaths, QuantityPath};
pub use sink::{HookAnswer, HookError, HookFuture, HookSink};
pub use tiktok::{TikTokConfig, TikTokConnector, TikTokCredentials};

/// What kind of failure a marketplace call ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The token or signature was refused (refreshing did not help).
    Auth,
    /// The seller withdrew the authorisation: stop syncing, drop tokens.
    Revoked,
    /// Rate limited after the gateway's retries.
    Throttled,
    /// The request was refused as invalid.
    Invalid,
    /// The order, listing or SKU does not exist.
    NotFound,
    /// The marketplace failed (5xx).
    Server,
    /// No usable answer: timeout, connection or TLS failure, open circuit.
    Transport,
    /// The answer was not what the contract says (not JSON, wrong shape, too large).
    Malformed,
    /// The egress policy refused the destination.
    Blocked,
}

impl ErrorKind {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::Revoked => "revoked",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Server => "server",
            ErrorKind::Transport => "transport",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Blocked => "blocked",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed marketplace call. `code` keeps the marketplace's own error code; `message`
/// is scrubbed (bounded, no token-like words) and never carries secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketError {
    pub marketplace: Marketplace,
    pub kind: ErrorKind,
    pub code: Option<String>,
    pub status: Option<u16>,
    pub message: String,
}

impl MarketError {
    /// A new error; the message is scrubbed.
    pub fn new(marketplace: Marketplace, kind: ErrorKind, message: impl AsRef<str>) -> Self {
        MarketError {
            marketplace,
            kind,
            code: None,
            status: None,
            message: scrub(message.as_ref()),
        }
    }

    /// With the marketplace's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(scrub(&code.into()));
        self
    }

    /// With the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// A response that does not match the contract.
    pub fn malformed(marketplace: Marketplace, what: impl AsRef<str>) -> Self {
        MarketError::new(marketplace, ErrorKind::Malformed, what)
    }
}

impl fmt::Display for MarketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} error", self.marketplace, self.kind)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        write!(f, ": {}", self.message)?;
        let hint = match self.kind {
            ErrorKind::Auth => "check the connection's credentials",
            ErrorKind::Revoked => "the seller must authorise the app again",
            ErrorKind::Throttled => "retry later",
            // The gateway's own refusal already says what to do.
            ErrorKind::Blocked if !self.message.contains("allowlist") => {
                "add the host to the egress allowlist"
            }
            ErrorKind::Transport | ErrorKind::Server => {
                "retry later; check the marketplace's status"
            }
            _ => "",
        };
        if !hint.is_empty() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for MarketError {}

/// Bound a marketplace-provided message and drop anything that looks like a token: a
/// word of 32+ characters, or one containing `|` (LWA tokens look like `Atza|…`).
pub fn scrub(message: &str) -> String {
    let mut out = String::new();
    for (i, word) in message.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if word.chars().count() >= 32 || word.contains('|') {
            out.push_str("[…]");
        } else {
            out.extend(word.chars().filter(|c| !c.is_control()));
        }
        if out.len() > 300 {
            out.push('…');
            break;
        }
    }
    out
}

/// Where to resume listing orders: changed at or after `since_ms`, from page `page`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderCursor {
    pub since_ms: i64,
    /// The opaque next-page marker a previous [`OrderPage`] returned.
    pub page: Option<String>,
}

/// One page of orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// The marker of the next page, `None` on the last.
    pub next: Option<String>,
    /// The latest `updated_at_ms` seen on this page (or the cursor's `since_ms`): the
    /// `since_ms` of the next poll once every page was read.
    pub high_water_ms: i64,
}

/// How a marketplace identifies a listing. Only the fields the marketplace needs are
/// used: TikTok `product_id` + `variant_id` (its `sku_id`) + `warehouse_ids`; Amazon
/// `product_type` (else the configured default); eBay `offer_ids` (looked up by SKU when
/// empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListingRef {
    /// The seller's SKU.
    pub sku: String,
    pub product_id: Option<String>,
    pub variant_id: Option<String>,
    pub warehouse_ids: Vec<String>,
    pub product_type: Option<String>,
    pub offer_ids: Vec<String>,
}

impl ListingRef {
    /// A listing known only by SKU.
    pub fn sku(sku: impl Into<String>) -> Self {
        ListingRef {
            sku: sku.into(),
            ..ListingRef::default()
        }
    }
}

/// One listing the marketplace holds for the seller, as [`Connector::discover_listings`]
/// reads it: the seller's SKU, the identifiers a quantity push needs (in a
/// [`ListingRef`]) and the quantity the marketplace shows, when it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredListing {
    pub listing: ListingRef,
    pub quantity: Option<u32>,
}

/// Upper bound on listings one discovery reads (against a marketplace that never stops).
pub const MAX_DISCOVERED: usize = 200_000;

/// Set the available quantity of one SKU to an absolute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityUpdate {
    pub sku: String,
    pub quantity: u32,
    pub listing: ListingRef,
}

/// The outcome of one [`QuantityUpdate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityAck {
    pub sku: String,
    pub quantity: u32,
    pub accepted: bool,
    pub error: Option<MarketError>,
}

impl QuantityAck {
    pub(crate) fn ok(update: &QuantityUpdate) -> Self {
        QuantityAck {
            sku: update.sku.clone(),
            quantity: update.quantity,
            accepted: true,
            error: None,
        }
    }

    pub(crate) fn failed(update: &QuantityUpdate, error: MarketError) -> Self {
        QuantityAck {
            sku: update.sku.clone(),
            quantity: update.quantity,
            accepted: false,
            error: Some(error),
        }
    }
}

/// The result of a token refresh.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub expires_at_ms: i64,
    /// Set when the marketplace issued a new refresh token: store it in the vault.
    pub rotated_refresh_token: Option<SecretString>,
}

/// Upper bound on pages [`Connector::list_all_orders`] walks, against a marketplace that
/// never stops returning a next page.
/// Where a requested returns report stands.
#[derive(Debug)]
pub enum ReturnsReport {
    /// Queued or in progress: ask again later.
    Pending,
    /// Done: the returns that restock, as `Returned` orders holding the returned lines.
    Done(Vec<Order>),
    /// Cancelled (no data in the range) or fatal: nothing to restock from it.
    Failed(String),
}

pub const MAX_PAGES: usize = 10_000;

/// Most ids one bulk order fetch takes: TikTok Get Order Detail (`ids`) and eBay
/// getOrders (`orderIds`) both stop at 50.
pub const MAX_IDS_PER_CALL: usize = 50;

/// The ids worth asking for, once each, in their first order: empty ids and ids holding
/// a comma (the bulk calls' separator, so never a real id) are left out.
pub(crate) fn batch_ids(ids: &[String]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.iter()
        .map(String::as_str)
        .filter(|id| !id.is_empty() && !id.contains(','))
        .filter(|id| seen.insert(*id))
        .collect()
}

/// Run `futures` with at most `limit` in flight (pulled from the iterator as others
/// finish) and collect their values in completion order. The first error ends the run;
/// the futures still running are dropped, which cancels their requests.
pub(crate) async fn try_join_bounded<T, F>(
    futures: impl IntoIterator<Item = F>,
    limit: usize,
) -> Result<Vec<T>, MarketError>
where
    F: Future<Output = Result<T, MarketError>>,
{
    use std::pin::Pin;
    use std::task::Poll;

    let mut pending = futures.into_iter();
    let mut running: Vec<Pin<Box<F>>> = Vec::new();
    let mut out = Vec::new();
    loop {
        while running.len() < limit.max(1) {
            match pending.next() {
                Some(f) => running.push(Box::pin(f)),
                None => break,
            }
        }
        if running.is_empty() {
            return Ok(out);
        }
        // Every running future is polled on every wake-up, so none misses its wake.
        let value = std::future::poll_fn(|cx| {
            let mut ready = None;
            for (i, f) in running.iter_mut().enumerate() {
                if let Poll::Ready(v) = f.as_mut().poll(cx) {
                    ready = Some((i, v));
                    break;
                }
            }
            match ready {
                Some((i, v)) => {
                    drop(running.swap_remove(i));
                    Poll::Ready(v)
                }
                None => Poll::Pending,
            }
        })
        .await;
        out.push(value?);
    }
}

/// One marketplace connection.
pub trait Connector: Send + Sync {
    fn marketplace(&self) -> Marketplace;

    /// Get a new access token now (the connectors also refresh on expiry by themselves).
    fn refresh_token(&self) -> impl Future<Output = Result<TokenInfo, MarketError>> + Send;

    /// One page of orders changed since the cursor.
    fn list_orders(
        &self,
        cursor: &OrderCursor,
    ) -> impl Future<Output = Result<OrderPage, MarketError>> + Send;

    /// Every order changed since `since_ms`, walking all pages. Returns the orders and
    /// the high-water mark for the next poll.
    fn list_all_orders(
        &self,
        since_ms: i64,
    ) -> impl Future<Output = Result<(Vec<Order>, i64), MarketError>> + Send {
        async move {
            let mut cursor = OrderCursor {
                since_ms,
                page: None,
            };
            let mut orders = Vec::new();
            let mut high = since_ms;
            for _ in 0..MAX_PAGES {
                let page = self.list_orders(&cursor).await?;
                high = high.max(page.high_water_ms);
                orders.extend(page.orders);
                match page.next {
                    Some(next) if cursor.page.as_deref() != Some(next.as_str()) => {
                        cursor.page = Some(next);
                    }
                    Some(_) => {
                        return Err(MarketError::malformed(
                            self.marketplace(),
                            "the marketplace returned the same next-page marker twice",
                        ));
                    }
                    None => return Ok((orders, high)),
                }
            }
            Err(MarketError::malformed(
                self.marketplace(),
                "too many pages of orders",
            ))
        }
    }

    /// One order by the marketplace's id.
    fn get_order(&self, id: &str) -> impl Future<Output = Result<Order, MarketError>> + Send;

    /// Several orders by the marketplace's ids, with the marketplace's bulk call where it
    /// has one ([`MAX_IDS_PER_CALL`] ids a call). Returns the orders found, in any order,
    /// each exactly as [`Connector::get_order`] would give it; an id the marketplace does
    /// not know is simply absent (so is an empty id or one holding a comma), and a
    /// repeated id comes back once. An empty `ids` makes no call. Any other failure fails
    /// the whole call.
    ///
    /// The default fetches one id at a time; the connectors override it.
    fn get_orders(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Order>, MarketError>> + Send {
        async move {
            let mut out = Vec::new();
            for id in batch_ids(ids) {
                match self.get_order(id).await {
                    Ok(order) => out.push(order),
                    Err(e) if e.kind == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        }
    }

    /// Orders whose goods came back in a return the order itself does not show, as
    /// `Returned` orders holding only the returned lines: returns updated since
    /// `since_ms` (the poller), or those of `order_ids` (after a fetch). The default is
    /// none: the marketplace reports returns in the order.
    fn returned_orders(
        &self,
        since_ms: Option<i64>,
        order_ids: &[String],
    ) -> impl Future<Output = Result<Vec<Order>, MarketError>> + Send {
        let _ = (since_ms, order_ids);
        async { Ok(Vec::new()) }
    }

    /// Whether returns come from an asynchronous report (Amazon's returns report), and
    /// then at most how often one may be requested. The default is none.
    fn returns_report(&self) -> Option<std::time::Duration> {
        None
    }

    /// Ask for a report of the returns requested between `from_ms` and `to_ms`;
    /// returns the report id to follow with [`Connector::check_returns_report`].
    fn request_returns_report(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<String, MarketError>> + Send {
        let _ = (from_ms, to_ms);
        async {
            Err(MarketError::new(
                self.marketplace(),
                ErrorKind::Invalid,
                "this marketplace has no returns report",
            ))
        }
    }

    /// Where a requested returns report stands; once done, its returns as `Returned`
    /// orders holding only the returned lines (with the returned quantities).
    fn check_returns_report(
        &self,
        report_id: &str,
    ) -> impl Future<Output = Result<ReturnsReport, MarketError>> + Send {
        let _ = report_id;
        async {
            Err(MarketError::new(
                self.marketplace(),
                ErrorKind::Invalid,
                "this marketplace has no returns report",
            ))
        }
    }

    /// Set absolute available quantities. One acknowledgement per update, in order. The
    /// calls start in the order given, up to [`PUSH_CONCURRENCY`] in flight; after an
    /// authorization or block error the updates not yet sent fail with it unsent.
    fn set_quantities(
        &self,
        updates: &[QuantityUpdate],
    ) -> impl Future<Output = Result<Vec<QuantityAck>, MarketError>> + Send;

    /// Current available quantities, `(sku, quantity)`.
    fn get_quantities(
        &self,
        listings: &[ListingRef],
    ) -> impl Future<Output = Result<Vec<(String, u32)>, MarketError>> + Send;

    /// Verify an inbound webhook or event delivery and parse it.
    fn verify_event(
        &self,
        request: &InboundRequest,
    ) -> impl Future<Output = Result<InboundEvent, EventError>> + Send;

    /// Every listing the seller has on the marketplace (all pages, each call through the
    /// gateway's rate buckets), with the identifiers [`Connector::set_quantities`] needs
    /// and the marketplace's quantity. Listings without a seller SKU are left out (they
    /// cannot be matched to the catalog); a SKU listed twice comes back once.
    fn discover_listings(
        &self,
    ) -> impl Future<Output = Result<Vec<DiscoveredListing>, MarketError>> + Send;

    /// The paths this marketplace offers for quantity pushes and their budgets. The
    /// default: one path, no per-listing cap.
    fn push_paths(&self) -> PushPaths {
        PushPaths::default()
    }

    /// [`Connector::set_quantities`] through a chosen path. The default has one path.
    fn set_quantities_via(
        &self,
        updates: &[QuantityUpdate],
        path: QuantityPath,
    ) -> impl Future<Output = Result<Vec<QuantityAck>, MarketError>> + Send {
        let _ = path;
        self.set_quantities(updates)
    }

    /// Revisions each listing (by SKU) already used today (UTC), counted by the process
    /// that owned the connection before this one: the connector's own daily count of
    /// each is raised to at least that. The default (no daily cap) ignores them.
    fn seed_revisions(&self, used: &[(String, u32)]) {
        let _ = used;
    }
}

/// Any of the three connectors, for code that picks one at run time.
#[derive(Debug)]
pub enum AnyConnector {
    TikTok(TikTokConnector),
    Amazon(AmazonConnector),
    Ebay(EbayConnector),
}

impl AnyConnector {
    /// The marketplace app the connection's credentials belong to (TikTok app key,
    /// Amazon and eBay client id). Not a secret; deliveries verified with one app's
    /// credentials may only act on connections of the same app.
    pub fn app_id(&self) -> &str {
        match self {
            AnyConnector::TikTok(c) => c.app_id(),
            AnyConnector::Amazon(c) => c.app_id(),
            AnyConnector::Ebay(c) => c.app_id(),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            AnyConnector::TikTok($c) => $e,
            AnyConnector::Amazon($c) => $e,
            AnyConnector::Ebay($c) => $e,
        }
    };
}

impl Connector for AnyConnector {
    fn marketplace(&self) -> Marketplace {
        dispatch!(self, c => c.marketplace())
    }

    async fn refresh_token(&self) -> Result<TokenInfo, MarketError> {
        dispatch!(self, c => c.refresh_token().await)
    }

    async fn list_orders(&self, cursor: &OrderCursor) -> Result<OrderPage, MarketError> {
        dispatch!(self, c => c.list_orders(cursor).await)
    }

    async fn get_order(&self, id: &str) -> Result<Order, MarketError> {
        dispatch!(self, c => c.get_order(id).await)
    }

    async fn get_orders(&self, ids: &[String]) -> Result<Vec<Order>, MarketError> {
        dispatch!(self, c => c.get_orders(ids).await)
    }

    async fn returned_orders(
        &self,
        since_ms: Option<i64>,
        order_ids: &[String],
    ) -> Result<Vec<Order>, MarketError> {
        dispatch!(self, c => c.returned_orders(since_ms, order_ids).await)
    }

    fn returns_report(&self) -> Option<std::time::Duration> {
        dispatch!(self, c => c.returns_report())
    }

    async fn request_returns_report(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<String, MarketError> {
        dispatch!(self, c => c.request_returns_report(from_ms, to_ms).await)
    }

    async fn check_returns_report(&self, report_id: &str) -> Result<ReturnsReport, MarketError> {
        dispatch!(self, c => c.check_returns_report(report_id).await)
    }

    async fn set_quantities(
        &self,
        updates: &[QuantityUpdate],
    ) -> Result<Vec<QuantityAck>, MarketError> {
        dispatch!(self, c => c.set_quantities(updates).await)
    }

    async fn get_quantities(
        &self,
        listings: &[ListingRef],
    ) -> Result<Vec<(String, u32)>, MarketError> {
        dispatch!(self, c => c.get_quantities(listings).await)
    }

    async fn verify_event(&self, request: &InboundRequest) -> Result<InboundEvent, EventError> {
        dispatch!(self, c => c.verify_event(request).await)
    }

    async fn discover_listings(&self) -> Result<Vec<DiscoveredListing>, MarketError> {
        dispatch!(self, c => c.discover_listings().await)
    }

    fn push_paths(&self) -> PushPaths {
        dispatch!(self, c => c.push_paths())
    }

    fn seed_revisions(&self, used: &[(String, u32)]) {
        dispatch!(self, c => c.seed_revisions(used))
    }

    async fn set_quantities_via(
        &self,
        updates: &[QuantityUpdate],
        path: QuantityPath,
    ) -> Result<Vec<QuantityAck>, MarketError> {
        dispatch!(self, c => c.set_quantities_via(updates, path).await)
    }
}

/// Keep the first listing of each seller SKU, drop those without one; stop past
/// [`MAX_DISCOVERED`].
pub(crate) fn dedup_discovered(
    marketplace: Marketplace,
    found: &mut Vec<DiscoveredListing>,
    seen: &mut std::collections::HashSet<String>,
    more: impl IntoIterator<Item = DiscoveredListing>,
) -> Result<(), MarketError> {
    for d in more {
        let sku = d.listing.sku.trim();
        if sku.is_empty() || !seen.insert(sku.to_owned()) {
            continue;
        }
        found.push(d);
        if found.len() > MAX_DISCOVERED {
            return Err(MarketError::malformed(
                marketplace,
                "more listings than one discovery reads",
            ));
        }
    }
    Ok(())
}

impl From<TikTokConnector> for AnyConnector {
    fn from(c: TikTokConnector) -> Self {
        AnyConnector::TikTok(c)
    }
}

impl From<AmazonConnector> for AnyConnector {
    fn from(c: AmazonConnector) -> Self {
        AnyConnector::Amazon(c)
    }
}

impl From<EbayConnector> for AnyConnector {
    fn from(c: EbayConnector) -> Self {
        AnyConnector::Ebay(c)
    }
}

/// A successful answer's JSON body, or a `Malformed` error (an HTML page, a truncated
/// document) that names the status but never echoes the body.
pub(crate) fn parse_json_answer<T: serde::de::DeserializeOwned>(
    marketplace: Marketplace,
    status: u16,
    body: &[u8],
) -> Result<T, MarketError> {
    if !matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    ) {
        return Err(
            MarketError::malformed(marketplace, "the answer is not JSON").with_status(status),
        );
    }
    serde_json::from_slice(body).map_err(|e| {
        MarketError::malformed(marketplace, events::serde_message(&e)).with_status(status)
    })
}
