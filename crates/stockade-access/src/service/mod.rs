//! The access service: users, sign-in, MFA enrollment, sessions, API keys and bans,
//! persisted through the audited store.
//!
//! Every decision here is written to the audit chain (logins, failures, enrollments,
//! keys, bans, role changes) with ids, roles and addresses only: never a password, a
//! code, a token or an email. Secrets at rest: argon2id password hashes; TOTP secrets
//! encrypted by the vault; recovery codes as vault-keyed HMAC tags; session ids and API
//! key secrets as SHA-256 hashes of 256-bit random values (a database copy is not a
//! credential).
//!
//! One [`Access`] serves every job; each job is an `impl Access` block in its own file:
//! - `users`: accounts, roles and passwords (argon2id on a bounded blocking pool);
//! - `signin`: the password step, the second factor and the sign-in flows;
//! - `mfa`: TOTP enrollment, MFA reset and recovery codes;
//! - `sessions`: session rows, the idle lock and the absolute lifetime;
//! - `api_keys`: creating, listing, revoking and checking API keys;
//! - `bans`: failure recording, the ban guard and the account throttle.
//!
//! This file holds the service itself, its configuration and errors, and what the jobs
//! share: randomness, token hashing and the security-event row.

mod api_keys;
mod bans;
mod language;
mod mfa;
mod sessions;
mod signin;
mod users;
// The security page's session review.
mod session_admin;

pub use api_keys::{ApiKeyInfo, ApiPrincipal, KEY_TOUCH_EVERY_MS, KeyRejection};
pub use bans::{BanInfo, FailureKind};
pub use mfa::{Enrollment, RECOVERY_CODES};
pub use session_admin::{SESSION_ID_LEN, SessionInfo, valid_session_id};
pub use sessions::{NewSession, PENDING_STEP_MS, SessionState, SessionView, Stage, TOUCH_EVERY_MS};
pub use signin::SecondFactor;
pub use users::{UserInfo, normalize_email};

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_lc_rs::digest;
use stockade_core::{Environment, Event, time::now_ms};
use stockade_store::{Mutation, Store, StoreError};
use stockade_vault::{Vault, VaultError};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::ban::{BanPolicy, Jails};
use crate::password::{self, HashError, HashParams, PasswordPolicy, PolicyViolation};
use crate::throttle::{AccountThrottle, ThrottlePolicy};

