//! The simulators wired to an application, for the demo/bench rig and the tests (the
//! `sandbox` feature): a throw-away dev environment, the application on a free loopback
//! port with the simulators' test certificate, one connection per marketplace with the
//! credentials the simulators issued, and the simulators delivering to its webhook routes.
//!
//! Deliveries from the simulators use their own egress client without a request log (the
//! simulators stand for the marketplaces' infrastructure); the connectors use the
//! application's gateway with its request log, as in production.

use std::path::Path;
use std::time::Duration;

use stockade_core::order::Marketplace;
use stockade_core::{Actor, Environment, SecretString};
use stockade_egress::{EgressConfig, Gateway};
use stockade_sandbox::{ListingState, Sandbox};

pub use crate::sandbox_sims::Simulators;
use stockade_store::{DatabaseUrl, Store, StoreOptions};
use stockade_sync::connections::{self, ConnectionSettings, NewConnection};
use stockade_sync::{SyncError, SyncOptions, catalog};
use stockade_vault::{MasterKeySource, MasterKeys, Vault};

use crate::{App, AppError, BuildOptions, HookWrapper, Settings};

const ACTOR: Actor = Actor::System("demo");

/// How to wire the simulators to a new application.
#[derive(Default)]
pub struct SandboxApp {
    pub sync: SyncOptions,
    /// The marketplaces' published rate limits on the connectors (else lifted).
    pub realistic_limits: bool,
    /// `stockade sku import` CSV imported before sync starts pushing.
    pub catalog: Option<String>,
    pub hooks: Option<HookWrapper>,
    /// Applied to the application's gateway after the limits are lifted (tests retry
    /// faster).
    pub tune_egress: Option<fn(&mut EgressConfig)>,
}

impl std::fmt::Debug for SandboxApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxApp").finish_non_exhaustive()
    }
}

/// No per-host pacing or breaker between a rig's clients and the simulators.
fn lift_egress_limits(c: &mut EgressConfig) {
    c.host_rate = (1_000_000.0, 1_000_000);
    c.breaker_failures = 1_000_000;
}

/// A new dev environment in `dir` (master key file there) on `url`, its application on
/// 127.0.0.1 with port 0, wired to the simulators of `sb`.
pub async fn launch(
    sb: &Sandbox,
    dir: &Path,
    url: DatabaseUrl,
    opts: SandboxApp,
) -> Result<App, AppError> {
    let sims = Simulators::of(sb);
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let place = Place {
        sims: &sims,
        tls: sb.tls_server_config(),
        listen,
        dir,
        url,
    };
    let app = launch_with(place, opts).await?;
    let hook_base = format!("https://{}/hooks", app.addr());
    let mut cfg = EgressConfig::new(Environment::Dev);
    cfg.allowed_hosts = sim_hosts(&sims);
    cfg.allowed_hosts.push(app.addr().to_string());
    cfg.extra_root_pems = vec![sb.ca_pem.clone()];
    cfg.request_timeout = Duration::from_secs(10);
    lift_egress_limits(&mut cfg);
    let delivery = Gateway::new(cfg, None).map_err(|e| AppError::Start(format!("egress: {e}")))?;
    sb.set_gateway(Some(delivery));
    for m in Marketplace::ALL {
        sb.set_webhook(
            m,
            Some(format!("{hook_base}/{}/{}", m.as_str(), m.as_str())),
        );
    }
    Ok(app)
}

fn sim_hosts(sims: &Simulators) -> Vec<String> {
    sims.endpoints.iter().map(|e| e.addr.to_string()).collect()
}

/// Where a sandbox environment's application runs: the simulators it talks to, its
/// listening address and the TLS it serves there, its data directory (the master key
/// file) and its database.
#[derive(Debug)]
pub struct Place<'a> {
    pub sims: &'a Simulators,
    pub tls: std::sync::Arc<rustls::ServerConfig>,
    pub listen: std::net::SocketAddr,
    pub dir: &'a Path,
    pub url: DatabaseUrl,
}

