//! Marketplace simulators: TikTok Shop, Amazon SP-API and eBay, each an HTTPS server on
//! an ephemeral loopback port behind one generated test CA.
//!
//! The simulators enforce the contract in `reference/marketplaces.md` the way the
//! marketplaces do: the same paths, methods, auth and signature checks, error bodies,
//! status codes, token expiry, pagination and per-operation rate limits. State lives in
//! memory; an order generator with a seeded RNG produces realistic orders (buyers never
//! buy more than a listing displays), signed events go out through the egress gateway,
//! and faults (latency, 5xx, 429 storms, hangs, malformed bodies, dropped connections)
//! can be injected at start and at run time.
//!
//! [`bots`] is a separate simulator of the DingTalk and Feishu / Lark alert bots and a
//! generic signed webhook receiver ([`Bots`]).

// Request checks return the marketplace's ready-made error response as their `Err`.
#![allow(clippy::result_large_err)]

/// A handler step's value, or its error response returned at once.
macro_rules! or_return {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

mod acked;
mod admin;
// What a benchmark in another process reads back: acknowledged orders, quantity history.
mod amazon;
mod amazon_reports;
mod bench_reads;
// Who called the simulators' APIs (`/_sandbox/callers`).
pub mod bots;
mod callers;
mod deliver;
mod ebay;
mod faults;
// Requests in flight at once per operation (`/_sandbox/in-flight`).
mod in_flight;
mod listings_search;
pub mod nocodb;
mod nocodb_meta;
pub mod nocodb_real;
mod qty_history;
mod ratelimit;
mod resp;
pub mod rng;
pub mod sign;
mod sim;
mod state;
mod tiktok;
mod tls;
pub mod tlsproxy;
mod util;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stockade_core::SecretString;

pub use acked::OrderTally;
pub use bots::{BotFault, BotKind, Bots, BotsConfig};
pub use deliver::{Delivery, DeliveryStats};
pub use faults::Faults;
pub use in_flight::InFlight;
pub use nocodb::NocoSim;
pub use nocodb_meta::{SIM_BASE_ID, SIM_BASE_TITLE};
pub use qty_history::{QtyChange, QtySource};
pub use stockade_core::order::Marketplace;
pub use stockade_egress::Gateway;
pub use tls::receiver_tls;

use crate::deliver::{Outbox, OutboxConfig};
use crate::ratelimit::Limiter;
use crate::sim::{EbayKey, Sim, SimConfig};
use crate::state::{Market, Population};

/// Why the sandbox could not start or an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot create the sandbox TLS certificate: {0}")]
    Tls(String),
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(String),
    #[error("the {marketplace:?} sandbox has no seller {seller_id:?}")]
    UnknownSeller {
        marketplace: Marketplace,
        seller_id: String,
    },
    #[error("the {marketplace:?} sandbox has no order {order_id:?}")]
    UnknownOrder {
        marketplace: Marketplace,
        order_id: String,
    },
    #[error("the {marketplace:?} sandbox has no SKU {sku:?} for that seller")]
    UnknownSku {
        marketplace: Marketplace,
        sku: String,
    },
    #[error("invalid order transition: {0}")]
    InvalidTransition(String),
}

/// A sandbox order's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    Placed,
    Shipped,
    Delivered,
    Cancelled,
    Returned,
}

/// A step along an order's lifecycle: placed → shipped → delivered → returned, or
/// placed → cancelled (which puts the units back on the listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderAction {
    Ship,
    Deliver,
    Cancel,
    Return,
}

/// One value per marketplace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerMarketplace<T> {
    pub tiktok: T,
    pub amazon: T,
    pub ebay: T,
}

impl<T> PerMarketplace<T> {
    pub fn get(&self, m: Marketplace) -> &T {
        match m {
            Marketplace::TikTok => &self.tiktok,
            Marketplace::Amazon => &self.amazon,
            Marketplace::Ebay => &self.ebay,
        }
    }

    pub fn get_mut(&mut self, m: Marketplace) -> &mut T {
        match m {
            Marketplace::TikTok => &mut self.tiktok,
            Marketplace::Amazon => &mut self.amazon,
            Marketplace::Ebay => &mut self.ebay,
        }
    }
}

