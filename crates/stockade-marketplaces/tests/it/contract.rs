//! Contract tests: each connector against its simulator (`stockade-sandbox`), over real
//! HTTPS on loopback through the egress gateway.
//!
//! What happened on the wire is read back from the gateway's request log (`egress_log`
//! in a throw-away SQLite database): which operations were called, with which status,
//! on which attempt. Events are received by a small TLS server on the simulators'
//! certificate that hands every request to `Connector::verify_event` and answers with
//! the status the connector's verdict calls for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use stockade_core::time::now_ms;
use stockade_core::{Environment, SecretString};
use stockade_egress::{Caller, EgressConfig, Gateway, Request};
use stockade_marketplaces::util::url_with_query;
use stockade_marketplaces::{
    AmazonConfig, AmazonConnector, AmazonCredentials, AnyConnector, Connector, EbayConfig,
    EbayConnector, EbayCredentials, ErrorKind, EventError, InboundEvent, InboundRequest,
    ListingRef, MarketError, Order, OrderCursor, OrderStatus, QuantityUpdate, TikTokConfig,
    TikTokConnector, TikTokCredentials,
};
use stockade_sandbox::{Faults, Marketplace, OrderAction, Sandbox, SandboxConfig};
use stockade_store::{DatabaseUrl, Store, StoreOptions};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// A directory removed when the test ends, however it ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "stockade-contract-{}-{}-{}",
            std::process::id(),
            now_ms(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One row of the gateway's request log.
#[derive(Debug, Clone)]
pub(crate) struct LogRow {
    pub(crate) caller: String,
    pub(crate) operation: String,
    pub(crate) status: Option<i64>,
    pub(crate) attempt: i64,
    pub(crate) at_ms: i64,
    /// Send to answer, as the client measured it.
    pub(crate) latency_us: i64,
}

pub(crate) struct Harness {
    pub(crate) sb: Sandbox,
    pub(crate) gateway: Gateway,
    store: Store,
    /// The gateway's settings, for another process's gateway.
    egress: EgressConfig,
    _dir: TempDir,
}

/// Sandbox defaults for the contract tests: rate limits off (tests that need them turn
/// them on), short feed steps.
pub(crate) fn config() -> SandboxConfig {
    SandboxConfig {
        seed: 4,
        rate_limits: false,
        feed_step: Duration::from_millis(20),
        ..SandboxConfig::default()
    }
}

impl Harness {
    /// Start the simulators and a gateway that may reach them and the given extra
    /// listeners (webhook receivers, a token broker), logging to a fresh database.
    pub(crate) async fn start(config: SandboxConfig, extra: &[&TcpListener]) -> Harness {
        let sb = Sandbox::start(config).await.unwrap();
        let dir = TempDir::new();
        let store = Store::init(
            &DatabaseUrl::Sqlite(dir.0.join("stockade.db")),
            Environment::Dev,
            &StoreOptions::default(),
        )
        .await
        .unwrap()
        .0;
        let mut cfg = EgressConfig::new(Environment::Dev);
        cfg.allowed_hosts = [sb.tiktok.addr, sb.amazon.addr, sb.ebay.addr]
            .into_iter()
            .chain(extra.iter().map(|l| l.local_addr().unwrap()))
            .map(|a| a.to_string())
            .collect();
        cfg.extra_root_pems = vec![sb.ca_pem.clone()];
        cfg.request_timeout = Duration::from_secs(10);
        // Enough attempts that a 300 ms storm or a 50% error rate cannot exhaust them,
        // with short backoffs so the tests stay fast; no circuit breaking in the way.
        cfg.max_attempts = 10;
        cfg.backoff_base = Duration::from_millis(50);
        cfg.backoff_max = Duration::from_secs(1);
        cfg.breaker_failures = 1_000;
        cfg.host_rate = (10_000.0, 10_000);
        let gateway = Gateway::new(cfg.clone(), Some(store.clone())).unwrap();
        Harness {
            sb,
            gateway,
            store,
            egress: cfg,
            _dir: dir,
        }
    }

    pub(crate) async fn log(&self) -> Vec<LogRow> {
        self.gateway.flush().await.unwrap();
        self.store
            .query(
                "SELECT caller, operation, status, attempt, at_ms, latency_us FROM egress_log ORDER BY id",
                vec![],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let (caller, operation, status, attempt, at_ms, latency_us) = r.decode().unwrap();
                LogRow {
                    caller,
                    operation,
                    status,
                    attempt,
                    at_ms,
                    latency_us,
                }
            })
            .collect()
    }

    /// The connectors' log rows from index `from` on (sandbox deliveries left out).
    pub(crate) async fn log_since(&self, from: usize) -> Vec<LogRow> {
        self.log()
            .await
            .into_iter()
            .skip(from)
            .filter(|r| r.caller.starts_with("connection:"))
            .collect()
    }

    /// The gateway another process would have: the same settings and log, its own
    /// rate buckets.
    pub(crate) fn other_process_gateway(&self) -> Gateway {
        Gateway::new(self.egress.clone(), Some(self.store.clone())).unwrap()
    }

    pub(crate) async fn finish(self) {
        self.gateway.flush().await.unwrap();
        self.sb.shutdown().await;
        self.store.close().await;
    }

    fn tiktok_parts(&self) -> (TikTokConfig, TikTokCredentials) {
        let e = &self.sb.tiktok;
        let s = &e.sellers[0];
        let mut cfg = TikTokConfig::with_base_urls(&e.base_url, &e.base_url);
        cfg.shop_cipher = Some(s.shop_cipher.clone());
        cfg.shop_id = Some(s.seller_id.clone());
        let creds = TikTokCredentials {
            app_key: e.app.client_id.clone(),
            app_secret: e.app.client_secret.clone(),
            refresh_token: s.refresh_token.clone(),
        };
        (cfg, creds)
    }

    fn tiktok_with(&self, cfg: TikTokConfig, creds: TikTokCredentials) -> TikTokConnector {
        TikTokConnector::new(
            cfg,
            creds,
            &self.gateway,
            Caller::Connection("tiktok".into()),
        )
    }

    fn tiktok(&self) -> TikTokConnector {
        let (cfg, creds) = self.tiktok_parts();
        self.tiktok_with(cfg, creds)
    }

    pub(crate) fn amazon_parts(&self) -> (AmazonConfig, AmazonCredentials) {
        let e = &self.sb.amazon;
        let s = &e.sellers[0];
        let mut cfg = AmazonConfig::with_base_urls(
            &e.base_url,
            format!("{}/auth/o2/token", e.base_url),
            &s.seller_id,
        );
        cfg.marketplace_ids = vec![s.marketplace_id.clone()];
        cfg.feed_poll_interval = Duration::from_millis(50);
        cfg.feed_poll_attempts = 100;
        let creds = AmazonCredentials {
            client_id: e.app.client_id.clone(),
            client_secret: e.app.client_secret.clone(),
            refresh_token: s.refresh_token.clone(),
            event_key: Some(self.sb.amazon_event_secret().clone()),
        };
        (cfg, creds)
    }

    pub(crate) fn amazon_with(
        &self,
        cfg: AmazonConfig,
        creds: AmazonCredentials,
    ) -> AmazonConnector {
        AmazonConnector::new(
            cfg,
            creds,
            &self.gateway,
            Caller::Connection("amazon".into()),
        )
    }

    fn amazon(&self) -> AmazonConnector {
        let (cfg, creds) = self.amazon_parts();
        self.amazon_with(cfg, creds)
    }

    fn ebay_parts(&self) -> (EbayConfig, EbayCredentials) {
        self.ebay_seller_parts(0)
    }

    /// eBay's configuration and credentials for the simulator's seller `seller` (every
    /// seller authorized through the one application).
    pub(crate) fn ebay_seller_parts(&self, seller: usize) -> (EbayConfig, EbayCredentials) {
        let e = &self.sb.ebay;
        let s = &e.sellers[seller];
        let mut cfg = EbayConfig::with_base_url(&e.base_url);
        cfg.account = s.user_id.clone();
        cfg.marketplace_id = Some(s.marketplace_id.clone());
        let creds = EbayCredentials {
            client_id: e.app.client_id.clone(),
            client_secret: e.app.client_secret.clone(),
            refresh_token: s.refresh_token.clone(),
            verification_token: Some(self.sb.ebay_verification_token().clone()),
        };
        (cfg, creds)
    }

    fn ebay_with(&self, cfg: EbayConfig, creds: EbayCredentials) -> EbayConnector {
        EbayConnector::new(cfg, creds, &self.gateway, Caller::Connection("ebay".into()))
    }

    fn ebay(&self) -> EbayConnector {
        let (cfg, creds) = self.ebay_parts();
        self.ebay_with(cfg, creds)
    }

    pub(crate) fn connector(&self, m: Marketplace) -> AnyConnector {
        match m {
            Marketplace::TikTok => self.tiktok().into(),
            Marketplace::Amazon => self.amazon().into(),
            Marketplace::Ebay => self.ebay().into(),
        }
    }

    pub(crate) fn seller(&self, m: Marketplace) -> String {
        self.sb.endpoint(m).sellers[0].seller_id.clone()
    }

    /// A fixed fault from now on (the rest of the faults off).
    fn fault(&self, m: Marketplace, faults: Faults) {
        self.sb.set_faults(m, faults);
    }
}