/// A new dev environment at `place` (master key file in its directory), with one
/// connection per marketplace to its simulators and the catalog imported. Where the
/// simulators deliver their events is the caller's to set (to `https://ADDR/hooks/M/M`).
pub async fn launch_with(place: Place<'_>, opts: SandboxApp) -> Result<App, AppError> {
    let (sims, dir) = (place.sims, place.dir);
    let key_path = dir.join("master.key");
    let master = MasterKeys::generate(Environment::Dev, MasterKeySource::File(key_path.clone()))
        .map_err(|e| AppError::Start(e.to_string()))?;
    master.write_new_file(&key_path)?;
    let (store, _) = Store::init(&place.url, Environment::Dev, &StoreOptions::default()).await?;
    let vault = Vault::bootstrap(store, master, &ACTOR).await?;
    let catalog = opts.catalog.clone();
    let app = build(place, vault, opts, crate::Role::All).await?;
    let fail = |what: &'static str| move |e: SyncError| AppError::Start(format!("{what}: {e}"));
    let hook_base = format!("https://{}/hooks", app.addr());
    add_connections_to(app.vault(), sims, &hook_base, &ACTOR)
        .await
        .map_err(fail("adding a connection"))?;
    if let Some(csv) = &catalog {
        catalog::import_csv(app.store(), csv, &ACTOR)
            .await
            .map_err(fail("catalog import"))?;
    }
    app.sync().refresh().await.map_err(fail("sync"))?;
    Ok(app)
}

/// The application of a sandbox environment at `place` with `vault`, as `role`.
async fn build(
    place: Place<'_>,
    vault: Vault,
    opts: SandboxApp,
    role: crate::Role,
) -> Result<App, AppError> {
    let Place {
        sims,
        tls,
        listen,
        dir,
        url,
    } = place;
    let mut settings = Settings::defaults(Environment::Dev, dir.to_path_buf(), url)?;
    settings.egress.allowed_hosts = Some(sim_hosts(sims));
    settings.egress.extra_root_pems = vec![sims.ca_pem.clone()];
    settings.egress.request_timeout = Duration::from_secs(10);
    settings.access = stockade_access::AccessConfig::default();
    settings.sync = opts.sync;
    settings.sync.lift_rate_limits = !opts.realistic_limits;
    // The rig's fixtures carry order times near 1970: their buyer fields stay for the
    // tests that read them (retention's own tests run it on seeded databases).
    let keep = 200 * 365 * 86_400;
    settings.retention.buyer_pii = stockade_retention::PiiRules {
        amazon_s: keep,
        ebay_s: keep,
        tiktok_s: keep,
        undelivered_s: keep,
    };
    App::build_with(
        &settings,
        BuildOptions {
            listen: Some(listen),
            vault: Some(vault),
            tls: Some(tls),
            tune_egress: Some(Box::new(move |c: &mut EgressConfig| {
                lift_egress_limits(c);
                if let Some(tune) = opts.tune_egress {
                    tune(c);
                }
            })),
            hooks: opts.hooks,
            role,
        },
    )
    .await
}

/// Another process of the environment [`launch_with`] made at `place` (its master key
/// file, its PostgreSQL database): the application as `role` (a `worker` takes a share
/// of the connections' own work through their leases).
pub async fn join(place: Place<'_>, opts: SandboxApp, role: crate::Role) -> Result<App, AppError> {
    let master = MasterKeys::load_file(&place.dir.join("master.key"), Environment::Dev)
        .map_err(|e| AppError::Start(e.to_string()))?;
    let store = Store::open(&place.url, Environment::Dev, &StoreOptions::default()).await?;
    let vault = Vault::open(store, master).await?;
    let app = build(place, vault, opts, role).await?;
    app.sync()
        .refresh()
        .await
        .map_err(|e| AppError::Start(format!("sync: {e}")))?;
    Ok(app)
}

/// One connection per marketplace (named after it) to the simulators' first seller, with
/// the credentials and signing secrets they issued; eBay's endpoint is `HOOK_BASE/ebay/ebay`.
pub async fn add_connections(
    vault: &Vault,
    sb: &Sandbox,
    hook_base: &str,
    actor: &Actor,
) -> Result<(), SyncError> {
    add_connections_to(vault, &Simulators::of(sb), hook_base, actor).await
}

