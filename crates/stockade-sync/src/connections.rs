//! Marketplace connections: one seller's authorization on one marketplace.
//!
//! A connection's secrets live in the credential store as `connection/<name>/<field>`,
//! encrypted under the connection's own data key (owner `connection:<name>`), so
//! shredding that key destroys the secrets and every buyer field of its orders. The row
//! holds only non-secret settings. Production connections must use the marketplaces'
//! live endpoints and dev/staging connections must not (policy: environments are
//! isolated).

use serde::{Deserialize, Serialize};
use stockade_core::{Actor, Environment, SecretString};
use stockade_egress::{Caller, Gateway};
use stockade_marketplaces::{
    AmazonConfig, AmazonConnector, AmazonCredentials, AnyConnector, EbayConfig, EbayConnector,
    EbayCredentials, Marketplace, TikTokConfig, TikTokConnector, TikTokCredentials,
};
use stockade_store::{
    AuditDetails, AuditEntry, Change, Columns, Expect, FromRow, Mutation, Store, sql_params,
};
use stockade_vault::{CredentialScopes, KeyOwner, NewCredential, Vault};

use crate::{Result, SyncError, now_ms};

/// Whether a connection syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionStatus {
    /// Orders in, quantities out.
    Active,
    /// Orders still come in (a marketplace has already accepted them), nothing is pushed
    /// and nothing is polled until `resume`.
    Paused,
    /// Deauthorized and purged: nothing in, nothing out, data gone.
    Revoked,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::Paused => "paused",
            ConnectionStatus::Revoked => "revoked",
        }
    }
}

impl std::str::FromStr for ConnectionStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "active" => Ok(ConnectionStatus::Active),
            "paused" => Ok(ConnectionStatus::Paused),
            "revoked" => Ok(ConnectionStatus::Revoked),
            _ => Err(()),
        }
    }
}

/// Live marketplace endpoints or a sandbox (the marketplaces' own or Stockade's simulators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    Live,
    Sandbox,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Live => "live",
            EndpointKind::Sandbox => "sandbox",
        }
    }
}

/// The live API hosts; anything else is a sandbox.
pub const LIVE_API_HOSTS: &[(Marketplace, &str)] = &[
    (Marketplace::TikTok, "open-api.tiktokglobalshop.com"),
    (Marketplace::Amazon, "sellingpartnerapi-na.amazon.com"),
    (Marketplace::Amazon, "sellingpartnerapi-eu.amazon.com"),
    (Marketplace::Amazon, "sellingpartnerapi-fe.amazon.com"),
    (Marketplace::Ebay, "api.ebay.com"),
];

/// The marketplaces' live authorization hosts, never called from dev or staging.
pub const LIVE_AUTH_HOSTS: &[&str] = &["api.amazon.com", "auth.tiktok-shops.com"];

/// Default live URLs, used when `connection add` is given no URL in production.
pub fn live_defaults(m: Marketplace) -> (&'static str, Option<&'static str>) {
    match m {
        Marketplace::TikTok => (
            "https://open-api.tiktokglobalshop.com",
            Some("https://auth.tiktok-shops.com"),
        ),
        Marketplace::Amazon => (
            "https://sellingpartnerapi-na.amazon.com",
            Some("https://api.amazon.com/auth/o2/token"),
        ),
        Marketplace::Ebay => ("https://api.ebay.com", None),
    }
}

/// Non-secret settings of a connection (stored as JSON on its row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSettings {
    /// API base URL.
    pub api_url: String,
    /// TikTok: authorization base URL. Amazon: the Login with Amazon token URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_url: Option<String>,
    /// TikTok shop cipher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop_cipher: Option<String>,
    /// Amazon marketplace ids; eBay: the first is the marketplace (EBAY_US, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marketplace_ids: Vec<String>,
    /// Amazon: hosts feed documents are uploaded to / downloaded from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub document_hosts: Vec<String>,
    /// eBay: the public URL of this connection's notification endpoint (the challenge
    /// response hashes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Dev only: the PEM certificate authority of a local sandbox (`stockade sandbox`)
    /// this connection trusts; its loopback hosts need no egress allowlist entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_ca: Option<String>,
    /// Bumped by every `connection edit`, so a running engine rebuilds the connector.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A connection as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    pub id: i64,
    pub name: String,
    pub marketplace: Marketplace,
    pub endpoint: EndpointKind,
    /// The marketplace's id of the seller: TikTok shop id, Amazon seller id, eBay user.
    pub account: String,
    pub settings: ConnectionSettings,
    pub status: ConnectionStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