/// How to start the sandbox. [`SandboxConfig::default`] gives the values documented on
/// each field.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Seeds every generated id, credential, key and order (default 1).
    pub seed: u64,
    /// Sellers (shops / selling partners / eBay users) per marketplace (default 1).
    pub sellers: usize,
    /// Listings per seller, SKUs `SKU-0001`… (default 10). TikTok groups two SKUs per product.
    pub skus: usize,
    /// Starting quantity of every listing (default 100).
    pub initial_quantity: u32,
    /// Access-token lifetimes: TikTok 7 days, Amazon 3600 s, eBay 7200 s.
    pub token_ttl: PerMarketplace<Duration>,
    /// Whether rate limits are enforced (default true). Settable at run time.
    pub rate_limits: bool,
    /// Multiplies every refill rate (default 1.0; bursts are unchanged).
    pub rate_scale: f64,
    /// TikTok bucket per shop per operation class (default 10 req/s, burst 10).
    pub tiktok_rate: (f64, u32),
    /// eBay burst bucket per app (default 50 req/s, burst 50).
    pub ebay_burst: (f64, u32),
    /// eBay calls per app per UTC day (default 100 000).
    pub ebay_daily_quota: u32,
    /// eBay revisions per listing per UTC day (default 250; enforced even with rate limits off).
    pub ebay_revision_cap: u32,
    /// TikTok `timestamp` skew accepted (default 300 s).
    pub timestamp_skew: Duration,
    /// Amazon feeds: time spent IN_QUEUE and then IN_PROGRESS (default 200 ms each).
    pub feed_step: Duration,
    /// Share of generated buyers in the US, the rest from GB/DE/CN/JP/FR (default 0.5).
    pub us_share: f64,
    /// Faults at start (default none).
    pub faults: PerMarketplace<Faults>,
    /// Where events go (https URLs; default none). Settable at run time.
    pub webhooks: PerMarketplace<Option<String>>,
    /// The gateway that delivers events (`Caller::Sandbox`); without one, deliveries are
    /// recorded as failed. Its allowlist and extra roots must admit the receivers, and
    /// its per-host rate (`EgressConfig::host_rate`) paces the deliveries too.
    pub gateway: Option<Gateway>,
    /// Deliveries in flight at once, each with its retries (default 64).
    pub delivery_concurrency: usize,
    /// Deliveries kept in the log ([`Sandbox::deliveries`]), the oldest dropped first
    /// (default 100 000; 0 keeps none).
    pub delivery_log_limit: usize,
    /// Whether the log keeps each delivery's body and headers (default true; a load run
    /// turns it off).
    pub record_delivery_bodies: bool,
    /// Amazon EventBridge API-destination shared-secret header (default `x-stockade-event-key`).
    pub amazon_event_header: String,
    /// Its value (default derived from the seed; see [`Sandbox::amazon_event_secret`]).
    pub amazon_event_secret: Option<SecretString>,
    /// eBay endpoint verification token (default derived from the seed).
    pub ebay_verification_token: Option<SecretString>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            seed: 1,
            sellers: 1,
            skus: 10,
            initial_quantity: 100,
            token_ttl: PerMarketplace {
                tiktok: Duration::from_secs(7 * 24 * 3600),
                amazon: Duration::from_secs(3600),
                ebay: Duration::from_secs(7200),
            },
            rate_limits: true,
            rate_scale: 1.0,
            tiktok_rate: (10.0, 10),
            ebay_burst: (50.0, 50),
            ebay_daily_quota: 100_000,
            ebay_revision_cap: 250,
            timestamp_skew: Duration::from_secs(300),
            feed_step: Duration::from_millis(200),
            us_share: 0.5,
            faults: PerMarketplace::default(),
            webhooks: PerMarketplace::default(),
            gateway: None,
            delivery_concurrency: 64,
            delivery_log_limit: 100_000,
            record_delivery_bodies: true,
            amazon_event_header: "x-stockade-event-key".into(),
            amazon_event_secret: None,
            ebay_verification_token: None,
        }
    }
}