fn bind() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// The operation names of one marketplace's connector.
fn token_op(m: Marketplace) -> &'static str {
    match m {
        Marketplace::TikTok => "tiktok.token",
        Marketplace::Amazon => "amazon.lwa",
        Marketplace::Ebay => "ebay.token",
    }
}

fn search_op(m: Marketplace) -> &'static str {
    match m {
        Marketplace::TikTok => "tiktok.orders.search",
        Marketplace::Amazon => "amazon.searchOrders",
        Marketplace::Ebay => "ebay.orders.search",
    }
}

fn get_order_op(m: Marketplace) -> &'static str {
    match m {
        Marketplace::TikTok => "tiktok.orders.get",
        Marketplace::Amazon => "amazon.getOrder",
        Marketplace::Ebay => "ebay.orders.get",
    }
}

fn count(rows: &[LogRow], op: &str) -> usize {
    rows.iter().filter(|r| r.operation == op).count()
}

fn sku_totals<'a>(lines: impl IntoIterator<Item = (&'a str, u32)>) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for (sku, q) in lines {
        *out.entry(sku.to_owned()).or_insert(0) += q;
    }
    out
}

fn assert_err(result: Result<impl std::fmt::Debug, MarketError>, kind: ErrorKind, code: &str) {
    let e = result.expect_err("the call should have been refused");
    assert_eq!(e.kind, kind, "{e}");
    assert_eq!(e.code.as_deref(), Some(code), "{e}");
}

// ---------------------------------------------------------------------------------------
// Webhook / event receiver
// ---------------------------------------------------------------------------------------

type Verdicts = Arc<Mutex<Vec<Result<InboundEvent, EventError>>>>;

#[derive(Clone)]
struct Inbox {
    connector: Arc<AnyConnector>,
    verdicts: Verdicts,
}

async fn receive(
    State(inbox): State<Inbox>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = InboundRequest {
        method,
        path_and_query: uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers,
        body: body.to_vec(),
    };
    let verdict = inbox.connector.verify_event(&request).await;
    let response = match &verdict {
        Ok(InboundEvent::Challenge { response_body }) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            response_body.clone(),
        )
            .into_response(),
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => StatusCode::from_u16(e.http_status())
            .unwrap_or(StatusCode::BAD_REQUEST)
            .into_response(),
    };
    inbox.verdicts.lock().unwrap().push(verdict);
    response
}

struct Receiver {
    url: String,
    verdicts: Verdicts,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// The URL a receiver on `listener` will have.
    fn url_of(listener: &TcpListener, m: Marketplace) -> String {
        format!(
            "https://{}/hooks/{}",
            listener.local_addr().unwrap(),
            m.as_str()
        )
    }