#[derive(Debug, Clone)]
pub struct AccessConfig {
    pub password_policy: PasswordPolicy,
    pub hash_params: HashParams,
    /// Idle lock, seconds (policy: 15 minutes).
    pub idle_timeout_s: i64,
    /// Absolute session lifetime, seconds.
    pub absolute_timeout_s: i64,
    /// The `interactive` jail: passwords, codes, API keys.
    pub ban: BanPolicy,
    /// The `webhook` jail: webhook signatures.
    pub webhook_ban: BanPolicy,
    pub throttle: ThrottlePolicy,
    /// Issuer shown in authenticator apps.
    pub issuer: String,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            password_policy: PasswordPolicy::default(),
            hash_params: HashParams::default(),
            idle_timeout_s: 15 * 60,
            absolute_timeout_s: 12 * 3600,
            ban: BanPolicy::default(),
            webhook_ban: BanPolicy::webhook_default(),
            throttle: ThrottlePolicy::default(),
            issuer: "Stockade".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("password rejected: {0}")]
    Policy(#[from] PolicyViolation),
    #[error(
        "the email address is not valid: it needs one @, a domain and no spaces (at most 254 characters)"
    )]
    InvalidEmail,
    #[error("a user with this email already exists (see `stockade user list`)")]
    UserExists,
    #[error("no user with this email (see `stockade user list`)")]
    UserNotFound,
    #[error("an API key named {0:?} already exists; choose another name or revoke it first")]
    ApiKeyExists(String),
    #[error("no active API key named {0:?} (see `stockade apikey list`)")]
    ApiKeyNotFound(String),
    #[error("an API key name must be 1 to 64 printable characters")]
    BadKeyName,
    #[error("{0} is not banned (see `stockade ban list`)")]
    NotBanned(IpAddr),
    #[error("{0:?} is not a duration: use a number with s, m, h, d or w (e.g. 90d), or `never`")]
    BadDuration(String),
    #[error("password hashing failed: {0}")]
    Hash(#[from] HashError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("the system random number generator failed")]
    Rng,
    #[error("{0} is for dev and test environments only")]
    DevOnly(&'static str),
    #[error("no session in force with this id")]
    SessionNotFound,
    #[error("a language is a code such as `en` or `zh`")]
    BadLanguage,
}

pub type Result<T, E = AccessError> = std::result::Result<T, E>;

/// Why a sign-in step failed. The API answers all of `Failed` the same way, never
/// saying which factor was wrong.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("this address is banned")]
    Banned { until: Option<i64> },
    #[error("too many failed attempts for this account; try again in {retry_after} s")]
    Throttled { retry_after: i64 },
    #[error("sign-in failed")]
    Failed,
    #[error(transparent)]
    Internal(#[from] AccessError),
}

impl From<StoreError> for LoginError {
    fn from(e: StoreError) -> Self {
        LoginError::Internal(e.into())
    }
}
impl From<VaultError> for LoginError {
    fn from(e: VaultError) -> Self {
        LoginError::Internal(e.into())
    }
}

/// Users, sign-in, sessions, API keys and bans over one store and vault.
#[derive(Debug)]
pub struct Access {
    store: Store,
    vault: Arc<Vault>,
    env: Environment,
    config: AccessConfig,
    guard: Mutex<Jails>,
    throttle: Mutex<AccountThrottle>,
    hashing: Semaphore,
    dummy_hash: String,
    ban_telemetry: BanTelemetry,
}

/// Bans added, per jail (`interactive`, `webhook`, or `all` for a ban by hand).
#[derive(Debug, Clone, Default)]
pub struct BanTelemetry {
    pub added: prometheus_client::metrics::family::Family<
        JailLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

/// A ban metric's label: the jail, never the address.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct JailLabels {
    pub jail: &'static str,
}

impl BanTelemetry {
    /// Register as `stockade_bans_added_total{jail}`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "stockade_bans_added",
            "Bans added by this process, per jail (all: a ban by hand)",
            self.added.clone(),
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves counters, not invariants, behind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Access {
    /// The ban counters, for the composition root to register.
    pub fn ban_telemetry(&self) -> BanTelemetry {
        self.ban_telemetry.clone()
    }

    /// Build the service and load persisted bans.
    pub async fn new(vault: Arc<Vault>, config: AccessConfig) -> Result<Access> {
        let store = vault.store().clone();
        let env = store.environment();
        let params = config.hash_params;
        // A hash to verify against when the email is unknown, so timing does not tell.
        let dummy_hash = tokio::task::spawn_blocking(move || {
            password::hash_password("stockade-timing-equaliser", params)
        })
        .await
        .map_err(|_| AccessError::Hash(HashError::Argon2("hashing task failed".into())))??;
        let permits = std::thread::available_parallelism().map_or(2, |n| n.get() * 2);
        let access = Access {
            store,
            vault,
            env,
            guard: Mutex::new(Jails::new(config.ban.clone(), config.webhook_ban.clone())),
            throttle: Mutex::new(AccountThrottle::new(config.throttle)),
            config,
            hashing: Semaphore::new(permits),
            dummy_hash,
            ban_telemetry: BanTelemetry::default(),
        };
        access.refresh_bans().await?;
        Ok(access)
    }

    pub fn config(&self) -> &AccessConfig {
        &self.config
    }

    pub fn environment(&self) -> Environment {
        self.env
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The vault (the console's audited reveal of an order's buyer fields decrypts with it;
    /// the console's connection revocation purges through it).
    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }
}

/// Parse `90d`, `12h`, `30m`, `45s`, `2w`, or a plain number of seconds; `never` is None
/// (stockade-core's one duration parser, with this crate's error).
pub fn parse_duration(text: &str) -> Result<Option<i64>> {
    stockade_core::time::parse_duration_secs(text)
        .map_err(|_| AccessError::BadDuration(text.to_owned()))
}

fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    let mut b = Zeroizing::new([0u8; N]);
    aws_lc_rs::rand::fill(&mut *b).map_err(|_| AccessError::Rng)?;
    Ok(b)
}

fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| AccessError::Rng)?;
    Ok(hex::encode(b))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data).as_ref())
}

/// A security event for the alert pipeline (source `access`), appended in the same
/// transaction as the change it reports. Details are ids, addresses and counts only; the
/// alert shows addresses as their network.
fn security_event(event: Event) -> Mutation {
    stockade_store::events::append(now_ms(), &event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90d").unwrap(), Some(90 * 86_400));
        assert_eq!(parse_duration("12h").unwrap(), Some(43_200));
        assert_eq!(parse_duration("600").unwrap(), Some(600));
        assert_eq!(parse_duration("never").unwrap(), None);
        for bad in ["", "d", "-5m", "5y", "0", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