impl Connection {
    /// The data key owner of this connection.
    pub fn key_owner(&self) -> Result<KeyOwner> {
        Ok(KeyOwner::connection(&self.name)?)
    }

    /// The credential fields this marketplace needs (required, optional).
    pub fn secret_fields(m: Marketplace) -> (&'static [&'static str], &'static [&'static str]) {
        match m {
            Marketplace::TikTok => (&["app_key", "app_secret", "refresh_token"], &[]),
            Marketplace::Amazon => (
                &["client_id", "client_secret", "refresh_token"],
                &["event_key"],
            ),
            Marketplace::Ebay => (
                &["client_id", "client_secret", "refresh_token"],
                &["verification_token"],
            ),
        }
    }
}

/// What `connection add` stores.
#[derive(Debug)]
pub struct NewConnection {
    pub name: String,
    pub marketplace: Marketplace,
    pub account: String,
    pub settings: ConnectionSettings,
    /// `(field, secret)`; see [`Connection::secret_fields`].
    pub secrets: Vec<(String, SecretString)>,
}

/// A connection name: 1–64 of `A–Z a–z 0–9 - _` (it appears in URLs and key owners).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(crate) fn url_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

/// Which kind of endpoint a URL is, or why it is not acceptable.
pub fn endpoint_kind(m: Marketplace, api_url: &str) -> Result<EndpointKind> {
    let host = url_host(api_url).ok_or_else(|| {
        SyncError::Invalid(format!(
            "the API URL must be an https:// URL with a host (got {:?})",
            api_url.chars().take(80).collect::<String>()
        ))
    })?;
    let host = host.to_ascii_lowercase();
    if LIVE_API_HOSTS.iter().any(|(_, h)| *h == host) {
        if !LIVE_API_HOSTS.iter().any(|(mm, h)| *mm == m && *h == host) {
            return Err(SyncError::Invalid(format!("{host} is not a {m} API host")));
        }
        return Ok(EndpointKind::Live);
    }
    Ok(EndpointKind::Sandbox)
}

/// Production uses live endpoints only; dev and staging never do.
pub fn check_environment(env: Environment, kind: EndpointKind) -> Result<()> {
    match (env.is_production(), kind) {
        (true, EndpointKind::Sandbox) => Err(SyncError::Invalid(
            "a production instance connects only to the marketplaces' live endpoints; use --env dev or --env staging for a sandbox"
                .into(),
        )),
        (false, EndpointKind::Live) => Err(SyncError::Invalid(format!(
            "a {env} instance must not connect to a marketplace's live endpoint (environments are isolated); live connections belong to the prod instance"
        ))),
        _ => Ok(()),
    }
}

/// Whether a host is this machine (a local sandbox such as `stockade sandbox`).
fn local_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn api_host(settings: &ConnectionSettings) -> Result<String> {
    url_host(&settings.api_url)
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| SyncError::Invalid("the API URL must be an https:// URL with a host".into()))
}