    fn start(
        h: &Harness,
        listener: TcpListener,
        m: Marketplace,
        connector: Arc<AnyConnector>,
    ) -> Self {
        let url = Receiver::url_of(&listener, m);
        let verdicts = Verdicts::default();
        let app = Router::new().fallback(receive).with_state(Inbox {
            connector,
            verdicts: verdicts.clone(),
        });
        let server = axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(h.sb.tls_server_config()),
        )
        .unwrap();
        let task = tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        Receiver {
            url,
            verdicts,
            task,
        }
    }

    fn take(&self) -> Vec<Result<InboundEvent, EventError>> {
        std::mem::take(&mut *self.verdicts.lock().unwrap())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start a receiver for `m` (events verified by `connector`) and point the sandbox's
/// deliveries at it through the harness gateway.
async fn with_receiver(
    m: Marketplace,
    connector: impl FnOnce(&Harness, &str) -> AnyConnector,
) -> (Harness, Arc<AnyConnector>, Receiver) {
    let listener = bind();
    let h = Harness::start(config(), &[&listener]).await;
    let url = Receiver::url_of(&listener, m);
    let c = Arc::new(connector(&h, &url));
    let rx = Receiver::start(&h, listener, m, c.clone());
    assert_eq!(rx.url, url);
    h.sb.set_gateway(Some(h.gateway.clone()));
    h.sb.set_webhook(m, Some(url));
    h.sb.flush_deliveries().await;
    (h, c, rx)
}

// ---------------------------------------------------------------------------------------
// (1) Token refresh on expiry
// ---------------------------------------------------------------------------------------

async fn token_refresh_on_expiry(m: Marketplace) {
    let h = Harness::start(config(), &[]).await;
    h.sb.generate_orders(m, 3);
    let c = h.connector(m);
    let first = c.list_all_orders(0).await.unwrap().0;
    assert_eq!(first.len(), 3);

    let mark = h.log().await.len();
    h.sb.expire_tokens_now();
    let again = c.list_all_orders(0).await.unwrap().0;
    assert_eq!(again.len(), 3);

    // The cached token was refused, one refresh happened, the call was repeated.
    let rows = h.log_since(mark).await;
    let trail: Vec<(&str, Option<i64>)> = rows
        .iter()
        .map(|r| (r.operation.as_str(), r.status))
        .collect();
    let refused = if m == Marketplace::Amazon { 403 } else { 401 };
    assert_eq!(
        trail,
        vec![
            (search_op(m), Some(refused)),
            (token_op(m), Some(200)),
            (search_op(m), Some(200)),
        ],
        "{m:?}"
    );

    // An explicit refresh gives a token valid for the sandbox's lifetime.
    let info = c.refresh_token().await.unwrap();
    assert!(info.expires_at_ms > now_ms() + 60_000, "{m:?}");
    assert!(info.rotated_refresh_token.is_none(), "{m:?}");
    assert_eq!(
        count(&h.log_since(mark).await, token_op(m)),
        2,
        "{m:?}: one refresh on expiry, one asked for"
    );

    // Concurrent calls that all meet the expired token share one refresh.
    let mark = h.log().await.len();
    h.sb.expire_tokens_now();
    let cursor = OrderCursor::default();
    let (a, b, c3, d) = tokio::join!(
        c.list_orders(&cursor),
        c.list_orders(&cursor),
        c.list_orders(&cursor),
        c.list_orders(&cursor)
    );
    for page in [a, b, c3, d] {
        assert_eq!(page.unwrap().orders.len(), 3, "{m:?}");
    }
    let rows = h.log_since(mark).await;
    assert_eq!(count(&rows, token_op(m)), 1, "{m:?}: {rows:?}");
    h.finish().await;
}

#[tokio::test]
async fn tiktok_refreshes_the_token_on_expiry() {
    token_refresh_on_expiry(Marketplace::TikTok).await;
}

#[tokio::test]
async fn amazon_refreshes_the_token_on_expiry() {
    token_refresh_on_expiry(Marketplace::Amazon).await;
}

#[tokio::test]
async fn ebay_refreshes_the_token_on_expiry() {
    token_refresh_on_expiry(Marketplace::Ebay).await;
}

// ---------------------------------------------------------------------------------------
// (2) 1,000 orders across pages, and one order in detail
// ---------------------------------------------------------------------------------------

async fn thousand_orders(m: Marketplace) {
    let h = Harness::start(
        SandboxConfig {
            initial_quantity: 10_000,
            ..config()
        },
        &[],
    )
    .await;
    let ids = h.sb.generate_orders(m, 1_000);
    assert_eq!(ids.len(), 1_000, "{m:?}: the listings ran out of stock");
    let c = h.connector(m);

    let (orders, high_water) = c.list_all_orders(0).await.unwrap();
    let listed: Vec<&str> = orders.iter().map(|o| o.external_id.as_str()).collect();
    let unique: BTreeSet<&str> = listed.iter().copied().collect();
    assert_eq!(unique.len(), listed.len(), "{m:?}: duplicates across pages");
    let expected: BTreeSet<String> =
        h.sb.orders(m)
            .into_iter()
            .filter(|o| o.seller_id == h.seller(m))
            .map(|o| o.order_id)
            .collect();
    assert_eq!(expected.len(), 1_000);
    let listed_set: BTreeSet<String> = unique.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(listed_set, expected, "{m:?}: lost orders");
    assert_eq!(
        high_water,
        orders.iter().map(|o| o.updated_at_ms).max().unwrap()
    );
    let pages = count(&h.log_since(0).await, search_op(m));
    assert!(pages >= 5, "{m:?}: {pages} pages");

    // One order in detail: what the sandbox holds, the same as listed.
    let id = &ids[ids.len() / 2];
    let listed_one: &Order = orders.iter().find(|o| &o.external_id == id).unwrap();
    let one = c.get_order(id).await.unwrap();
    assert_eq!(&one, listed_one, "{m:?}: list and get disagree");
    let truth =
        h.sb.orders(m)
            .into_iter()
            .find(|o| &o.order_id == id)
            .unwrap();
    assert_eq!(one.marketplace, m);
    assert_eq!(one.status, OrderStatus::Placed, "{m:?}");
    assert_eq!(
        sku_totals(one.lines.iter().map(|l| (l.sku.as_str(), l.quantity))),
        sku_totals(truth.lines.iter().map(|(s, q)| (s.as_str(), *q))),
        "{m:?}: lines"
    );
    assert!(one.lines.iter().all(|l| !l.line_id.is_empty()));
    assert_eq!(one.created_at_ms / 1000, truth.created_ms / 1000, "{m:?}");
    let name = one.buyer.name.as_ref().expect("buyer name");
    assert!(!name.expose_pii().is_empty());
    let address = one.buyer.address.as_ref().expect("shipping address");
    assert!(
        address
            .line1
            .as_ref()
            .is_some_and(|l| !l.expose_pii().is_empty())
    );
    assert!(
        address.city.is_some() && address.postal_code.is_some(),
        "{m:?}"
    );
    assert_eq!(address.country_code.len(), 2, "{m:?}");
    // Buyer data never shows in Debug output.
    let debug = format!("{one:?}");
    assert!(!debug.contains(name.expose_pii().as_str()), "{m:?}");

    // A status change is seen.
    h.sb.advance_order(m, id, OrderAction::Ship).unwrap();
    let shipped = c.get_order(id).await.unwrap();
    assert_eq!(shipped.status, OrderStatus::Shipped, "{m:?}");
    assert!(shipped.updated_at_ms >= one.updated_at_ms);

    // The next poll from the high-water mark sees the change.
    let (changed, next_high) = c.list_all_orders(high_water).await.unwrap();
    assert!(
        changed
            .iter()
            .any(|o| &o.external_id == id && o.status == OrderStatus::Shipped),
        "{m:?}: the shipped order is not in the next poll"
    );
    assert!(
        changed.iter().all(|o| o.updated_at_ms >= high_water),
        "{m:?}: an order older than the cursor came back"
    );
    if m == Marketplace::Ebay {
        // TikTok and Amazon give whole seconds, so the last second's orders come again;
        // eBay's milliseconds give only what changed, and the order at the mark (the
        // cursor is inclusive).
        assert!(changed.len() <= 2, "{m:?}: {} orders", changed.len());
    }
    assert!(next_high >= shipped.updated_at_ms, "{m:?}");

    let missing = c.get_order("0000000000000000000").await;
    assert_eq!(missing.unwrap_err().kind, ErrorKind::NotFound, "{m:?}");
    h.finish().await;
}

#[tokio::test]
async fn tiktok_lists_a_thousand_orders_without_loss_or_duplicate() {
    thousand_orders(Marketplace::TikTok).await;
}

#[tokio::test]
async fn amazon_lists_a_thousand_orders_without_loss_or_duplicate() {
    thousand_orders(Marketplace::Amazon).await;
}

#[tokio::test]
async fn ebay_lists_a_thousand_orders_without_loss_or_duplicate() {
    thousand_orders(Marketplace::Ebay).await;
}

// ---------------------------------------------------------------------------------------
// (2b) Batch fetch: get_orders gives what get_order gives, with the bulk call
// ---------------------------------------------------------------------------------------

/// The operation `get_orders` calls: the bulk detail call (50 ids a call) where the
/// marketplace has one, getOrder per id on Amazon (Orders v2026-01-01 has no by-ids
/// search).
fn batch_op(m: Marketplace) -> &'static str {
    match m {
        Marketplace::TikTok => "tiktok.orders.get",
        Marketplace::Amazon => "amazon.getOrder",
        Marketplace::Ebay => "ebay.orders.search",
    }
}