/// The application's credentials on one marketplace.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    /// TikTok `app_key`, Amazon LWA `client_id`, eBay `client_id` (App ID).
    pub client_id: String,
    /// TikTok `app_secret`, Amazon LWA `client_secret`, eBay `client_secret` (Cert ID).
    pub client_secret: SecretString,
    /// Amazon `amzn1.sp.solution.…` application id (empty elsewhere).
    pub application_id: String,
}

/// One authorized seller.
#[derive(Debug, Clone)]
pub struct SellerCredentials {
    /// TikTok shop id, Amazon selling partner id (`A…`), eBay username.
    pub seller_id: String,
    pub name: String,
    /// The refresh token issued at authorization.
    pub refresh_token: SecretString,
    /// TikTok `shop_cipher` (empty elsewhere).
    pub shop_cipher: String,
    /// Amazon `ATVPDKIKX0DER`, eBay `EBAY_US` (empty for TikTok).
    pub marketplace_id: String,
    /// TikTok `open_id`, eBay immutable user id.
    pub user_id: String,
}

/// One simulator: where it listens and its test credentials.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub marketplace: Marketplace,
    /// `https://127.0.0.1:PORT`: every path of the marketplace (API, auth and token
    /// hosts alike) is served under it.
    pub base_url: String,
    pub addr: SocketAddr,
    pub app: AppCredentials,
    pub sellers: Vec<SellerCredentials>,
}

/// A listing's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingState {
    pub marketplace: Marketplace,
    pub seller_id: String,
    pub sku: String,
    /// The quantity the channel displays to buyers.
    pub quantity: u32,
    pub title: String,
    /// TikTok ids.
    pub product_id: String,
    pub sku_id: String,
    pub warehouse_id: String,
    /// Amazon ids.
    pub product_type: String,
    pub asin: String,
    /// eBay ids.
    pub offer_id: String,
    pub listing_id: String,
    /// eBay revisions counted today (UTC).
    pub revisions_today: u32,
    pub updated_ms: i64,
}

/// An order's current state (buyer data is not included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub marketplace: Marketplace,
    pub order_id: String,
    pub seller_id: String,
    pub state: OrderState,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// (seller SKU, quantity) per line.
    pub lines: Vec<(String, u32)>,
}

/// The three running simulators.
pub struct Sandbox {
    /// PEM of the test CA that signed the servers' certificate (trust it in clients).
    pub ca_pem: String,
    pub tiktok: Endpoint,
    pub amazon: Endpoint,
    pub ebay: Endpoint,
    sims: PerMarketplace<Arc<Sim>>,
    handles: Vec<axum_server::Handle<SocketAddr>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    outbox: Outbox,
    server_config: Arc<rustls::ServerConfig>,
    amazon_event_secret: SecretString,
    ebay_verification_token: SecretString,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("tiktok", &self.tiktok.base_url)
            .field("amazon", &self.amazon.base_url)
            .field("ebay", &self.ebay.base_url)
            .finish_non_exhaustive()
    }
}

fn ebay_key(seed: u64) -> Option<EbayKey> {
    let mut rng = rng::SplitMix64::new(seed ^ 0xEB_A7_5E_ED);
    let signing = loop {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
        }
        if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&bytes) {
            break k;
        }
    };
    let point = signing.verifying_key().to_encoded_point(false);
    let mut spki_der = sign::P256_SPKI_PREFIX.to_vec();
    spki_der.extend_from_slice(point.as_bytes());
    Some(EbayKey {
        kid: rng.uuid(),
        signing,
        spki_der,
    })
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Marketplace `m`'s simulator settings; `secrets` are Amazon's event secret and eBay's
/// verification token.
fn sim_config(
    config: &SandboxConfig,
    m: Marketplace,
    header: &'static str,
    secrets: (&SecretString, &SecretString),
) -> SimConfig {
    SimConfig {
        access_ttl_ms: ms(*config.token_ttl.get(m)),
        refresh_ttl_ms: 365 * 86_400_000,
        skew_s: i64::try_from(config.timestamp_skew.as_secs()).unwrap_or(300),
        tiktok_rate: config.tiktok_rate,
        ebay_daily_quota: u64::from(config.ebay_daily_quota),
        ebay_burst: config.ebay_burst,
        revision_cap: config.ebay_revision_cap,
        feed_step_ms: ms(config.feed_step),
        us_share: config.us_share,
        amazon_event_header: header,
        amazon_event_secret: secrets.0.expose_secret().clone(),
        ebay_verification_token: secrets.1.expose_secret().clone(),
    }
}