/// Check a connection's URLs against the environment and complete them: in dev and
/// staging a missing auth URL is derived from a local sandbox's API URL (never the live
/// default), a live auth host is refused, and a sandbox CA is accepted in dev only.
/// Returns a note for the operator when something was derived.
pub fn resolve_urls(
    env: Environment,
    m: Marketplace,
    settings: &mut ConnectionSettings,
) -> Result<Option<String>> {
    let kind = endpoint_kind(m, &settings.api_url)?;
    check_environment(env, kind)?;
    let mut note = None;
    if let Some(auth) = &settings.auth_url {
        let host = url_host(auth)
            .ok_or_else(|| SyncError::Invalid("the auth/token URL must be an https:// URL".into()))?
            .to_ascii_lowercase();
        if !env.is_production() && LIVE_AUTH_HOSTS.contains(&host.as_str()) {
            return Err(SyncError::Invalid(format!(
                "the auth URL {auth} is a live {m} host; a {env} instance never calls a live marketplace host: give the sandbox's own auth URL (for `stockade sandbox`, the API URL itself for TikTok and API_URL/auth/o2/token for Amazon)"
            )));
        }
    } else if !env.is_production() && m != Marketplace::Ebay {
        let api = settings.api_url.trim_end_matches('/');
        if !local_host(&api_host(settings)?) {
            return Err(SyncError::Invalid(format!(
                "--auth-url is required for a {m} sandbox that is not on this machine (a {env} instance never falls back to the live authorization host)"
            )));
        }
        let derived = match m {
            Marketplace::Amazon => format!("{api}/auth/o2/token"),
            _ => api.to_owned(),
        };
        note = Some(format!(
            "auth URL derived from the local sandbox's API URL: {derived}"
        ));
        settings.auth_url = Some(derived);
    }
    if let Some(pem) = &settings.sandbox_ca {
        if env != Environment::Dev {
            return Err(SyncError::Invalid(format!(
                "a sandbox certificate authority is trusted only by a dev instance (this is {env})"
            )));
        }
        if !pem.contains("-----BEGIN CERTIFICATE-----") || pem.len() > 64 * 1024 {
            return Err(SyncError::Invalid(
                "the sandbox CA is not a PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
    }
    Ok(note)
}

const INSERT_CONNECTION: &str = "INSERT INTO connections (name, marketplace, endpoint, account, settings, status, created_at_ms, updated_at_ms)
     VALUES ($1, $2, $3, $4, $5, 'active', $6, $6)";
const SELECT_CONNECTIONS: &str = "SELECT id, name, marketplace, endpoint, account, settings, status, created_at_ms, updated_at_ms, revoked_at_ms
     FROM connections ORDER BY name";
const SELECT_CONNECTION: &str = "SELECT id, name, marketplace, endpoint, account, settings, status, created_at_ms, updated_at_ms, revoked_at_ms
     FROM connections WHERE name = $1";
const SET_STATUS: &str =
    "UPDATE connections SET status = $1, updated_at_ms = $2 WHERE name = $3 AND status = $4";

impl FromRow for Connection {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(Connection {
            id: c.get()?,
            name: c.get()?,
            marketplace: c.parse("connection marketplace")?,
            endpoint: match c.get::<String>()?.as_str() {
                "live" => EndpointKind::Live,
                _ => EndpointKind::Sandbox,
            },
            account: c.get()?,
            settings: c.json("connection settings")?,
            status: c.parse("connection status")?,
            created_at_ms: c.get()?,
            updated_at_ms: c.get()?,
            revoked_at_ms: c.get()?,
        })
    }
}

/// Every connection, revoked ones included.
pub async fn list(store: &Store) -> Result<Vec<Connection>> {
    Ok(store.query_as(SELECT_CONNECTIONS, vec![]).await?)
}

/// One connection by name.
pub async fn get(store: &Store, name: &str) -> Result<Connection> {
    store
        .query_one_as(SELECT_CONNECTION, sql_params![name])
        .await?
        .ok_or_else(|| SyncError::UnknownConnection(name.chars().take(64).collect()))
}

/// Add a connection: validate, store the secrets under the connection's data key, then
/// the row. Audited (`connection.add`); the secrets never appear in the audit row.
pub async fn add(vault: &Vault, mut new: NewConnection, actor: &Actor) -> Result<Connection> {
    let store = vault.store();
    if !valid_name(&new.name) {
        return Err(SyncError::Invalid(
            "a connection name is 1 to 64 letters, digits, '-' or '_'".into(),
        ));
    }
    if new.account.trim().is_empty() || new.account.len() > 200 {
        return Err(SyncError::Invalid(
            "the seller account id (shop id, seller id or eBay user) is required".into(),
        ));
    }
    if store
        .query_one(SELECT_CONNECTION, sql_params![new.name.as_str()])
        .await?
        .is_some()
    {
        return Err(SyncError::Invalid(format!(
            "a connection named {:?} already exists (names are never reused, even after a revocation); choose another name",
            new.name
        )));
    }
    resolve_urls(store.environment(), new.marketplace, &mut new.settings)?;
    let kind = endpoint_kind(new.marketplace, &new.settings.api_url)?;
    check_fields(&new.name, new.marketplace, &new.secrets, true)?;
    let owner = KeyOwner::connection(&new.name)?;
    let scopes = CredentialScopes::default();
    for (field, secret) in &new.secrets {
        let name = stockade_marketplaces::creds::credential_name(&new.name, field);
        vault
            .put_credential(
                &NewCredential {
                    name: &name,
                    kind: field,
                    secret,
                    owner: &owner,
                    scopes: &scopes,
                    account: None,
                },
                actor,
            )
            .await?;
    }
    let settings =
        serde_json::to_string(&new.settings).map_err(|_| SyncError::Invalid("settings".into()))?;
    store
        .commit(
            actor,
            vec![Change::new(
                Mutation::Sql {
                    statement: INSERT_CONNECTION,
                    params: sql_params![
                        new.name.as_str(),
                        new.marketplace.as_str(),
                        kind.as_str(),
                        new.account.as_str(),
                        settings,
                        now_ms()
                    ],
                    expect: Expect::One("connection row"),
                },
                AuditEntry::new(
                    "connection.add",
                    format!("connection:{}", new.name),
                    AuditDetails::new()
                        .str("marketplace", new.marketplace.as_str())
                        .str("endpoint", kind.as_str())
                        .int("credential_fields", new.secrets.len() as i64),
                ),
            )],
        )
        .await?;
    // Every process re-reads its connections now (PostgreSQL NOTIFY), not at its next refresh.
    store.wake(stockade_store::Topic::Connections).await;
    get(store, &new.name).await
}

/// Check credential field names: every required one present (when `complete`), no
/// unknown one.
pub fn check_fields(
    name: &str,
    m: Marketplace,
    secrets: &[(String, SecretString)],
    complete: bool,
) -> Result<()> {
    let (required, optional) = Connection::secret_fields(m);
    if complete {
        for field in required {
            if !secrets.iter().any(|(f, _)| f == field) {
                return Err(SyncError::Invalid(format!(
                    "connection {name:?} ({m}) needs the credential field {field:?}"
                )));
            }
        }
    }
    for (field, _) in secrets {
        if !required.contains(&field.as_str()) && !optional.contains(&field.as_str()) {
            return Err(SyncError::Invalid(format!(
                "{field:?} is not a credential field of a {m} connection (expected: {})",
                required
                    .iter()
                    .chain(optional)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// Pause or resume a connection (audited). Revoked connections stay revoked.
pub async fn set_status(
    store: &Store,
    name: &str,
    to: ConnectionStatus,
    actor: &Actor,
) -> Result<Connection> {
    let current = get(store, name).await?;
    if current.status == ConnectionStatus::Revoked {
        return Err(SyncError::Invalid(format!(
            "connection {name:?} was revoked and purged; add a new connection after the seller authorizes again"
        )));
    }
    if current.status == to {
        return Ok(current);
    }
    let action = match to {
        ConnectionStatus::Paused => "connection.pause",
        _ => "connection.resume",
    };
    store
        .commit(
            actor,
            vec![Change::new(
                Mutation::Sql {
                    statement: SET_STATUS,
                    params: sql_params![to.as_str(), now_ms(), name, current.status.as_str()],
                    expect: Expect::One("connection in its previous state"),
                },
                AuditEntry::new(action, format!("connection:{name}"), AuditDetails::new()),
            )],
        )
        .await?;
    // Every process re-reads its connections now (PostgreSQL NOTIFY), not at its next refresh.
    store.wake(stockade_store::Topic::Connections).await;
    get(store, name).await
}

/// Build the connector of a connection: credentials from the vault, requests through the
/// egress gateway as `connection:<name>`.
pub async fn connector(
    conn: &Connection,
    vault: &Vault,
    gateway: &Gateway,
    lift_rate_limits: bool,
) -> Result<AnyConnector> {
    connector_with(conn, vault, gateway, lift_rate_limits, None).await
}

/// [`connector`] with eBay's revisions per listing per UTC day set to
/// `ebay_daily_revisions` (None: eBay's 250; `SyncOptions::ebay_daily_revisions`).
pub async fn connector_with(
    conn: &Connection,
    vault: &Vault,
    gateway: &Gateway,
    lift_rate_limits: bool,
    ebay_daily_revisions: Option<u32>,
) -> Result<AnyConnector> {
    let caller = Caller::Connection(conn.name.clone());
    let s = &conn.settings;
    let env = vault.store().environment();
    match &s.sandbox_ca {
        Some(pem) => gateway
            .trust_sandbox(&caller, pem)
            .map_err(|e| SyncError::Invalid(format!("connection {:?}: {e}", conn.name)))?,
        None => gateway.forget_sandbox(&caller),
    }
    // Outside prod a missing auth URL is the API host's own (a local sandbox's), never
    // the live default.
    let auth_default = |live: &str, sandbox: String| {
        if env.is_production() {
            live.to_owned()
        } else {
            sandbox
        }
    };
    let c: AnyConnector = match conn.marketplace {
        Marketplace::TikTok => {
            let mut cfg = TikTokConfig::with_base_urls(
                s.api_url.clone(),
                s.auth_url.clone().unwrap_or_else(|| s.api_url.clone()),
            );
            cfg.shop_cipher = s.shop_cipher.clone();
            cfg.shop_id = Some(conn.account.clone());
            if lift_rate_limits {
                cfg.rate = (1_000_000.0, 1_000_000);
            }
            let creds = TikTokCredentials::from_vault(vault, &conn.name).await?;
            TikTokConnector::new(cfg, creds, gateway, caller).into()
        }
        Marketplace::Amazon => {
            let mut cfg = AmazonConfig::with_base_urls(
                s.api_url.clone(),
                s.auth_url.clone().unwrap_or_else(|| {
                    auth_default(
                        "https://api.amazon.com/auth/o2/token",
                        format!("{}/auth/o2/token", s.api_url.trim_end_matches('/')),
                    )
                }),
                conn.account.clone(),
            );
            if !s.marketplace_ids.is_empty() {
                cfg.marketplace_ids = s.marketplace_ids.clone();
            }
            if !s.document_hosts.is_empty() {
                cfg.document_hosts = s.document_hosts.clone();
            }
            if lift_rate_limits {
                // Without rate limits, per-SKU patches confirm in milliseconds; a feed is
                // processed asynchronously (minutes on Amazon).
                cfg.feed_threshold = usize::MAX;
                // Simulated reports are done by the third look.
                cfg.report_poll_interval = std::time::Duration::from_millis(20);
            }
            let creds = AmazonCredentials::from_vault(vault, &conn.name).await?;
            let c = AmazonConnector::new(cfg, creds, gateway, caller);
            if lift_rate_limits {
                for (op, _, _) in stockade_marketplaces::amazon::RATE_LIMITS {
                    gateway.define_limit(op, 1_000_000.0, 1_000_000);
                }
            }
            c.into()
        }
        Marketplace::Ebay => {
            let mut cfg = EbayConfig::with_base_url(s.api_url.clone());
            cfg.endpoint_url = s.endpoint_url.clone();
            cfg.account = conn.account.clone();
            cfg.marketplace_id = s.marketplace_ids.first().cloned();
            if let Some(n) = ebay_daily_revisions {
                cfg.daily_revision_limit = n.max(1);
            }
            if lift_rate_limits {
                cfg.rate = (1_000_000.0, 1_000_000);
                cfg.daily_revision_limit = u32::MAX;
            }
            let creds = EbayCredentials::from_vault(vault, &conn.name).await?;
            EbayConnector::new(cfg, creds, gateway, caller).into()
        }
    };
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_endpoints() {
        assert!(valid_name("shop-us_1"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"x".repeat(65)));
        assert_eq!(
            endpoint_kind(Marketplace::Ebay, "https://api.ebay.com").unwrap(),
            EndpointKind::Live
        );
        assert_eq!(
            endpoint_kind(Marketplace::Ebay, "https://127.0.0.1:4443/x").unwrap(),
            EndpointKind::Sandbox
        );
        assert!(endpoint_kind(Marketplace::TikTok, "https://api.ebay.com").is_err());
        assert!(endpoint_kind(Marketplace::TikTok, "http://localhost").is_err());
        assert!(check_environment(Environment::Prod, EndpointKind::Sandbox).is_err());
        assert!(check_environment(Environment::Dev, EndpointKind::Live).is_err());
        assert!(check_environment(Environment::Prod, EndpointKind::Live).is_ok());
    }
}