/// An id in the marketplace's format that the simulator never generates.
fn unknown_order_id(m: Marketplace) -> &'static str {
    match m {
        Marketplace::TikTok => "576000000000000000",
        Marketplace::Amazon => "110-0000000-0000000",
        Marketplace::Ebay => "00-00000-00000",
    }
}

async fn batch_fetch_equals_get_order(m: Marketplace) {
    let h = Harness::start(
        SandboxConfig {
            initial_quantity: 10_000,
            ..config()
        },
        &[],
    )
    .await;
    let ids = h.sb.generate_orders(m, 130);
    assert_eq!(ids.len(), 130, "{m:?}: the listings ran out of stock");
    // Some orders in other states, so a status mix-up would show.
    h.sb.advance_order(m, &ids[1], OrderAction::Ship).unwrap();
    h.sb.advance_order(m, &ids[2], OrderAction::Cancel).unwrap();
    let c = h.connector(m);
    // The client-side buckets (Amazon getOrder: 0.5 req/s) would make this test slow.
    for op in [batch_op(m), get_order_op(m)] {
        h.gateway.define_limit(op, 10_000.0, 10_000);
    }
    c.refresh_token().await.unwrap();

    // Nothing asked, nothing sent.
    let mark = h.log().await.len();
    assert!(c.get_orders(&[]).await.unwrap().is_empty());
    assert!(h.log_since(mark).await.is_empty(), "{m:?}");

    // 130 known ids, one of them twice, and one the marketplace does not know.
    let mut asked = ids.clone();
    asked.push(ids[7].clone());
    asked.push(unknown_order_id(m).to_owned());
    let mark = h.log().await.len();
    let got = c.get_orders(&asked).await.unwrap();
    let rows = h.log_since(mark).await;
    let calls = match m {
        Marketplace::Amazon => 131,
        // 131 distinct ids, 50 a call.
        _ => 3,
    };
    assert_eq!(count(&rows, batch_op(m)), calls, "{m:?}: {rows:?}");
    assert_eq!(rows.len(), calls, "{m:?}: {rows:?}");

    let by_id: BTreeMap<&str, &Order> = got.iter().map(|o| (o.external_id.as_str(), o)).collect();
    assert_eq!(by_id.len(), got.len(), "{m:?}: an order came back twice");
    assert_eq!(got.len(), 130, "{m:?}");
    assert!(!by_id.contains_key(unknown_order_id(m)), "{m:?}");
    for id in &ids {
        let one = c.get_order(id).await.unwrap();
        assert_eq!(by_id.get(id.as_str()), Some(&&one), "{m:?}: {id}");
    }
    assert_eq!(by_id[ids[1].as_str()].status, OrderStatus::Shipped, "{m:?}");
    assert_eq!(
        by_id[ids[2].as_str()].status,
        OrderStatus::Cancelled,
        "{m:?}"
    );
    h.finish().await;
}

#[tokio::test]
async fn tiktok_batch_fetch_equals_get_order_in_calls_of_50() {
    batch_fetch_equals_get_order(Marketplace::TikTok).await;
}

#[tokio::test]
async fn amazon_batch_fetch_equals_get_order_one_call_per_id() {
    batch_fetch_equals_get_order(Marketplace::Amazon).await;
}

#[tokio::test]
async fn ebay_batch_fetch_equals_get_order_in_calls_of_50() {
    batch_fetch_equals_get_order(Marketplace::Ebay).await;
}

// ---------------------------------------------------------------------------------------
// (3) Wrongly signed or authenticated requests are refused by the simulator
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
struct Broker {
    egress: stockade_egress::Egress,
    refresh_url: String,
}

/// A stand-in TikTok auth host: whatever it is asked, it refreshes with the right app
/// secret at the simulator and passes the answer on. A connector whose auth host is the
/// broker holds a genuine access token while signing with whatever secret it was given.
async fn broker(State(b): State<Broker>) -> Response {
    let resp = b
        .egress
        .send(Request::get(
            b.refresh_url.clone(),
            "/api/v2/token/refresh",
            "test.broker",
        ))
        .await
        .unwrap();
    (
        StatusCode::from_u16(resp.status.as_u16()).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        resp.body,
    )
        .into_response()
}

#[tokio::test]
async fn tiktok_refuses_a_request_signed_with_the_wrong_secret() {
    let listener = bind();
    let h = Harness::start(config(), &[&listener]).await;
    let broker_url = format!("https://{}", listener.local_addr().unwrap());
    let e = &h.sb.tiktok;
    let s = &e.sellers[0];
    let state = Broker {
        egress: h
            .gateway
            .client(Caller::System("test"), &[&e.addr.to_string()]),
        refresh_url: url_with_query(
            &e.base_url,
            "/api/v2/token/refresh",
            &[
                ("app_key", &e.app.client_id),
                ("app_secret", e.app.client_secret.expose_secret()),
                ("refresh_token", s.refresh_token.expose_secret()),
                ("grant_type", "refresh_token"),
            ],
        ),
    };
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(h.sb.tls_server_config()),
    )
    .unwrap();
    let app = Router::new().fallback(broker).with_state(state);
    let task = tokio::spawn(async move {
        let _ = server.serve(app.into_make_service()).await;
    });

    // Control: the right secret, tokens through the broker, works.
    let (mut cfg, creds) = h.tiktok_parts();
    cfg.auth_base = broker_url;
    let good = h.tiktok_with(cfg.clone(), creds.clone());
    good.list_orders(&OrderCursor::default()).await.unwrap();

    // The same with one character of the secret changed: a genuine token, a wrong sign.
    let mut wrong = creds.clone();
    let mut secret = creds.app_secret.expose_secret().clone();
    let last = if secret.ends_with('x') { "y" } else { "x" };
    secret.replace_range(secret.len() - 1.., last);
    wrong.app_secret = SecretString::from(secret);
    let bad = h.tiktok_with(cfg, wrong.clone());
    let mark = h.log().await.len();
    let e = bad.list_orders(&OrderCursor::default()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert_eq!(e.code.as_deref(), Some("106001"), "{e}");
    assert_eq!(e.status, Some(401), "{e}");
    assert_err(bad.get_order("576").await, ErrorKind::Auth, "106001");
    // A bad signature is not a token problem: no refresh loop.
    let rows = h.log_since(mark).await;
    assert_eq!(count(&rows, "tiktok.token"), 1, "{rows:?}");

    // Straight to the simulator, the wrong secret does not even get a token.
    let (cfg, _) = h.tiktok_parts();
    let direct = h.tiktok_with(cfg, wrong);
    let e = direct.refresh_token().await.unwrap_err();
    assert_eq!(e.status, Some(401), "{e}");
    assert_eq!(e.code.as_deref(), Some("36004004"), "{e}");
    task.abort();
    h.finish().await;
}