/// Serves marketplace `m`'s API (with the admin routes and fault injection) over TLS on
/// `listener`: the server's task and the handle that stops it.
fn serve(
    m: Marketplace,
    sim: &Arc<Sim>,
    listener: std::net::TcpListener,
    server_config: &Arc<rustls::ServerConfig>,
) -> Result<(tokio::task::JoinHandle<()>, axum_server::Handle<SocketAddr>), SandboxError> {
    let api = match m {
        Marketplace::TikTok => tiktok::router(sim.clone()),
        Marketplace::Amazon => amazon::router(sim.clone()),
        Marketplace::Ebay => ebay::router(sim.clone()),
    };
    let record = callers::Callers::default();
    let app = api
        .merge(admin::router(sim.clone()))
        .merge(callers::router(record.clone()))
        .merge(bench_reads::router(sim.clone()))
        .merge(in_flight::router(sim.in_flight.clone()))
        .fallback(move || async move { resp::no_route(m) })
        .layer(axum::middleware::from_fn_with_state(
            record,
            callers::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            faults::apply,
        ))
        .layer(axum::middleware::from_fn_with_state(
            sim.in_flight.clone(),
            in_flight::track,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20));
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
        axum_server::tls_rustls::RustlsConfig::from_config(server_config.clone()),
    )
    .acceptor(faults::KillAcceptor {
        registry: sim.kill_registry.clone(),
    });
    let server = axum_server::from_tcp(listener)
        .map_err(|e| SandboxError::Bind(e.to_string()))?
        .acceptor(acceptor)
        .handle(handle.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
        {
            tracing::warn!("sandbox server stopped: {e}");
        }
    });
    Ok((task, handle))
}