/// [`add_connections`] to simulators described by `sims` (in this process or another).
pub async fn add_connections_to(
    vault: &Vault,
    sims: &Simulators,
    hook_base: &str,
    actor: &Actor,
) -> Result<(), SyncError> {
    for m in Marketplace::ALL {
        let e = sims
            .endpoint(m)
            .ok_or_else(|| SyncError::Invalid(format!("no simulator for {m}")))?;
        let s = e
            .sellers
            .first()
            .ok_or_else(|| SyncError::Invalid("the simulator has no seller".into()))?;
        let copy = |v: &SecretString| SecretString::from(v.expose_secret().clone());
        let mut settings = ConnectionSettings {
            api_url: e.base_url.clone(),
            ..ConnectionSettings::default()
        };
        let (account, secrets) = match m {
            Marketplace::TikTok => {
                settings.auth_url = Some(e.base_url.clone());
                settings.shop_cipher = Some(s.shop_cipher.clone());
                (
                    s.seller_id.clone(),
                    vec![
                        (
                            "app_key".to_owned(),
                            SecretString::from(e.app.client_id.clone()),
                        ),
                        ("app_secret".to_owned(), copy(&e.app.client_secret)),
                        ("refresh_token".to_owned(), copy(&s.refresh_token)),
                    ],
                )
            }
            Marketplace::Amazon => {
                settings.auth_url = Some(format!("{}/auth/o2/token", e.base_url));
                settings.marketplace_ids = vec![s.marketplace_id.clone()];
                (
                    s.seller_id.clone(),
                    vec![
                        (
                            "client_id".to_owned(),
                            SecretString::from(e.app.client_id.clone()),
                        ),
                        ("client_secret".to_owned(), copy(&e.app.client_secret)),
                        ("refresh_token".to_owned(), copy(&s.refresh_token)),
                        ("event_key".to_owned(), copy(&sims.amazon_event_secret)),
                    ],
                )
            }
            Marketplace::Ebay => {
                settings.marketplace_ids = vec![s.marketplace_id.clone()];
                settings.endpoint_url = Some(format!("{hook_base}/ebay/ebay"));
                (
                    s.user_id.clone(),
                    vec![
                        (
                            "client_id".to_owned(),
                            SecretString::from(e.app.client_id.clone()),
                        ),
                        ("client_secret".to_owned(), copy(&e.app.client_secret)),
                        ("refresh_token".to_owned(), copy(&s.refresh_token)),
                        (
                            "verification_token".to_owned(),
                            copy(&sims.ebay_verification_token),
                        ),
                    ],
                )
            }
        };
        connections::add(
            vault,
            NewConnection {
                name: m.as_str().to_owned(),
                marketplace: m,
                account,
                settings,
                secrets,
            },
            actor,
        )
        .await?;
    }
    Ok(())
}

/// Every simulator SKU on every channel, in the `stockade sku import` format.
/// Each channel holds back `buffer` units and shows at most `max` (none: no cap); every
/// `low_every`-th SKU (0: none) starts with a twentieth of `on_hand`, so low stock shows.
pub fn catalog_csv(
    sb: &Sandbox,
    on_hand: i64,
    buffer: i64,
    max: Option<i64>,
    low_every: usize,
) -> String {
    let listings: Vec<ListingState> = Marketplace::ALL
        .iter()
        .flat_map(|m| sb.listings(*m))
        .collect();
    catalog_csv_of(&listings, on_hand, buffer, max, low_every)
}

/// [`catalog_csv`] from the simulators' listings (all marketplaces; e.g. read from
/// `GET /_sandbox/listings` of simulators in another process).
pub fn catalog_csv_of(
    listings: &[ListingState],
    on_hand: i64,
    buffer: i64,
    max: Option<i64>,
    low_every: usize,
) -> String {
    let max = max.map(|v| v.to_string()).unwrap_or_default();
    use std::collections::BTreeMap;
    let mut rows: BTreeMap<String, BTreeMap<&'static str, String>> = BTreeMap::new();
    for l in listings {
        let m = l.marketplace;
        let id = match m {
            Marketplace::TikTok => format!("{}:{}", l.product_id, l.sku_id),
            Marketplace::Amazon => l.asin.clone(),
            Marketplace::Ebay => l.offer_id.clone(),
        };
        rows.entry(l.sku.clone())
            .or_default()
            .insert(m.as_str(), id);
    }
    let mut out = String::from("sku,on_hand");
    for m in Marketplace::ALL {
        out.push_str(&format!(",{0}:listing,{0}:buffer,{0}:max", m.as_str()));
    }
    out.push('\n');
    for (i, (sku, ids)) in rows.into_iter().enumerate() {
        let on_hand = if low_every > 0 && i % low_every == low_every - 1 {
            (on_hand / 20).max(1)
        } else {
            on_hand
        };
        out.push_str(&format!("{sku},{on_hand}"));
        for m in Marketplace::ALL {
            let id = ids.get(m.as_str()).cloned().unwrap_or_default();
            out.push_str(&format!(",{id},{buffer},{max}"));
        }
        out.push('\n');
    }
    out
}