#[tokio::test]
async fn amazon_refuses_a_corrupted_client_secret_or_refresh_token() {
    let h = Harness::start(config(), &[]).await;
    let (cfg, creds) = h.amazon_parts();
    h.amazon_with(cfg.clone(), creds.clone())
        .refresh_token()
        .await
        .unwrap();

    let mut wrong_secret = creds.clone();
    wrong_secret.client_secret =
        SecretString::from(format!("{}0", creds.client_secret.expose_secret()));
    let c = h.amazon_with(cfg.clone(), wrong_secret);
    let e = c.refresh_token().await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref(), e.status),
        (ErrorKind::Auth, Some("invalid_client"), Some(401)),
        "{e}"
    );
    assert_err(
        c.list_orders(&OrderCursor::default()).await,
        ErrorKind::Auth,
        "invalid_client",
    );

    let mut wrong_token = creds.clone();
    let mut token = creds.refresh_token.expose_secret().clone();
    token.insert(token.len() / 2, 'Z');
    wrong_token.refresh_token = SecretString::from(token);
    let c = h.amazon_with(cfg, wrong_token);
    let e = c.refresh_token().await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref(), e.status),
        (ErrorKind::Revoked, Some("invalid_grant"), Some(400)),
        "{e}"
    );
    assert_err(
        c.get_quantities(&[ListingRef::sku("SKU-0001")]).await,
        ErrorKind::Revoked,
        "invalid_grant",
    );
    h.finish().await;
}

#[tokio::test]
async fn ebay_refuses_a_wrong_client_secret_or_refresh_token() {
    let h = Harness::start(config(), &[]).await;
    let (cfg, creds) = h.ebay_parts();
    h.ebay_with(cfg.clone(), creds.clone())
        .refresh_token()
        .await
        .unwrap();

    let mut wrong_secret = creds.clone();
    wrong_secret.client_secret =
        SecretString::from(format!("x{}", creds.client_secret.expose_secret()));
    let c = h.ebay_with(cfg.clone(), wrong_secret);
    let e = c.refresh_token().await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref(), e.status),
        (ErrorKind::Auth, Some("invalid_client"), Some(401)),
        "{e}"
    );
    assert_err(
        c.list_orders(&OrderCursor::default()).await,
        ErrorKind::Auth,
        "invalid_client",
    );

    let mut wrong_token = creds.clone();
    wrong_token.refresh_token =
        SecretString::from(format!("{}A", creds.refresh_token.expose_secret()));
    let c = h.ebay_with(cfg, wrong_token);
    let e = c.refresh_token().await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref(), e.status),
        (ErrorKind::Revoked, Some("invalid_grant"), Some(400)),
        "{e}"
    );
    h.finish().await;
}

// ---------------------------------------------------------------------------------------
// (4) 429 → backoff → success; 5xx → retry → success
// ---------------------------------------------------------------------------------------

async fn throttled_then_served(m: Marketplace) {
    let h = Harness::start(config(), &[]).await;
    let ids = h.sb.generate_orders(m, 3);
    let c = h.connector(m);
    c.refresh_token().await.unwrap();

    // A storm: every call answered 429 until it passes.
    let storm_until = now_ms() + 300;
    h.fault(
        m,
        Faults {
            storm_until_ms: storm_until,
            ..Faults::none()
        },
    );
    let mark = h.log().await.len();
    let order = c.get_order(&ids[0]).await.unwrap();
    assert_eq!(order.external_id, ids[0]);
    let rows = h.log_since(mark).await;
    let op = get_order_op(m);
    let (throttled, served): (Vec<&LogRow>, Vec<&LogRow>) = rows
        .iter()
        .filter(|r| r.operation == op)
        .partition(|r| r.status == Some(429));
    assert!(!throttled.is_empty(), "{m:?}: {rows:?}");
    assert_eq!(served.len(), 1, "{m:?}: {rows:?}");
    let ok = served[0];
    assert_eq!(ok.status, Some(200));
    assert_eq!(ok.attempt, throttled.len() as i64 + 1, "{m:?}: {rows:?}");
    // The client stamps a call when it sends it; the simulator decides when the request
    // arrives. The answer must have come back after the storm ended (a call sent a moment
    // before the end may arrive after it and be served).
    let answered_by_ms = ok.at_ms + 1 + (ok.latency_us + 999) / 1000;
    assert!(
        answered_by_ms >= storm_until,
        "{m:?}: served before the storm ended ({} ms early)",
        storm_until - answered_by_ms
    );
    assert!(throttled.iter().all(|r| r.at_ms < storm_until + 50));

    // Half the calls fail with the marketplace's 500 (seeded: the same every run).
    h.fault(
        m,
        Faults {
            error_rate: 0.5,
            ..Faults::none()
        },
    );
    let mark = h.log().await.len();
    for _ in 0..4 {
        for id in &ids {
            assert_eq!(&c.get_order(id).await.unwrap().external_id, id);
        }
    }
    let rows = h.log_since(mark).await;
    let errors = rows.iter().filter(|r| r.status == Some(500)).count();
    let served = rows.iter().filter(|r| r.status == Some(200)).count();
    assert_eq!(served, 12, "{m:?}: {rows:?}");
    assert!(errors >= 3, "{m:?}: only {errors} errors in {rows:?}");
    assert!(rows.iter().all(|r| r.operation == op));
    h.fault(m, Faults::none());
    h.finish().await;
}

#[tokio::test]
async fn tiktok_backs_off_on_429_and_retries_5xx() {
    throttled_then_served(Marketplace::TikTok).await;
}

#[tokio::test]
async fn amazon_backs_off_on_429_and_retries_5xx() {
    throttled_then_served(Marketplace::Amazon).await;
}