impl Sandbox {
    /// Start the three servers on 127.0.0.1 ephemeral ports (needs a tokio runtime).
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let material = tls::generate()?;
        let (outbox, worker) = Outbox::start(
            config.gateway.clone(),
            OutboxConfig {
                concurrency: config.delivery_concurrency,
                log_limit: config.delivery_log_limit,
                record_bodies: config.record_delivery_bodies,
            },
        );
        let mut seed_rng = rng::SplitMix64::new(config.seed ^ 0x5EC2E7);
        let amazon_event_secret = config
            .amazon_event_secret
            .clone()
            .unwrap_or_else(|| SecretString::from(seed_rng.chars(40, state::ALNUM)));
        let ebay_verification_token = config
            .ebay_verification_token
            .clone()
            .unwrap_or_else(|| SecretString::from(seed_rng.uuid()));
        // Header names are 'static in the egress request API; one small string per start.
        let header: &'static str = Box::leak(
            config
                .amazon_event_header
                .to_ascii_lowercase()
                .into_boxed_str(),
        );
        let now = stockade_core::time::now_ms();
        let pop = Population {
            sellers: config.sellers.max(1),
            skus: config.skus,
            quantity: config.initial_quantity,
        };
        let mut handles = Vec::new();
        let mut tasks = vec![worker];
        let mut started = Vec::new();
        for m in Marketplace::ALL {
            let bind = |e: std::io::Error| SandboxError::Bind(e.to_string());
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(bind)?;
            listener.set_nonblocking(true).map_err(bind)?;
            let addr = listener.local_addr().map_err(bind)?;
            let base_url = format!("https://{addr}");
            let secrets = (&amazon_event_secret, &ebay_verification_token);
            let cfg = sim_config(&config, m, header, secrets);
            let market = Market::new(m, config.seed, pop, now);
            let sim = Sim::new(
                m,
                base_url.clone(),
                cfg,
                market,
                Limiter::new(config.rate_limits, config.rate_scale),
                config.faults.get(m).clone(),
                config.seed ^ (m as u64),
                outbox.clone(),
                (m == Marketplace::Ebay)
                    .then(|| ebay_key(config.seed))
                    .flatten(),
            );
            let (task, handle) = serve(m, &sim, listener, &material.server_config)?;
            tasks.push(task);
            handles.push(handle);
            started.push((endpoint(&sim, addr, base_url), sim));
        }
        let mut started = started.into_iter();
        let (Some((te, t)), Some((ae, a)), Some((ee, e))) =
            (started.next(), started.next(), started.next())
        else {
            return Err(SandboxError::Bind("a simulator did not start".into()));
        };
        let sandbox = Sandbox {
            ca_pem: material.ca_pem,
            tiktok: te,
            amazon: ae,
            ebay: ee,
            sims: PerMarketplace {
                tiktok: t,
                amazon: a,
                ebay: e,
            },
            handles,
            tasks,
            outbox,
            server_config: material.server_config,
            amazon_event_secret,
            ebay_verification_token,
        };
        for m in Marketplace::ALL {
            if let Some(url) = config.webhooks.get(m).clone() {
                sandbox.set_webhook(m, Some(url));
            }
        }
        Ok(sandbox)
    }

    /// Stop the servers and the delivery worker.
    pub async fn shutdown(self) {
        for h in &self.handles {
            h.shutdown();
        }
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }

    pub fn endpoint(&self, m: Marketplace) -> &Endpoint {
        match m {
            Marketplace::TikTok => &self.tiktok,
            Marketplace::Amazon => &self.amazon,
            Marketplace::Ebay => &self.ebay,
        }
    }

    fn sim(&self, m: Marketplace) -> &Arc<Sim> {
        self.sims.get(m)
    }

    /// A rustls server configuration with the sandbox's certificate (for 127.0.0.1 and
    /// localhost, signed by [`Sandbox::ca_pem`]): lets a test stand up a webhook
    /// receiver that a gateway trusting `ca_pem` accepts.
    pub fn tls_server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config.clone()
    }

    /// The value of the Amazon event shared-secret header.
    pub fn amazon_event_secret(&self) -> &SecretString {
        &self.amazon_event_secret
    }

    /// The eBay endpoint verification token.
    pub fn ebay_verification_token(&self) -> &SecretString {
        &self.ebay_verification_token
    }

    /// Human-readable URLs and test credentials (they are throw-away sandbox secrets).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        out.push_str("Stockade marketplace sandbox (test CA below; trust it in the client)\n");
        for e in [&self.tiktok, &self.amazon, &self.ebay] {
            out.push_str(&format!(
                "\n[{}]\n  base_url      = {}\n  client_id     = {}\n  client_secret = {}\n",
                e.marketplace.as_str(),
                e.base_url,
                e.app.client_id,
                e.app.client_secret.expose_secret()
            ));
            if !e.app.application_id.is_empty() {
                out.push_str(&format!("  application_id = {}\n", e.app.application_id));
            }
            for s in &e.sellers {
                out.push_str(&format!(
                    "  seller {}\n    refresh_token = {}\n",
                    s.seller_id,
                    s.refresh_token.expose_secret()
                ));
                if !s.shop_cipher.is_empty() {
                    out.push_str(&format!("    shop_cipher   = {}\n", s.shop_cipher));
                }
                if !s.marketplace_id.is_empty() {
                    out.push_str(&format!("    marketplace   = {}\n", s.marketplace_id));
                }
            }
        }
        out.push_str(&format!(
            "\namazon event header {} = {}\nebay verification token = {}\n\n{}",
            self.sims.amazon.cfg.amazon_event_header,
            self.amazon_event_secret.expose_secret(),
            self.ebay_verification_token.expose_secret(),
            self.ca_pem
        ));
        out
    }

    /// Replace a marketplace's faults (also `PUT /_sandbox/faults`).
    pub fn set_faults(&self, m: Marketplace, faults: Faults) {
        self.sim(m).set_faults(faults);
    }

    pub fn faults(&self, m: Marketplace) -> Faults {
        self.sim(m).faults()
    }

    /// Requests of marketplace `m`'s API in flight at once, by `METHOD /route/template`
    /// (since the start or the last [`Sandbox::reset_in_flight`]).
    pub fn in_flight(&self, m: Marketplace) -> std::collections::BTreeMap<String, InFlight> {
        self.sim(m).in_flight.snapshot()
    }

    /// Start counting [`Sandbox::in_flight`] afresh.
    pub fn reset_in_flight(&self, m: Marketplace) {
        self.sim(m).in_flight.reset();
    }

    /// Turn rate limiting on or off everywhere (buckets restart full).
    pub fn set_rate_limits(&self, enabled: bool) {
        for m in Marketplace::ALL {
            self.sim(m).limiter.set_enabled(enabled);
        }
    }

    /// Set or clear where a marketplace's events go. For eBay this sends the endpoint
    /// validation challenge first; notifications are delivered only once it is answered.
    pub fn set_webhook(&self, m: Marketplace, url: Option<String>) {
        self.sim(m).set_webhook(url);
    }

    /// Generate up to `n` orders (fewer when stock runs out); returns their ids. Each
    /// new order sends its events (TikTok type 1, Amazon ORDER_CHANGE, eBay
    /// ORDER_CONFIRMATION per line item).
    pub fn generate_orders(&self, m: Marketplace, n: usize) -> Vec<String> {
        self.sim(m).generate(n)
    }

    /// Move an order one step (and send the change events; eBay sends none).
    pub fn advance_order(
        &self,
        m: Marketplace,
        order_id: &str,
        action: OrderAction,
    ) -> Result<OrderState, SandboxError> {
        self.sim(m).advance(order_id, action)
    }

    /// An Amazon buyer returns `quantity` units of `sku` on an order (any state), with a
    /// return request `status` (`Approved`, `Pending`, `Rejected`, `Closed`, …) and
    /// whether the package already reached the seller; the returns report lists it.
    pub fn amazon_return(
        &self,
        order_id: &str,
        sku: &str,
        quantity: u32,
        status: &str,
        delivered: bool,
    ) -> Result<(), SandboxError> {
        self.sims
            .amazon
            .amazon_return(order_id, Some(sku), Some(quantity), status, delivered)
    }

    /// The Amazon order's returned packages still on their way reach the seller now
    /// (their return request date stays); returns how many.
    pub fn amazon_returns_arrive(&self, order_id: &str) -> Result<usize, SandboxError> {
        self.sims.amazon.amazon_returns_arrive(order_id)
    }

    /// Advance up to `n` random open orders one plausible step; returns the changed ids.
    pub fn advance_random(&self, m: Marketplace, n: usize) -> Vec<String> {
        self.sim(m).advance_random(n)
    }

    /// Revoke a seller's authorization: its tokens stop working at once, refresh fails
    /// (TikTok 105001, Amazon and eBay `invalid_grant`), and the revocation event is
    /// sent (TikTok type 6 SELLER_DEAUTHORIZATION, eBay AUTHORIZATION_REVOCATION; Amazon
    /// has none).
    pub fn revoke(&self, m: Marketplace, seller_id: &str) -> Result<(), SandboxError> {
        self.sim(m).revoke(seller_id)
    }

    /// Authorize a seller again; returns the new refresh token.
    pub fn reauthorize(
        &self,
        m: Marketplace,
        seller_id: &str,
    ) -> Result<SecretString, SandboxError> {
        self.sim(m).reauthorize(seller_id).map(SecretString::from)
    }

    /// A fresh single-use authorization code (valid 5 minutes) for the code grant:
    /// TikTok `auth_code`, Amazon `spapi_oauth_code`, eBay `code`.
    pub fn auth_code(&self, m: Marketplace, seller_id: &str) -> Result<SecretString, SandboxError> {
        self.sim(m).auth_code(seller_id).map(SecretString::from)
    }

    /// TikTok type 7 UPCOMING_AUTHORIZATION_EXPIRATION for a shop.
    pub fn authorization_expiring(
        &self,
        seller_id: &str,
        expires_at_ms: i64,
    ) -> Result<(), SandboxError> {
        self.sims
            .tiktok
            .authorization_expiring(seller_id, expires_at_ms)
    }

    /// eBay MARKETPLACE_ACCOUNT_DELETION for a user.
    pub fn account_deletion(&self, seller_id: &str) -> Result<(), SandboxError> {
        self.sims.ebay.account_deletion(seller_id)
    }

    /// Make every access token already issued (all three marketplaces) expired.
    pub fn expire_tokens_now(&self) {
        for m in Marketplace::ALL {
            self.sim(m).expire_tokens();
        }
    }

    pub fn listings(&self, m: Marketplace) -> Vec<ListingState> {
        self.sim(m).listings()
    }

    pub fn listing(&self, m: Marketplace, seller_id: &str, sku: &str) -> Option<ListingState> {
        self.listings(m)
            .into_iter()
            .find(|l| l.seller_id == seller_id && l.sku == sku)
    }

    pub fn orders(&self, m: Marketplace) -> Vec<OrderSummary> {
        self.sim(m).orders()
    }

    /// Every change of every listing's displayed quantity on `m` since start, in the
    /// order applied (buyers' orders, pushes, cancellations, direct edits), and how
    /// many changes were not kept because the history was full.
    pub fn quantity_history(&self, m: Marketplace) -> (Vec<QtyChange>, u64) {
        self.sim(m).qty_history()
    }

    /// Set the quantity a listing displays (as if the seller changed it in the UI).
    pub fn set_quantity(
        &self,
        m: Marketplace,
        seller_id: &str,
        sku: &str,
        quantity: u32,
    ) -> Result<(), SandboxError> {
        self.sim(m).set_quantity(seller_id, sku, quantity)
    }

    /// Set an Amazon listing's productType (default "PRODUCT").
    pub fn set_product_type(
        &self,
        seller_id: &str,
        sku: &str,
        product_type: &str,
    ) -> Result<(), SandboxError> {
        self.sims
            .amazon
            .set_product_type(seller_id, sku, product_type)
    }

    /// Replace the gateway that delivers events (e.g. once a receiver's address is known).
    pub fn set_gateway(&self, gateway: Option<Gateway>) {
        self.outbox.set_gateway(gateway);
    }

    /// The latest deliveries (at most `delivery_log_limit`), all marketplaces, in
    /// completion order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.outbox.deliveries()
    }

    /// Delivery counters since start, all marketplaces (cheap: no copy of the log).
    pub fn delivery_stats(&self) -> DeliveryStats {
        self.outbox.stats()
    }

    /// Orders of `m` whose announcing delivery the receiver answered 2xx (what a load
    /// driver counts as lost when it is then missing; see [`OrderTally`]).
    pub fn acknowledged_orders(&self, m: Marketplace) -> std::collections::HashSet<String> {
        self.outbox.acknowledged(m)
    }

    /// Wait until every event queued so far has been delivered or given up on (events
    /// queued meanwhile are not waited for).
    pub async fn flush_deliveries(&self) {
        self.outbox.flush().await;
    }
}

fn endpoint(sim: &Sim, addr: SocketAddr, base_url: String) -> Endpoint {
    let m = sim.lock();
    Endpoint {
        marketplace: sim.marketplace,
        base_url,
        addr,
        app: AppCredentials {
            client_id: m.app.client_id.clone(),
            client_secret: SecretString::from(m.app.client_secret.clone()),
            application_id: m.app.application_id.clone(),
        },
        sellers: m
            .sellers
            .iter()
            .map(|s| SellerCredentials {
                seller_id: s.id.clone(),
                name: s.name.clone(),
                refresh_token: SecretString::from(s.refresh_token.clone()),
                shop_cipher: s.cipher.clone(),
                marketplace_id: s.marketplace_id.clone(),
                user_id: s.user_id.clone(),
            })
            .collect(),
    }
}