#[tokio::test]
async fn ebay_backs_off_on_429_and_retries_5xx() {
    throttled_then_served(Marketplace::Ebay).await;
}

#[tokio::test]
async fn tiktok_rides_out_the_simulators_own_rate_limit() {
    // The simulator allows 4 requests a second per shop and operation class; the client
    // side is told it may go much faster, so the simulator's 429s do the pacing.
    let h = Harness::start(
        SandboxConfig {
            rate_limits: true,
            tiktok_rate: (4.0, 2),
            ..config()
        },
        &[],
    )
    .await;
    let ids = h.sb.generate_orders(Marketplace::TikTok, 6);
    let (mut cfg, creds) = h.tiktok_parts();
    cfg.rate = (1_000.0, 1_000);
    let c = h.tiktok_with(cfg, creds);
    for id in &ids {
        assert_eq!(&c.get_order(id).await.unwrap().external_id, id);
    }
    let rows = h.log_since(0).await;
    let get: Vec<&LogRow> = rows
        .iter()
        .filter(|r| r.operation == "tiktok.orders.get")
        .collect();
    assert!(get.iter().any(|r| r.status == Some(429)), "{rows:?}");
    assert_eq!(get.iter().filter(|r| r.status == Some(200)).count(), 6);
    h.finish().await;
}

// ---------------------------------------------------------------------------------------
// (5) Quantities round-trip
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn tiktok_sets_quantities_per_product_and_reads_them_back() {
    let h = Harness::start(config(), &[]).await;
    let c = h.tiktok();
    let shop = h.seller(Marketplace::TikTok);
    let listings: Vec<_> =
        h.sb.listings(Marketplace::TikTok)
            .into_iter()
            .filter(|l| l.seller_id == shop)
            .collect();
    assert_eq!(listings.len(), 10);
    let products: BTreeSet<&str> = listings.iter().map(|l| l.product_id.as_str()).collect();
    assert!(products.len() > 1 && products.len() < listings.len());
    let refs: Vec<ListingRef> = listings
        .iter()
        .map(|l| ListingRef {
            sku: l.sku.clone(),
            product_id: Some(l.product_id.clone()),
            variant_id: Some(l.sku_id.clone()),
            warehouse_ids: vec![l.warehouse_id.clone()],
            ..ListingRef::default()
        })
        .collect();
    let updates: Vec<QuantityUpdate> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| QuantityUpdate {
            sku: r.sku.clone(),
            quantity: (i as u32) * 7, // the first goes out of stock (0)
            listing: r.clone(),
        })
        .collect();
    let acks = c.set_quantities(&updates).await.unwrap();
    assert_eq!(acks.len(), updates.len());
    for (a, u) in acks.iter().zip(&updates) {
        assert!(a.accepted, "{a:?}");
        assert_eq!((&a.sku, a.quantity), (&u.sku, u.quantity));
    }
    // One inventory call per product, each carrying all of its SKUs.
    let rows = h.log_since(0).await;
    assert_eq!(
        count(&rows, "tiktok.inventory.update"),
        products.len(),
        "{rows:?}"
    );
    for u in &updates {
        let l = h.sb.listing(Marketplace::TikTok, &shop, &u.sku).unwrap();
        assert_eq!(l.quantity, u.quantity, "{}", u.sku);
    }
    let expected: Vec<(String, u32)> = updates
        .iter()
        .map(|u| (u.sku.clone(), u.quantity))
        .collect();
    assert_eq!(c.get_quantities(&refs).await.unwrap(), expected);
    // Known by product only: found by seller SKU.
    let by_product: Vec<ListingRef> = refs
        .iter()
        .take(3)
        .map(|r| ListingRef {
            variant_id: None,
            ..r.clone()
        })
        .collect();
    assert_eq!(
        c.get_quantities(&by_product).await.unwrap(),
        expected[..3].to_vec()
    );

    // An SKU that is not the product's is refused on its own; the rest go through.
    let mut mixed = updates[..2].to_vec();
    mixed[0].quantity = 5;
    mixed[1].quantity = 6;
    mixed[1].listing.variant_id = Some("1".repeat(19));
    let acks = c.set_quantities(&mixed).await.unwrap();
    assert!(acks[0].accepted, "{acks:?}");
    assert!(!acks[1].accepted, "{acks:?}");
    let err = acks[1].error.as_ref().unwrap();
    assert_eq!(
        (err.kind, err.code.as_deref()),
        (ErrorKind::Invalid, Some("36004004"))
    );
    let l =
        h.sb.listing(Marketplace::TikTok, &shop, &mixed[0].sku)
            .unwrap();
    assert_eq!(l.quantity, 5);
    h.finish().await;
}

#[tokio::test]
async fn amazon_patches_small_batches_and_feeds_large_ones() {
    let h = Harness::start(
        SandboxConfig {
            skus: 25,
            ..config()
        },
        &[],
    )
    .await;
    let c = h.amazon();
    let seller = h.seller(Marketplace::Amazon);
    let update = |sku: &str, quantity: u32| QuantityUpdate {
        sku: sku.to_owned(),
        quantity,
        listing: ListingRef::sku(sku),
    };

    // Small: one Listings Items PATCH per SKU.
    let small: Vec<QuantityUpdate> = (1..=5)
        .map(|i| update(&format!("SKU-{i:04}"), 40 + i))
        .collect();
    let acks = c.set_quantities(&small).await.unwrap();
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    let rows = h.log_since(0).await;
    assert_eq!(count(&rows, "amazon.patchListingsItem"), 5);
    assert_eq!(count(&rows, "amazon.createFeed"), 0);
    let refs: Vec<ListingRef> = small.iter().map(|u| u.listing.clone()).collect();
    let expected: Vec<(String, u32)> = small.iter().map(|u| (u.sku.clone(), u.quantity)).collect();
    assert_eq!(c.get_quantities(&refs).await.unwrap(), expected);

    // Large (above the threshold of 20): one JSON_LISTINGS_FEED.
    let mark = h.log().await.len();
    let large: Vec<QuantityUpdate> = (1..=25)
        .map(|i| update(&format!("SKU-{i:04}"), 200 + i))
        .collect();
    let acks = c.set_quantities(&large).await.unwrap();
    assert_eq!(acks.len(), 25);
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    let rows = h.log_since(mark).await;
    for op in [
        "amazon.createFeedDocument",
        "amazon.uploadFeedDocument",
        "amazon.createFeed",
        "amazon.getFeedDocument",
        "amazon.downloadFeedDocument",
    ] {
        assert_eq!(count(&rows, op), 1, "{op}: {rows:?}");
    }
    assert!(count(&rows, "amazon.getFeed") >= 1);
    assert_eq!(count(&rows, "amazon.patchListingsItem"), 0);
    for u in &large {
        let l = h.sb.listing(Marketplace::Amazon, &seller, &u.sku).unwrap();
        assert_eq!(l.quantity, u.quantity, "{}", u.sku);
    }
    let refs: Vec<ListingRef> = large[20..].iter().map(|u| u.listing.clone()).collect();
    let expected: Vec<(String, u32)> = large[20..]
        .iter()
        .map(|u| (u.sku.clone(), u.quantity))
        .collect();
    assert_eq!(c.get_quantities(&refs).await.unwrap(), expected);

    // A SKU the seller does not have: refused per SKU in the feed's report.
    let mut with_unknown = large.clone();
    with_unknown[3] = update("NO-SUCH-SKU", 9);
    let acks = c.set_quantities(&with_unknown).await.unwrap();
    assert!(!acks[3].accepted, "{:?}", acks[3]);
    assert_eq!(acks.iter().filter(|a| a.accepted).count(), 24, "{acks:?}");
    // And unknown SKUs are left out of a read-back.
    assert!(
        c.get_quantities(&[ListingRef::sku("NO-SUCH-SKU")])
            .await
            .unwrap()
            .is_empty()
    );
    h.finish().await;
}

#[tokio::test]
async fn ebay_updates_quantities_in_chunks_of_25() {
    let h = Harness::start(
        SandboxConfig {
            skus: 30,
            ..config()
        },
        &[],
    )
    .await;
    let c = h.ebay();
    let seller = h.seller(Marketplace::Ebay);
    let listings: Vec<_> =
        h.sb.listings(Marketplace::Ebay)
            .into_iter()
            .filter(|l| l.seller_id == seller)
            .collect();
    assert_eq!(listings.len(), 30);
    // Half known by offer id, half looked up by SKU.
    let updates: Vec<QuantityUpdate> = listings
        .iter()
        .enumerate()
        .map(|(i, l)| QuantityUpdate {
            sku: l.sku.clone(),
            quantity: 3 * i as u32,
            listing: ListingRef {
                sku: l.sku.clone(),
                offer_ids: if i % 2 == 0 {
                    vec![l.offer_id.clone()]
                } else {
                    Vec::new()
                },
                ..ListingRef::default()
            },
        })
        .collect();
    let acks = c.set_quantities(&updates).await.unwrap();
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    let rows = h.log_since(0).await;
    assert_eq!(count(&rows, "ebay.inventory.bulk_update"), 2, "{rows:?}");
    assert_eq!(count(&rows, "ebay.inventory.offers"), 15, "{rows:?}");
    for u in &updates {
        let l = h.sb.listing(Marketplace::Ebay, &seller, &u.sku).unwrap();
        assert_eq!(l.quantity, u.quantity, "{}", u.sku);
        assert_eq!(l.revisions_today, 1, "{}", u.sku);
    }
    let refs: Vec<ListingRef> = updates.iter().map(|u| u.listing.clone()).collect();
    let expected: Vec<(String, u32)> = updates
        .iter()
        .map(|u| (u.sku.clone(), u.quantity))
        .collect();
    assert_eq!(c.get_quantities(&refs).await.unwrap(), expected);
    h.finish().await;
}

// ---------------------------------------------------------------------------------------
// (6) Events: order changes and revocation
// ---------------------------------------------------------------------------------------

fn order_ids(verdicts: &[Result<InboundEvent, EventError>]) -> BTreeSet<String> {
    verdicts
        .iter()
        .map(|v| match v {
            Ok(InboundEvent::OrderChanged { external_id, .. }) => external_id.clone(),
            other => panic!("not an order event: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn tiktok_order_and_deauthorization_webhooks_are_verified() {
    let (h, c, rx) = with_receiver(Marketplace::TikTok, |h, _| h.tiktok().into()).await;
    let shop = h.seller(Marketplace::TikTok);
    let ids = h.sb.generate_orders(Marketplace::TikTok, 3);
    h.sb.flush_deliveries().await;
    let verdicts = rx.take();
    assert_eq!(order_ids(&verdicts), ids.iter().cloned().collect());
    for v in &verdicts {
        let Ok(InboundEvent::OrderChanged {
            account, status, ..
        }) = v
        else {
            unreachable!()
        };
        assert_eq!(account.as_deref(), Some(shop.as_str()));
        assert_eq!(status.as_deref(), Some("AWAITING_SHIPMENT"));
    }
    // The trigger leads to the order.
    assert_eq!(c.get_order(&ids[0]).await.unwrap().external_id, ids[0]);

    // A delivered body with one byte changed is refused, and so answered.
    let d =
        h.sb.deliveries()
            .into_iter()
            .find(|d| d.kind == "ORDER_STATUS_CHANGE")
            .unwrap();
    assert!(d.ok(), "{d:?}");
    let mut headers = HeaderMap::new();
    for (k, v) in &d.headers {
        headers.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let tampered = d.body.replacen("AWAITING_SHIPMENT", "AWAITING_SHIPMENU", 1);
    let verdict = c
        .verify_event(&InboundRequest::post(
            "/hooks/tiktok",
            headers,
            tampered.into_bytes(),
        ))
        .await;
    assert_eq!(verdict, Err(EventError::BadSignature));

    h.sb.revoke(Marketplace::TikTok, &shop).unwrap();
    h.sb.flush_deliveries().await;
    assert_eq!(
        rx.take(),
        vec![Ok(InboundEvent::Revoked {
            account: shop.clone(),
            reason: "SELLER_DEAUTHORIZATION".into()
        })]
    );
    let deliveries = h.sb.deliveries();
    assert!(deliveries.iter().all(|d| d.ok()), "{deliveries:?}");
    // The revoked shop's token is dead and cannot be refreshed.
    let e = c.get_order(&ids[0]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert_eq!(e.code.as_deref(), Some("105001"), "{e}");
    h.finish().await;
}

#[tokio::test]
async fn amazon_order_change_events_are_verified_and_revocation_shows_on_refresh() {
    let (h, c, rx) = with_receiver(Marketplace::Amazon, |h, _| h.amazon().into()).await;
    c.refresh_token().await.unwrap();
    let ids = h.sb.generate_orders(Marketplace::Amazon, 3);
    h.sb.flush_deliveries().await;
    let verdicts = rx.take();
    assert_eq!(order_ids(&verdicts), ids.iter().cloned().collect());
    let deliveries = h.sb.deliveries();
    assert_eq!(deliveries.len(), 3);
    assert!(deliveries.iter().all(|d| d.ok()), "{deliveries:?}");
    assert_eq!(c.get_order(&ids[1]).await.unwrap().external_id, ids[1]);

    // Without the shared secret, a delivery is refused.
    let body = deliveries[0].body.clone().into_bytes();
    let verdict = c
        .verify_event(&InboundRequest::post(
            "/hooks/amazon",
            HeaderMap::new(),
            body,
        ))
        .await;
    assert!(
        matches!(verdict, Err(EventError::MissingSignature(_))),
        "{verdict:?}"
    );

    // Amazon sends no deauthorization event: the refresh says invalid_grant.
    h.sb.revoke(Marketplace::Amazon, &h.seller(Marketplace::Amazon))
        .unwrap();
    let e = c.get_order(&ids[0]).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref()),
        (ErrorKind::Revoked, Some("invalid_grant")),
        "{e}"
    );
    let e = c.refresh_token().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Revoked, "{e}");
    h.finish().await;
}

#[tokio::test]
async fn ebay_challenge_order_and_revocation_notifications_are_verified() {
    let (h, c, rx) = with_receiver(Marketplace::Ebay, |h, url| {
        let (mut cfg, creds) = h.ebay_parts();
        cfg.endpoint_url = Some(url.to_owned());
        h.ebay_with(cfg, creds).into()
    })
    .await;
    // The endpoint validation challenge was answered.
    let verdicts = rx.take();
    assert!(
        matches!(verdicts.as_slice(), [Ok(InboundEvent::Challenge { .. })]),
        "{verdicts:?}"
    );
    let d = h.sb.deliveries();
    assert!(d.iter().any(|d| d.kind == "challenge" && d.ok()), "{d:?}");

    let ids = h.sb.generate_orders(Marketplace::Ebay, 3);
    h.sb.flush_deliveries().await;
    let verdicts = rx.take();
    assert!(verdicts.len() >= 3, "one per line item: {verdicts:?}");
    assert_eq!(order_ids(&verdicts), ids.iter().cloned().collect());
    assert_eq!(c.get_order(&ids[2]).await.unwrap().external_id, ids[2]);

    let user = h.sb.ebay.sellers[0].user_id.clone();
    h.sb.account_deletion(&h.seller(Marketplace::Ebay)).unwrap();
    // Deliveries run concurrently: flush so the two arrive in a known order.
    h.sb.flush_deliveries().await;
    h.sb.revoke(Marketplace::Ebay, &h.seller(Marketplace::Ebay))
        .unwrap();
    h.sb.flush_deliveries().await;
    assert_eq!(
        rx.take(),
        vec![
            Ok(InboundEvent::Revoked {
                account: user.clone(),
                reason: "MARKETPLACE_ACCOUNT_DELETION".into()
            }),
            Ok(InboundEvent::Revoked {
                account: user,
                reason: "REVOKED_BY_USER".into()
            }),
        ]
    );
    let deliveries = h.sb.deliveries();
    assert!(deliveries.iter().all(|d| d.ok()), "{deliveries:?}");
    // The public key was fetched once and then cached.
    let rows = h.log_since(0).await;
    assert_eq!(count(&rows, "ebay.notification.public_key"), 1, "{rows:?}");

    let e = c.refresh_token().await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref()),
        (ErrorKind::Revoked, Some("invalid_grant")),
        "{e}"
    );
    h.finish().await;
}

#[tokio::test]
async fn ebay_refuses_a_notification_with_a_corrupted_signature() {
    let (h, c, rx) = with_receiver(Marketplace::Ebay, |h, url| {
        let (mut cfg, creds) = h.ebay_parts();
        cfg.endpoint_url = Some(url.to_owned());
        h.ebay_with(cfg, creds).into()
    })
    .await;
    rx.take();
    h.sb.generate_orders(Marketplace::Ebay, 1);
    h.sb.flush_deliveries().await;
    assert!(rx.take().iter().all(Result::is_ok));
    let d =
        h.sb.deliveries()
            .into_iter()
            .find(|d| d.kind == "ORDER_CONFIRMATION")
            .unwrap();
    let mut headers = HeaderMap::new();
    for (k, v) in &d.headers {
        headers.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let good = InboundRequest::post("/hooks/ebay", headers.clone(), d.body.clone().into_bytes());
    assert!(matches!(
        c.verify_event(&good).await,
        Ok(InboundEvent::OrderChanged { .. })
    ));
    let tampered = d
        .body
        .replacen("ORDER_CONFIRMATION", "ORDER_CONFIRMATIOM", 1);
    let bad = InboundRequest::post("/hooks/ebay", headers, tampered.into_bytes());
    assert_eq!(c.verify_event(&bad).await, Err(EventError::BadSignature));
    h.finish().await;
}

#[tokio::test]
async fn ebay_daily_revision_cap_is_kept_on_both_sides() {
    let h = Harness::start(
        SandboxConfig {
            ebay_revision_cap: 2,
            ..config()
        },
        &[],
    )
    .await;
    let seller = h.seller(Marketplace::Ebay);
    let update = |q: u32| {
        vec![QuantityUpdate {
            sku: "SKU-0001".into(),
            quantity: q,
            listing: ListingRef::sku("SKU-0001"),
        }]
    };
    // The simulator's cap (2 a day) is below the client's (250): the third revision is
    // refused by eBay, per SKU, with its own error id.
    let c = h.ebay();
    for q in [1, 2] {
        assert!(c.set_quantities(&update(q)).await.unwrap()[0].accepted);
    }
    let ack = c.set_quantities(&update(3)).await.unwrap().remove(0);
    assert!(!ack.accepted, "{ack:?}");
    assert_eq!(ack.error.unwrap().code.as_deref(), Some("25019"));
    let l =
        h.sb.listing(Marketplace::Ebay, &seller, "SKU-0001")
            .unwrap();
    assert_eq!((l.quantity, l.revisions_today), (2, 2));

    // With the client's cap at 2, the third is refused before anything is sent.
    let (mut cfg, creds) = h.ebay_parts();
    cfg.daily_revision_limit = 2;
    let c = h.ebay_with(cfg, creds);
    for q in [4, 5] {
        let _ = c.set_quantities(&update(q)).await.unwrap();
    }
    let mark = h.log().await.len();
    let ack = c.set_quantities(&update(6)).await.unwrap().remove(0);
    let e = ack.error.unwrap();
    assert_eq!(
        (e.kind, e.code.as_deref()),
        (ErrorKind::Throttled, Some("daily_revision_limit"))
    );
    let rows = h.log_since(mark).await;
    assert_eq!(count(&rows, "ebay.inventory.bulk_update"), 0, "{rows:?}");
    h.finish().await;
}

#[tokio::test]
async fn malformed_answers_are_typed_errors() {
    let h = Harness::start(config(), &[]).await;
    for m in Marketplace::ALL {
        let ids = h.sb.generate_orders(m, 1);
        let c = h.connector(m);
        c.refresh_token().await.unwrap();
        // Every answer is 200 with an HTML page or truncated JSON.
        h.fault(
            m,
            Faults {
                malformed_rate: 1.0,
                ..Faults::none()
            },
        );
        for _ in 0..4 {
            let e = c.get_order(&ids[0]).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Malformed, "{m:?}: {e}");
        }
        h.fault(m, Faults::none());
        assert_eq!(c.get_order(&ids[0]).await.unwrap().external_id, ids[0]);
    }
    h.finish().await;
}
