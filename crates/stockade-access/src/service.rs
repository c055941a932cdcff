//! The access service: users, sign-in, MFA enrollment, sessions, API keys and bans,
//! persisted through the audited store.
//!
//! Every decision here is written to the audit chain (logins, failures, enrollments,
//! keys, bans, role changes) with ids, roles and addresses only: never a password, a
//! code, a token or an email. Secrets at rest: argon2id password hashes; TOTP secrets
//! encrypted by the vault; recovery codes as vault-keyed HMAC tags; session ids and API
//! key secrets as SHA-256 hashes of 256-bit random values (a database copy is not a
//! credential).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_lc_rs::{constant_time, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use stockade_core::{Actor, Environment, SecretString, time::now_ms};
use stockade_store::{
    AuditDetails, AuditEntry, Change, Expect, Mutation, SqlRow, Store, StoreError, sql_params,
};
use stockade_vault::{FieldContext, KeyOwner, Vault, VaultError};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::ban::{Ban, BanPolicy, FailureOutcome, Jail, Jails};
use crate::password::{self, HashError, HashParams, PasswordPolicy, PolicyViolation};
use crate::roles::{Role, UnknownRole};
use crate::throttle::{AccountThrottle, ThrottlePolicy};
use crate::totp::TotpSecret;

/// How many recovery codes a user gets at enrollment.
pub const RECOVERY_CODES: usize = 10;
/// Session activity is written at most this often (seconds); the idle lock is exact to it.
pub const TOUCH_EVERY_MS: i64 = 15_000;
/// An API key's last use is written at most this often.
pub const KEY_TOUCH_EVERY_MS: i64 = 60_000;
/// Sign-in steps before a full session (code prompt, enrollment) expire after this.
pub const PENDING_STEP_MS: i64 = 10 * 60 * 1000;

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
    #[error(transparent)]
    Role(#[from] UnknownRole),
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
    #[error("{0:?} is not an IP address")]
    BadIp(String),
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

/// What failed, for the ban guard, the failure log line and the audit row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Password,
    Totp,
    RecoveryCode,
    ApiKey,
    WebhookSignature,
}

impl FailureKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::Password => "password",
            FailureKind::Totp => "totp",
            FailureKind::RecoveryCode => "recovery_code",
            FailureKind::ApiKey => "api_key",
            FailureKind::WebhookSignature => "webhook_signature",
        }
    }

    /// The jail this kind of failure is counted in.
    pub fn jail(&self) -> Jail {
        match self {
            FailureKind::WebhookSignature => Jail::Webhook,
            _ => Jail::Interactive,
        }
    }
}

/// The second factor offered at sign-in.
#[derive(Debug)]
pub enum SecondFactor {
    Totp(SecretString),
    Recovery(SecretString),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub mfa_enrolled: bool,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Password accepted, TOTP or recovery code pending.
    Mfa,
    /// Password accepted, the user must enroll TOTP before anything else.
    Enroll,
    Active,
}

impl Stage {
    fn as_str(&self) -> &'static str {
        match self {
            Stage::Mfa => "mfa",
            Stage::Enroll => "enroll",
            Stage::Active => "active",
        }
    }
    fn parse(s: &str) -> Option<Stage> {
        match s {
            "mfa" => Some(Stage::Mfa),
            "enroll" => Some(Stage::Enroll),
            "active" => Some(Stage::Active),
            _ => None,
        }
    }
}

/// A session just opened: the token goes into the cookie (or the enrollment token).
#[derive(Debug)]
pub struct NewSession {
    pub token: SecretString,
    pub csrf: String,
    pub stage: Stage,
    pub user: UserInfo,
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Active,
    /// Idle for longer than the idle timeout: password and code are asked again.
    Locked,
    NeedsCode,
    NeedsEnrollment,
}

#[derive(Clone)]
pub struct SessionView {
    pub id_hash: String,
    pub user: UserInfo,
    pub state: SessionState,
    pub csrf: String,
    pub created_at_ms: i64,
    pub last_seen_ms: i64,
    pub expires_at_ms: i64,
}

// The CSRF token is a credential: not printed.
impl std::fmt::Debug for SessionView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionView")
            .field("user", &self.user.id)
            .field("state", &self.state)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// TOTP enrollment material, shown once.
pub struct Enrollment {
    pub secret_base32: Zeroizing<String>,
    pub otpauth_uri: Zeroizing<String>,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrollment { [secret] }")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub env: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// Who a valid API key speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPrincipal {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// Why an API key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    #[error("not a Stockade API key")]
    Malformed,
    #[error("an API key of environment {key_env} used against {server_env}")]
    WrongEnvironment { key_env: String, server_env: String },
    #[error("unknown API key")]
    Unknown,
    #[error("revoked API key")]
    Revoked,
    #[error("expired API key")]
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanInfo {
    pub id: String,
    pub ip: IpAddr,
    pub since_s: i64,
    pub until_s: Option<i64>,
    pub count: u32,
    pub recidive: bool,
    pub reason: String,
    pub lifted_at_s: Option<i64>,
}

impl BanInfo {
    /// The jail whose routes this ban blocks; `None` for every route (a ban by hand, or
    /// one from before jails existed). Stored in `reason` as `auto:<jail>`.
    pub fn jail(&self) -> Option<Jail> {
        self.reason.strip_prefix("auto:").and_then(Jail::parse)
    }

    pub fn active_at(&self, now_s: i64) -> bool {
        self.lifted_at_s.is_none() && self.until_s.is_none_or(|u| now_s < u)
    }
}

/// Parse `90d`, `12h`, `30m`, `45s`, `2w`, or a plain number of seconds; `never` is None.
pub fn parse_duration(text: &str) -> Result<Option<i64>> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("never") || t.eq_ignore_ascii_case("permanent") {
        return Ok(None);
    }
    let bad = || AccessError::BadDuration(text.to_owned());
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(mult).ok_or_else(bad)?;
    if secs <= 0 {
        return Err(bad());
    }
    Ok(Some(secs))
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

/// Lower-case and check an email address.
pub fn normalize_email(email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok(e)
    } else {
        Err(AccessError::InvalidEmail)
    }
}

const USER_COLUMNS: &str = "id, email, role, disabled, mfa_enrolled_at_ms, created_at_ms";

fn user_from(row: &SqlRow, at: usize) -> Result<UserInfo> {
    let role: Role = row.text(at + 2)?.parse()?;
    Ok(UserInfo {
        id: row.text(at)?,
        email: row.text(at + 1)?,
        role,
        disabled: row.bool(at + 3)?,
        mfa_enrolled: row.opt_int(at + 4)?.is_some(),
        created_at_ms: row.int(at + 5)?,
    })
}

fn api_key_from(row: &SqlRow) -> Result<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        id: row.text(0)?,
        name: row.text(1)?,
        role: row.text(2)?.parse()?,
        env: row.text(3)?,
        created_by: row.text(4)?,
        created_at_ms: row.int(5)?,
        expires_at_ms: row.opt_int(6)?,
        last_used_at_ms: row.opt_int(7)?,
        revoked_at_ms: row.opt_int(8)?,
    })
}

fn ban_from(row: &SqlRow) -> Result<BanInfo> {
    let ip_text = row.text(1)?;
    Ok(BanInfo {
        id: row.text(0)?,
        ip: ip_text.parse().map_err(|_| AccessError::BadIp(ip_text))?,
        since_s: row.int(2)?,
        until_s: row.opt_int(3)?,
        count: u32::try_from(row.int(4)?).unwrap_or(u32::MAX),
        recidive: row.bool(5)?,
        reason: row.text(6)?,
        lifted_at_s: row.opt_int(7)?,
    })
}

struct PasswordRecord {
    user: UserInfo,
    hash: String,
    totp_secret: Option<Vec<u8>>,
    totp_last_step: Option<i64>,
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
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves counters, not invariants, behind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Access {
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

    async fn hash(&self, password: &SecretString) -> Result<String> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| AccessError::Hash(HashError::Argon2("hashing pool closed".into())))?;
        let pw = Zeroizing::new(password.expose_secret().clone());
        let params = self.config.hash_params;
        tokio::task::spawn_blocking(move || password::hash_password(&pw, params))
            .await
            .map_err(|_| AccessError::Hash(HashError::Argon2("hashing task failed".into())))?
            .map_err(Into::into)
    }

    async fn verify(&self, password: &SecretString, phc: &str) -> Result<bool> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| AccessError::Hash(HashError::Argon2("hashing pool closed".into())))?;
        let pw = Zeroizing::new(password.expose_secret().clone());
        let phc = phc.to_owned();
        tokio::task::spawn_blocking(move || password::verify_password(&pw, &phc))
            .await
            .map_err(|_| AccessError::Hash(HashError::Argon2("hashing task failed".into())))?
            .map_err(Into::into)
    }

    // ----- users -------------------------------------------------------------------

    /// Check a candidate password against the policy without storing anything.
    pub fn check_password(&self, password: &SecretString, email: &str) -> Result<()> {
        self.config
            .password_policy
            .check(password.expose_secret(), email)
            .map_err(Into::into)
    }

    pub async fn add_user(
        &self,
        email: &str,
        role: Role,
        password: &SecretString,
        actor: &Actor,
    ) -> Result<UserInfo> {
        let email = normalize_email(email)?;
        self.check_password(password, &email)?;
        if self.user_by_email(&email).await?.is_some() {
            return Err(AccessError::UserExists);
        }
        let hash = self.hash(password).await?;
        let id = format!("usr_{}", random_hex(8)?);
        let now = now_ms();
        let change = Change::new(
            Mutation::Sql {
                statement: "INSERT INTO users (id, email, role, password_hash, disabled, created_at_ms, updated_at_ms)
                            VALUES ($1, $2, $3, $4, 0, $5, $5)",
                params: sql_params![id.clone(), email.clone(), role.as_str(), hash, now],
                expect: Expect::One("user insert"),
            },
            AuditEntry::new(
                "user.add",
                format!("user:{id}"),
                AuditDetails::new().str("role", role.as_str()),
            ),
        );
        match self.store.commit(actor, vec![change]).await {
            Err(StoreError::Conflict(_)) => return Err(AccessError::UserExists),
            r => r?,
        };
        Ok(UserInfo {
            id,
            email,
            role,
            disabled: false,
            mfa_enrolled: false,
            created_at_ms: now,
        })
    }

    pub async fn users(&self) -> Result<Vec<UserInfo>> {
        const Q: &str = "SELECT id, email, role, disabled, mfa_enrolled_at_ms, created_at_ms FROM users ORDER BY created_at_ms, id";
        debug_assert!(Q.contains(USER_COLUMNS));
        self.store
            .query(Q, vec![])
            .await?
            .iter()
            .map(|r| user_from(r, 0))
            .collect()
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserInfo>> {
        let email = normalize_email(email)?;
        self.store
            .query_one(
                "SELECT id, email, role, disabled, mfa_enrolled_at_ms, created_at_ms FROM users WHERE email = $1",
                sql_params![email],
            )
            .await?
            .map(|r| user_from(&r, 0))
            .transpose()
    }

    async fn require_user(&self, email: &str) -> Result<UserInfo> {
        self.user_by_email(email)
            .await?
            .ok_or(AccessError::UserNotFound)
    }

    /// Disable (or re-enable) a user. Disabling ends all of the user's sessions.
    pub async fn set_disabled(
        &self,
        email: &str,
        disabled: bool,
        actor: &Actor,
    ) -> Result<UserInfo> {
        let user = self.require_user(email).await?;
        let mut changes = vec![Change::new(
            Mutation::Sql {
                statement: "UPDATE users SET disabled = $2, updated_at_ms = $3 WHERE id = $1",
                params: sql_params![user.id.clone(), disabled, now_ms()],
                expect: Expect::One("user"),
            },
            AuditEntry::new(
                if disabled {
                    "user.disable"
                } else {
                    "user.enable"
                },
                format!("user:{}", user.id),
                AuditDetails::new(),
            ),
        )];
        if disabled {
            changes.push(self.end_sessions_change(&user.id, "user.disable"));
        }
        self.store.commit(actor, changes).await?;
        Ok(UserInfo { disabled, ..user })
    }

    pub async fn set_role(&self, email: &str, role: Role, actor: &Actor) -> Result<UserInfo> {
        let user = self.require_user(email).await?;
        let change = Change::new(
            Mutation::Sql {
                statement: "UPDATE users SET role = $2, updated_at_ms = $3 WHERE id = $1",
                params: sql_params![user.id.clone(), role.as_str(), now_ms()],
                expect: Expect::One("user"),
            },
            AuditEntry::new(
                "user.role",
                format!("user:{}", user.id),
                AuditDetails::new()
                    .str("from", user.role.as_str())
                    .str("to", role.as_str()),
            ),
        );
        self.store.commit(actor, vec![change]).await?;
        Ok(UserInfo { role, ..user })
    }

    /// Forget a user's TOTP secret and recovery codes and end their sessions: the next
    /// sign-in leads to enrollment again.
    pub async fn reset_mfa(&self, email: &str, actor: &Actor) -> Result<UserInfo> {
        let user = self.require_user(email).await?;
        let event = serde_json::json!({"user": user.id, "by": actor.to_string()});
        let changes = vec![
            Change::new(
                Mutation::Many {
                    steps: vec![
                        Mutation::Sql {
                            statement: "UPDATE users SET totp_secret = NULL, totp_last_step = NULL, mfa_enrolled_at_ms = NULL, updated_at_ms = $2 WHERE id = $1",
                            params: sql_params![user.id.clone(), now_ms()],
                            expect: Expect::One("user"),
                        },
                        security_event("mfa_reset", &event),
                    ],
                    guard: false,
                },
                AuditEntry::new(
                    "mfa.reset",
                    format!("user:{}", user.id),
                    AuditDetails::new(),
                ),
            ),
            delete_recovery_codes_change(&user.id),
            self.end_sessions_change(&user.id, "mfa.reset"),
        ];
        self.store.commit(actor, changes).await?;
        Ok(UserInfo {
            mfa_enrolled: false,
            ..user
        })
    }

    /// Enroll TOTP for `email` without a sign-in and return the secret, for a throw-away
    /// dev environment that shows it once (`stockade demo`). Refused in prod, where
    /// enrollment happens at the user's first sign-in.
    pub async fn enroll_totp_unattended(
        &self,
        email: &str,
        actor: &Actor,
    ) -> Result<(UserInfo, TotpSecret)> {
        if self.env == Environment::Prod {
            return Err(AccessError::DevOnly("unattended TOTP enrollment"));
        }
        let user = self.require_user(email).await?;
        let secret = TotpSecret::generate().map_err(|_| AccessError::Rng)?;
        let ct = self
            .vault
            .encrypt(
                &KeyOwner::system(),
                &FieldContext::new("users", "totp_secret", &user.id),
                secret.expose_bytes(),
                actor,
            )
            .await?;
        let change = Change::new(
            Mutation::Sql {
                statement: "UPDATE users SET totp_secret = $2, totp_last_step = NULL, mfa_enrolled_at_ms = $3, updated_at_ms = $3 WHERE id = $1",
                params: sql_params![user.id.clone(), ct, now_ms()],
                expect: Expect::One("user"),
            },
            AuditEntry::new(
                "mfa.enroll",
                format!("user:{}", user.id),
                AuditDetails::new().str("how", "unattended"),
            ),
        );
        self.store.commit(actor, vec![change]).await?;
        Ok((
            UserInfo {
                mfa_enrolled: true,
                ..user
            },
            secret,
        ))
    }

    /// Set a new password (policy-checked) and end the user's sessions.
    pub async fn set_password(
        &self,
        email: &str,
        password: &SecretString,
        actor: &Actor,
    ) -> Result<()> {
        let user = self.require_user(email).await?;
        self.check_password(password, &user.email)?;
        let hash = self.hash(password).await?;
        let changes = vec![
            Change::new(
                Mutation::Sql {
                    statement: "UPDATE users SET password_hash = $2, updated_at_ms = $3 WHERE id = $1",
                    params: sql_params![user.id.clone(), hash, now_ms()],
                    expect: Expect::One("user"),
                },
                AuditEntry::new(
                    "user.password.set",
                    format!("user:{}", user.id),
                    AuditDetails::new(),
                ),
            ),
            self.end_sessions_change(&user.id, "user.password.set"),
        ];
        self.store.commit(actor, changes).await?;
        Ok(())
    }

    fn end_sessions_change(&self, user_id: &str, because: &str) -> Change {
        Change::new(
            Mutation::Sql {
                statement: "DELETE FROM sessions WHERE user_id = $1",
                params: sql_params![user_id.to_owned()],
                expect: Expect::Any,
            },
            AuditEntry::new(
                "session.end_all",
                format!("user:{user_id}"),
                AuditDetails::new().str("because", because),
            ),
        )
    }

    async fn password_record(&self, email: &str) -> Result<Option<PasswordRecord>> {
        let Some(row) = self
            .store
            .query_one(
                "SELECT id, email, role, disabled, mfa_enrolled_at_ms, created_at_ms, password_hash, totp_secret, totp_last_step
                 FROM users WHERE email = $1",
                sql_params![email.to_owned()],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(PasswordRecord {
            user: user_from(&row, 0)?,
            hash: row.text(6)?,
            totp_secret: row.opt_bytes(7)?,
            totp_last_step: row.opt_int(8)?,
        }))
    }

    // ----- bans and failures -------------------------------------------------------

    /// The active ban of `ip` in `jail`, from memory (no I/O): the first check on every
    /// request (the jail of its route: [`Jail::for_path`]).
    pub fn banned(&self, ip: IpAddr, jail: Jail) -> Option<Ban> {
        lock(&self.guard).banned(ip, jail, now_ms() / 1000).cloned()
    }

    /// Record an authentication failure from `ip` (and against `account`, if known):
    /// one stable log line, an audit row, the ban guard and the account throttle. A ban
    /// it triggers is persisted and audited before this returns.
    pub async fn record_failure(
        &self,
        ip: IpAddr,
        kind: FailureKind,
        account: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<FailureOutcome> {
        let now_s = now_ms() / 1000;
        let jail = kind.jail();
        // The line host-level Fail2Ban matches (deploy/fail2ban/filter.d/stockade.conf).
        tracing::warn!(target: "stockade::auth", "authentication failure jail={} kind={} ip={}", jail, kind.as_str(), ip);
        let outcome = lock(&self.guard).get_mut(jail).record_failure(ip, now_s);
        if let Some(account) = account {
            lock(&self.throttle).record_failure(account, now_s);
        }
        let mut details = AuditDetails::new()
            .str("jail", jail.as_str())
            .str("kind", kind.as_str())
            .str("ip", &ip.to_string());
        if let FailureOutcome::Counted { retries } = outcome {
            details = details.int("retries", i64::from(retries));
        }
        let resource = user_id.map_or_else(|| "auth".to_owned(), |u| format!("user:{u}"));
        let mut changes = vec![Change::event(AuditEntry::new(
            "auth.failure",
            resource,
            details,
        ))];
        if let FailureOutcome::Banned(ban) = &outcome {
            changes.push(self.ban_change(ban, &format!("auto:{jail}"))?);
            tracing::warn!(
                target: "stockade::ban",
                "ban jail={} ip={} count={} recidive={} until={}",
                jail,
                ban.ip,
                ban.count,
                ban.recidive,
                ban.until.map_or_else(|| "never".to_owned(), |u| u.to_string())
            );
        }
        self.store.commit(&Actor::System("access"), changes).await?;
        Ok(outcome)
    }

    fn ban_change(&self, ban: &Ban, reason: &str) -> Result<Change> {
        let id = format!("ban_{}", random_hex(8)?);
        let mut details = AuditDetails::new()
            .str("ip", &ban.ip.to_string())
            .int("count", i64::from(ban.count))
            .bool("recidive", ban.recidive)
            .str("reason", reason);
        details = match ban.until {
            Some(u) => details.int("until_s", u),
            None => details.bool("permanent", true),
        };
        let mut event = serde_json::json!({
            "ip": ban.ip.to_string(),
            "count": ban.count,
            "recidive": ban.recidive,
            "reason": reason,
        });
        match ban.until {
            Some(u) => event["until_s"] = serde_json::json!(u),
            None => event["permanent"] = serde_json::json!(true),
        }
        Ok(Change::new(
            Mutation::Many {
                steps: vec![
                    Mutation::Sql {
                        statement: "INSERT INTO bans (id, ip, since_s, until_s, ban_count, recidive, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        params: sql_params![
                            id.clone(),
                            ban.ip.to_string(),
                            ban.since,
                            ban.until,
                            i64::from(ban.count),
                            ban.recidive,
                            reason
                        ],
                        expect: Expect::One("ban insert"),
                    },
                    security_event("ban", &event),
                ],
                guard: false,
            },
            AuditEntry::new("ban.add", format!("ban:{id}"), details),
        ))
    }

    /// Reload bans from the database: bans other processes (or `stockade ban`) added or
    /// lifted take effect here.
    pub async fn refresh_bans(&self) -> Result<()> {
        let now_s = now_ms() / 1000;
        let horizon = [&self.config.ban, &self.config.webhook_ban]
            .iter()
            .map(|p| now_s - p.recidive_findtime.max(p.maxtime).max(p.bantime))
            .min()
            .unwrap_or(now_s);
        let rows = self
            .store
            .query(
                "SELECT id, ip, since_s, until_s, ban_count, recidive, reason, lifted_at_s FROM bans
                 WHERE since_s >= $1 OR (lifted_at_s IS NULL AND (until_s IS NULL OR until_s > $2))
                 ORDER BY since_s, id",
                sql_params![horizon, now_s],
            )
            .await?;
        let mut history: [Vec<(Ban, bool)>; 2] = [Vec::new(), Vec::new()];
        for row in &rows {
            let b = ban_from(row)?;
            let active = b.active_at(now_s);
            let ban = Ban {
                ip: b.ip,
                since: b.since_s,
                until: b.until_s,
                count: b.count,
                recidive: b.recidive,
            };
            for (i, jail) in Jail::ALL.into_iter().enumerate() {
                if b.jail().is_none_or(|j| j == jail) {
                    history[i].push((ban.clone(), active));
                }
            }
        }
        let mut jails = lock(&self.guard);
        for (jail, history) in Jail::ALL.into_iter().zip(history) {
            let guard = jails.get_mut(jail);
            guard.load_bans(history, now_s, 10);
            guard.prune(now_s);
        }
        drop(jails);
        lock(&self.throttle).prune(now_s);
        Ok(())
    }

    /// Bans, newest first; only those in force unless `all`.
    pub async fn bans(&self, all: bool) -> Result<Vec<BanInfo>> {
        let now_s = now_ms() / 1000;
        let rows = self
            .store
            .query(
                "SELECT id, ip, since_s, until_s, ban_count, recidive, reason, lifted_at_s FROM bans ORDER BY since_s DESC, id",
                vec![],
            )
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let b = ban_from(r)?;
            if all || b.active_at(now_s) {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Ban an address by hand; `None` = permanent.
    pub async fn add_ban(
        &self,
        ip: IpAddr,
        duration_s: Option<i64>,
        actor: &Actor,
    ) -> Result<BanInfo> {
        let now_s = now_ms() / 1000;
        let previous = self
            .store
            .query_one(
                "SELECT COUNT(*) FROM bans WHERE ip = $1",
                sql_params![ip.to_string()],
            )
            .await?
            .map_or(Ok(0), |r| r.int(0))?;
        let ban = Ban {
            ip,
            since: now_s,
            until: duration_s.map(|d| now_s + d),
            count: u32::try_from(previous + 1).unwrap_or(u32::MAX),
            recidive: false,
        };
        let change = self.ban_change(&ban, "manual")?;
        self.store.commit(actor, vec![change]).await?;
        {
            let mut jails = lock(&self.guard);
            for jail in Jail::ALL {
                jails.get_mut(jail).ban(ip, now_s, duration_s);
            }
        }
        tracing::warn!(target: "stockade::ban", "ban jail=all ip={} count={} recidive=false until={} reason=manual", ip, ban.count,
            ban.until.map_or_else(|| "never".to_owned(), |u| u.to_string()));
        Ok(self
            .bans(false)
            .await?
            .into_iter()
            .find(|b| b.ip == ip)
            .unwrap_or(BanInfo {
                id: String::new(),
                ip,
                since_s: now_s,
                until_s: ban.until,
                count: ban.count,
                recidive: false,
                reason: "manual".into(),
                lifted_at_s: None,
            }))
    }

    /// Lift every ban in force on `ip`.
    pub async fn remove_ban(&self, ip: IpAddr, actor: &Actor) -> Result<()> {
        let now_s = now_ms() / 1000;
        let active: Vec<BanInfo> = self
            .bans(false)
            .await?
            .into_iter()
            .filter(|b| b.ip == ip)
            .collect();
        if active.is_empty() && Jail::ALL.into_iter().all(|j| self.banned(ip, j).is_none()) {
            return Err(AccessError::NotBanned(ip));
        }
        let changes: Vec<Change> = active
            .iter()
            .map(|b| {
                Change::new(
                    Mutation::Sql {
                        statement: "UPDATE bans SET lifted_at_s = $2 WHERE id = $1 AND lifted_at_s IS NULL",
                        params: sql_params![b.id.clone(), now_s],
                        expect: Expect::One("active ban"),
                    },
                    AuditEntry::new(
                        "ban.remove",
                        format!("ban:{}", b.id),
                        AuditDetails::new().str("ip", &ip.to_string()),
                    ),
                )
            })
            .collect();
        if !changes.is_empty() {
            self.store.commit(actor, changes).await?;
        }
        let mut jails = lock(&self.guard);
        for jail in Jail::ALL {
            jails.get_mut(jail).unban(ip);
        }
        Ok(())
    }

    // ----- sign-in -----------------------------------------------------------------

    fn gate(&self, ip: IpAddr, account: &str) -> Result<(), LoginError> {
        if let Some(ban) = self.banned(ip, Jail::Interactive) {
            return Err(LoginError::Banned { until: ban.until });
        }
        if let Some(retry_after) = lock(&self.throttle).retry_after(account, now_ms() / 1000) {
            return Err(LoginError::Throttled { retry_after });
        }
        Ok(())
    }

    async fn fail(
        &self,
        ip: IpAddr,
        kind: FailureKind,
        account: &str,
        user_id: Option<&str>,
    ) -> LoginError {
        match self.record_failure(ip, kind, Some(account), user_id).await {
            Ok(FailureOutcome::Banned(ban)) => LoginError::Banned { until: ban.until },
            Ok(_) => LoginError::Failed,
            Err(e) => LoginError::Internal(e),
        }
    }

    /// Check email and password. Unknown emails cost the same hash as known ones.
    async fn password_step(
        &self,
        ip: IpAddr,
        email: &str,
        password: &SecretString,
    ) -> Result<PasswordRecord, LoginError> {
        let account = normalize_email(email).unwrap_or_else(|_| email.trim().to_lowercase());
        self.gate(ip, &account)?;
        if password.expose_secret().chars().count() > password::MAX_LEN {
            return Err(self.fail(ip, FailureKind::Password, &account, None).await);
        }
        let record = self.password_record(&account).await?;
        let phc = record
            .as_ref()
            .map_or(self.dummy_hash.as_str(), |r| r.hash.as_str());
        let ok = self.verify(password, phc).await?;
        match record {
            Some(r) if ok && !r.user.disabled => {
                if password::needs_rehash(&r.hash, self.config.hash_params) {
                    self.rehash(&r.user, password).await?;
                }
                Ok(r)
            }
            r => {
                let user_id = r.as_ref().map(|r| r.user.id.clone());
                Err(self
                    .fail(ip, FailureKind::Password, &account, user_id.as_deref())
                    .await)
            }
        }
    }

    async fn rehash(&self, user: &UserInfo, password: &SecretString) -> Result<()> {
        let hash = self.hash(password).await?;
        let p = self.config.hash_params;
        let change = Change::new(
            Mutation::Sql {
                statement: "UPDATE users SET password_hash = $2, updated_at_ms = $3 WHERE id = $1",
                params: sql_params![user.id.clone(), hash, now_ms()],
                expect: Expect::One("user"),
            },
            AuditEntry::new(
                "user.password.rehash",
                format!("user:{}", user.id),
                AuditDetails::new()
                    .int("m_kib", i64::from(p.m_kib))
                    .int("t", i64::from(p.t))
                    .int("p", i64::from(p.p)),
            ),
        );
        self.store
            .commit(&Actor::User(user.id.clone()), vec![change])
            .await?;
        Ok(())
    }

    /// Check a second factor and return the change that consumes it (the TOTP step, or
    /// the recovery code), to commit with whatever the sign-in writes.
    async fn second_factor_change(
        &self,
        ip: IpAddr,
        record: &PasswordRecord,
        factor: &SecondFactor,
    ) -> Result<(Change, &'static str), LoginError> {
        let user = &record.user;
        match factor {
            SecondFactor::Totp(code) => {
                let Some(ct) = &record.totp_secret else {
                    return Err(self
                        .fail(ip, FailureKind::Totp, &user.email, Some(&user.id))
                        .await);
                };
                let raw = self
                    .vault
                    .decrypt(&FieldContext::new("users", "totp_secret", &user.id), ct)
                    .await?;
                let secret = TotpSecret::from_bytes(&raw);
                match secret.verify(code.expose_secret(), now_ms() / 1000, record.totp_last_step) {
                    Ok(step) => Ok((
                        Change::new(
                            Mutation::Sql {
                                // Atomic replay guard across processes: only a newer step wins.
                                statement: "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
                                params: sql_params![user.id.clone(), step],
                                expect: Expect::One("unused TOTP step"),
                            },
                            AuditEntry::new(
                                "mfa.totp.use",
                                format!("user:{}", user.id),
                                AuditDetails::new(),
                            ),
                        ),
                        "totp",
                    )),
                    // Wrong, malformed or replayed: one answer, one counted failure.
                    Err(_) => Err(self
                        .fail(ip, FailureKind::Totp, &user.email, Some(&user.id))
                        .await),
                }
            }
            SecondFactor::Recovery(code) => {
                let tag = self.recovery_tag(&user.id, code.expose_secret());
                Ok((
                    Change::new(
                        Mutation::Sql {
                            statement: "UPDATE recovery_codes SET used_at_ms = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at_ms IS NULL",
                            params: sql_params![user.id.clone(), tag, now_ms()],
                            expect: Expect::One("unused recovery code"),
                        },
                        AuditEntry::new(
                            "mfa.recovery_code.use",
                            format!("user:{}", user.id),
                            AuditDetails::new(),
                        ),
                    ),
                    "recovery_code",
                ))
            }
        }
    }

    fn recovery_tag(&self, user_id: &str, code: &str) -> String {
        let normalized: Zeroizing<String> = Zeroizing::new(
            code.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .map(|c| c.to_ascii_lowercase())
                .collect(),
        );
        let mut input = Zeroizing::new(Vec::with_capacity(64));
        input.extend_from_slice(b"stockade-recovery-code\0");
        input.extend_from_slice(user_id.as_bytes());
        input.push(0);
        input.extend_from_slice(normalized.as_bytes());
        self.vault.tag_bytes(&input).as_str().to_owned()
    }

    fn session_insert(&self, user: &UserInfo, stage: Stage) -> Result<(NewSession, Change)> {
        let token = B64URL.encode(*random_bytes::<32>()?);
        let csrf = B64URL.encode(*random_bytes::<32>()?);
        let id_hash = sha256_hex(token.as_bytes());
        let now = now_ms();
        let expires = match stage {
            Stage::Active => now + self.config.absolute_timeout_s * 1000,
            Stage::Mfa | Stage::Enroll => now + PENDING_STEP_MS,
        };
        let change = Change::new(
            Mutation::Sql {
                statement: "INSERT INTO sessions (id_hash, user_id, stage, csrf, created_at_ms, last_seen_ms, expires_at_ms)
                            VALUES ($1, $2, $3, $4, $5, $5, $6)",
                params: sql_params![id_hash.clone(), user.id.clone(), stage.as_str(), csrf.clone(), now, expires],
                expect: Expect::One("session insert"),
            },
            AuditEntry::new(
                "session.start",
                format!("session:{}", &id_hash[..16]),
                AuditDetails::new().str("user", &user.id).str("stage", stage.as_str()),
            ),
        );
        Ok((
            NewSession {
                token: SecretString::from(token),
                csrf,
                stage,
                user: user.clone(),
                expires_at_ms: expires,
            },
            change,
        ))
    }

    fn login_event(&self, ip: IpAddr, user: &UserInfo, method: &str) -> Change {
        Change::event(AuditEntry::new(
            "auth.login",
            format!("user:{}", user.id),
            AuditDetails::new()
                .str("ip", &ip.to_string())
                .str("method", method)
                .str("role", user.role.as_str()),
        ))
    }

    /// Sign in. With a second factor: a full session, or `NeedsEnrollment` for a user
    /// without TOTP. Without one: a code-prompt session when `two_step` (the pages),
    /// otherwise a failure (the JSON API wants both at once).
    pub async fn login(
        &self,
        ip: IpAddr,
        email: &str,
        password: &SecretString,
        factor: Option<&SecondFactor>,
        two_step: bool,
    ) -> Result<NewSession, LoginError> {
        let record = self.password_step(ip, email, password).await?;
        let user = record.user.clone();
        if !user.mfa_enrolled {
            let (session, change) = self.session_insert(&user, Stage::Enroll)?;
            let event = Change::event(AuditEntry::new(
                "auth.password_ok.enroll_required",
                format!("user:{}", user.id),
                AuditDetails::new().str("ip", &ip.to_string()),
            ));
            self.store
                .commit(&Actor::User(user.id.clone()), vec![event, change])
                .await?;
            return Ok(session);
        }
        let Some(factor) = factor else {
            if !two_step {
                return Err(self
                    .fail(ip, FailureKind::Totp, &user.email, Some(&user.id))
                    .await);
            }
            let (session, change) = self.session_insert(&user, Stage::Mfa)?;
            self.store
                .commit(&Actor::User(user.id.clone()), vec![change])
                .await?;
            return Ok(session);
        };
        self.finish_second_factor(ip, &record, factor, None).await
    }

    async fn finish_second_factor(
        &self,
        ip: IpAddr,
        record: &PasswordRecord,
        factor: &SecondFactor,
        replace: Option<&str>,
    ) -> Result<NewSession, LoginError> {
        let user = &record.user;
        let (consume, method) = self.second_factor_change(ip, record, factor).await?;
        let (session, insert) = self.session_insert(user, Stage::Active)?;
        let mut changes = vec![consume, self.login_event(ip, user, method), insert];
        if let Some(old) = replace {
            changes.push(self.session_delete_change(old, "session.upgrade"));
        }
        match self
            .store
            .commit(&Actor::User(user.id.clone()), changes)
            .await
        {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => {
                let kind = if method == "totp" {
                    FailureKind::Totp
                } else {
                    FailureKind::RecoveryCode
                };
                return Err(self.fail(ip, kind, &user.email, Some(&user.id)).await);
            }
            Err(e) => return Err(e.into()),
        }
        lock(&self.throttle).record_success(&user.email);
        Ok(session)
    }

    fn session_delete_change(&self, id_hash: &str, action: &str) -> Change {
        Change::new(
            Mutation::Sql {
                statement: "DELETE FROM sessions WHERE id_hash = $1",
                params: sql_params![id_hash.to_owned()],
                expect: Expect::Any,
            },
            AuditEntry::new(
                action,
                format!("session:{}", &id_hash[..16.min(id_hash.len())]),
                AuditDetails::new(),
            ),
        )
    }

    /// Second step of the pages' sign-in: the code for a code-prompt session.
    pub async fn submit_code(
        &self,
        ip: IpAddr,
        session: &SessionView,
        factor: &SecondFactor,
    ) -> Result<NewSession, LoginError> {
        if session.state != SessionState::NeedsCode {
            return Err(LoginError::Failed);
        }
        self.gate(ip, &session.user.email)?;
        let record = self
            .password_record(&session.user.email)
            .await?
            .ok_or(LoginError::Failed)?;
        self.finish_second_factor(ip, &record, factor, Some(&session.id_hash))
            .await
    }

    /// Unlock an idle-locked session with the password and a code again.
    pub async fn unlock(
        &self,
        ip: IpAddr,
        session: &SessionView,
        password: &SecretString,
        factor: &SecondFactor,
    ) -> Result<NewSession, LoginError> {
        if session.state != SessionState::Locked && session.state != SessionState::Active {
            return Err(LoginError::Failed);
        }
        let record = self
            .password_step(ip, &session.user.email, password)
            .await?;
        if record.user.id != session.user.id {
            return Err(LoginError::Failed);
        }
        self.finish_second_factor(ip, &record, factor, Some(&session.id_hash))
            .await
    }

    // ----- MFA enrollment ----------------------------------------------------------

    /// The enrollment secret for an enrollment-stage session, created once and kept
    /// (encrypted by the vault, bound to the session) until it is confirmed or the
    /// enrollment is abandoned (the session expires or ends). Reloading the page or typing
    /// a wrong code shows the same QR code and key. A new sign-in within the pending
    /// window carries the secret over from the user's earlier enrollment session, so an
    /// authenticator that already scanned it keeps working.
    pub async fn begin_enrollment(&self, session: &SessionView) -> Result<Enrollment, LoginError> {
        if session.state != SessionState::NeedsEnrollment {
            return Err(LoginError::Failed);
        }
        let secret = match self.pending_secret(session).await? {
            Some(secret) => secret,
            None => self.store_pending_secret(session).await?,
        };
        let issuer = if self.env == Environment::Prod {
            self.config.issuer.clone()
        } else {
            format!("{} ({})", self.config.issuer, self.env.as_str())
        };
        Ok(Enrollment {
            secret_base32: secret.to_base32(),
            otpauth_uri: secret.otpauth_uri(&issuer, &session.user.email),
        })
    }

    /// The pending secret of this session, or (carried over and re-bound to this session)
    /// of the user's newest unexpired earlier enrollment session.
    async fn pending_secret(&self, session: &SessionView) -> Result<Option<TotpSecret>> {
        let rows = self
            .store
            .query(
                "SELECT id_hash, pending_totp FROM sessions
                 WHERE user_id = $1 AND stage = 'enroll' AND pending_totp IS NOT NULL AND expires_at_ms > $2
                 ORDER BY created_at_ms DESC",
                sql_params![session.user.id.clone(), now_ms()],
            )
            .await?;
        let own = rows
            .iter()
            .find(|r| r.text(0).is_ok_and(|id| id == session.id_hash));
        let Some(row) = own.or_else(|| rows.first()) else {
            return Ok(None);
        };
        let (id_hash, Some(ct)) = (row.text(0)?, row.opt_bytes(1)?) else {
            return Ok(None);
        };
        let raw = self
            .vault
            .decrypt(
                &FieldContext::new("sessions", "pending_totp", &id_hash),
                &ct,
            )
            .await?;
        let secret = TotpSecret::from_bytes(&raw);
        if id_hash != session.id_hash {
            self.keep_pending_secret(session, &secret, "mfa.enroll.resume")
                .await?;
        }
        Ok(Some(secret))
    }

    /// A new secret for this enrollment session.
    async fn store_pending_secret(&self, session: &SessionView) -> Result<TotpSecret> {
        let secret = TotpSecret::generate().map_err(|_| AccessError::Rng)?;
        self.keep_pending_secret(session, &secret, "mfa.enroll.begin")
            .await?;
        Ok(secret)
    }

    async fn keep_pending_secret(
        &self,
        session: &SessionView,
        secret: &TotpSecret,
        action: &'static str,
    ) -> Result<()> {
        let actor = Actor::User(session.user.id.clone());
        let ct = self
            .vault
            .encrypt(
                &KeyOwner::system(),
                &FieldContext::new("sessions", "pending_totp", &session.id_hash),
                secret.expose_bytes(),
                &actor,
            )
            .await?;
        let change = Change::new(
            Mutation::Sql {
                statement: "UPDATE sessions SET pending_totp = $2 WHERE id_hash = $1 AND stage = 'enroll'",
                params: sql_params![session.id_hash.clone(), ct],
                expect: Expect::One("enrollment session"),
            },
            AuditEntry::new(
                action,
                format!("user:{}", session.user.id),
                AuditDetails::new(),
            ),
        );
        self.store.commit(&actor, vec![change]).await?;
        Ok(())
    }

    /// Confirm enrollment with a valid code: the secret moves to the user, 10 recovery
    /// codes are made (returned once, stored as keyed hashes), and a full session
    /// replaces the enrollment session.
    pub async fn confirm_enrollment(
        &self,
        ip: IpAddr,
        session: &SessionView,
        code: &SecretString,
    ) -> Result<(NewSession, Vec<Zeroizing<String>>), LoginError> {
        if session.state != SessionState::NeedsEnrollment {
            return Err(LoginError::Failed);
        }
        self.gate(ip, &session.user.email)?;
        let user = &session.user;
        let pending = self
            .store
            .query_one(
                "SELECT pending_totp FROM sessions WHERE id_hash = $1",
                sql_params![session.id_hash.clone()],
            )
            .await?
            .and_then(|r| r.opt_bytes(0).ok().flatten())
            .ok_or(LoginError::Failed)?;
        let raw = self
            .vault
            .decrypt(
                &FieldContext::new("sessions", "pending_totp", &session.id_hash),
                &pending,
            )
            .await?;
        let secret = TotpSecret::from_bytes(&raw);
        let Ok(step) = secret.verify(code.expose_secret(), now_ms() / 1000, None) else {
            return Err(self
                .fail(ip, FailureKind::Totp, &user.email, Some(&user.id))
                .await);
        };
        let actor = Actor::User(user.id.clone());
        let ct = self
            .vault
            .encrypt(
                &KeyOwner::system(),
                &FieldContext::new("users", "totp_secret", &user.id),
                secret.expose_bytes(),
                &actor,
            )
            .await?;
        let now = now_ms();
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        let mut changes = vec![
            Change::new(
                Mutation::Sql {
                    statement: "UPDATE users SET totp_secret = $2, totp_last_step = $3, mfa_enrolled_at_ms = $4, updated_at_ms = $4 WHERE id = $1",
                    params: sql_params![user.id.clone(), ct, step, now],
                    expect: Expect::One("user"),
                },
                AuditEntry::new(
                    "mfa.enroll",
                    format!("user:{}", user.id),
                    AuditDetails::new().str("ip", &ip.to_string()),
                ),
            ),
            delete_recovery_codes_change(&user.id),
        ];
        for _ in 0..RECOVERY_CODES {
            let code = recovery_code()?;
            changes.push(Change::new(
                Mutation::Sql {
                    statement: "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)",
                    params: sql_params![user.id.clone(), self.recovery_tag(&user.id, &code)],
                    expect: Expect::One("recovery code insert"),
                },
                AuditEntry::new(
                    "mfa.recovery_code.add",
                    format!("user:{}", user.id),
                    AuditDetails::new(),
                ),
            ));
            codes.push(code);
        }
        let enrolled = UserInfo {
            mfa_enrolled: true,
            ..user.clone()
        };
        let (new_session, insert) = self.session_insert(&enrolled, Stage::Active)?;
        changes.push(self.session_delete_change(&session.id_hash, "session.upgrade"));
        changes.push(self.login_event(ip, &enrolled, "totp_enroll"));
        changes.push(insert);
        self.store.commit(&actor, changes).await?;
        lock(&self.throttle).record_success(&user.email);
        Ok((new_session, codes))
    }

    // ----- sessions ----------------------------------------------------------------

    /// Look up a session by its cookie token. `None` when unknown, expired, or its user
    /// is disabled. An active session idle for longer than the idle timeout is `Locked`.
    pub async fn session(&self, token: &str) -> Result<Option<SessionView>> {
        if token.len() != 43 {
            return Ok(None);
        }
        let id_hash = sha256_hex(token.as_bytes());
        let Some(row) = self
            .store
            .query_one(
                "SELECT u.id, u.email, u.role, u.disabled, u.mfa_enrolled_at_ms, u.created_at_ms,
                        s.stage, s.csrf, s.created_at_ms, s.last_seen_ms, s.expires_at_ms
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
                sql_params![id_hash.clone()],
            )
            .await?
        else {
            return Ok(None);
        };
        let user = user_from(&row, 0)?;
        let now = now_ms();
        let expires_at_ms = row.int(10)?;
        if user.disabled || now >= expires_at_ms {
            return Ok(None);
        }
        let last_seen_ms = row.int(9)?;
        let state = match Stage::parse(&row.text(6)?) {
            Some(Stage::Mfa) => SessionState::NeedsCode,
            Some(Stage::Enroll) => SessionState::NeedsEnrollment,
            Some(Stage::Active) if now - last_seen_ms > self.config.idle_timeout_s * 1000 => {
                SessionState::Locked
            }
            Some(Stage::Active) => SessionState::Active,
            None => return Ok(None),
        };
        Ok(Some(SessionView {
            id_hash,
            user,
            state,
            csrf: row.text(7)?,
            created_at_ms: row.int(8)?,
            last_seen_ms,
            expires_at_ms,
        }))
    }

    /// Record activity on an active session (at most every [`TOUCH_EVERY_MS`]).
    pub async fn touch_session(&self, session: &SessionView) -> Result<()> {
        let now = now_ms();
        if session.state == SessionState::Active && now - session.last_seen_ms >= TOUCH_EVERY_MS {
            self.store
                .touch(
                    "UPDATE sessions SET last_seen_ms = $2 WHERE id_hash = $1 AND last_seen_ms < $2",
                    sql_params![session.id_hash.clone(), now],
                )
                .await?;
        }
        Ok(())
    }

    /// End a session on the server.
    pub async fn logout(&self, session: &SessionView) -> Result<()> {
        let changes = vec![
            self.session_delete_change(&session.id_hash, "session.end"),
            Change::event(AuditEntry::new(
                "auth.logout",
                format!("user:{}", session.user.id),
                AuditDetails::new(),
            )),
        ];
        self.store
            .commit(&Actor::User(session.user.id.clone()), changes)
            .await?;
        Ok(())
    }

    /// Delete expired sessions. Returns how many.
    pub async fn sweep_sessions(&self) -> Result<i64> {
        let now = now_ms();
        let n = self
            .store
            .query_one(
                "SELECT COUNT(*) FROM sessions WHERE expires_at_ms <= $1",
                sql_params![now],
            )
            .await?
            .map_or(Ok(0), |r| r.int(0))?;
        if n > 0 {
            let change = Change::new(
                Mutation::Sql {
                    statement: "DELETE FROM sessions WHERE expires_at_ms <= $1",
                    params: sql_params![now],
                    expect: Expect::Any,
                },
                AuditEntry::new(
                    "session.sweep",
                    "sessions",
                    AuditDetails::new().int("expired", n),
                ),
            );
            self.store
                .commit(&Actor::System("access"), vec![change])
                .await?;
        }
        Ok(n)
    }

    // ----- API keys ----------------------------------------------------------------

    /// Create an API key; the returned token is shown once and never stored.
    pub async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        expires_in_s: Option<i64>,
        actor: &Actor,
    ) -> Result<(ApiKeyInfo, SecretString)> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
            return Err(AccessError::BadKeyName);
        }
        if self.api_keys().await?.iter().any(|k| k.name == name) {
            return Err(AccessError::ApiKeyExists(name.to_owned()));
        }
        let id = random_hex(8)?;
        let secret = Zeroizing::new(hex::encode(*random_bytes::<32>()?));
        let token = SecretString::from(format!(
            "stk_{}_{}_{}",
            self.env.as_str(),
            id,
            secret.as_str()
        ));
        let now = now_ms();
        let expires = expires_in_s.map(|s| now + s * 1000);
        let change = Change::new(
            Mutation::Sql {
                statement: "INSERT INTO api_keys (id, name, role, env, secret_hash, created_by, created_at_ms, expires_at_ms)
                            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                params: sql_params![
                    id.clone(),
                    name.to_owned(),
                    role.as_str(),
                    self.env.as_str(),
                    digest::digest(&digest::SHA256, secret.as_bytes()).as_ref().to_vec(),
                    actor.to_string(),
                    now,
                    expires
                ],
                expect: Expect::One("api key insert"),
            },
            AuditEntry::new(
                "apikey.create",
                format!("apikey:{id}"),
                AuditDetails::new()
                    .str("role", role.as_str())
                    .str("name", name)
                    .int("expires_at_ms", expires.unwrap_or(0)),
            ),
        );
        match self.store.commit(actor, vec![change]).await {
            Err(StoreError::Conflict(_)) => return Err(AccessError::ApiKeyExists(name.to_owned())),
            r => r?,
        };
        Ok((
            ApiKeyInfo {
                id,
                name: name.to_owned(),
                role,
                env: self.env.as_str().to_owned(),
                created_by: actor.to_string(),
                created_at_ms: now,
                expires_at_ms: expires,
                last_used_at_ms: None,
                revoked_at_ms: None,
            },
            token,
        ))
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        self.store
            .query(
                "SELECT id, name, role, env, created_by, created_at_ms, expires_at_ms, last_used_at_ms, revoked_at_ms
                 FROM api_keys ORDER BY created_at_ms, id",
                vec![],
            )
            .await?
            .iter()
            .map(api_key_from)
            .collect()
    }

    /// Revoke a key by name or id. Takes effect on the next request: keys are checked
    /// against the database on every request, with no cache.
    pub async fn revoke_api_key(&self, name_or_id: &str, actor: &Actor) -> Result<ApiKeyInfo> {
        let key = self
            .api_keys()
            .await?
            .into_iter()
            .find(|k| (k.name == name_or_id || k.id == name_or_id) && k.revoked_at_ms.is_none())
            .ok_or_else(|| AccessError::ApiKeyNotFound(name_or_id.to_owned()))?;
        let now = now_ms();
        let change = Change::new(
            Mutation::Sql {
                statement: "UPDATE api_keys SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL",
                params: sql_params![key.id.clone(), now],
                expect: Expect::One("active api key"),
            },
            AuditEntry::new(
                "apikey.revoke",
                format!("apikey:{}", key.id),
                AuditDetails::new(),
            ),
        );
        self.store.commit(actor, vec![change]).await?;
        Ok(ApiKeyInfo {
            revoked_at_ms: Some(now),
            ..key
        })
    }

    /// Check an API key. Refusals are returned for the caller to count as failures.
    pub async fn authenticate_api_key(
        &self,
        token: &str,
    ) -> Result<Result<ApiPrincipal, KeyRejection>> {
        let mut parts = token.splitn(4, '_');
        let (Some("stk"), Some(env), Some(id), Some(secret)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(Err(KeyRejection::Malformed));
        };
        if id.len() != 16 || secret.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Err(KeyRejection::Malformed));
        }
        if env != self.env.as_str() {
            let key_env = env
                .parse::<Environment>()
                .map_or_else(|_| "unknown".to_owned(), |e| e.as_str().to_owned());
            return Ok(Err(KeyRejection::WrongEnvironment {
                key_env,
                server_env: self.env.as_str().to_owned(),
            }));
        }
        let Some(row) = self
            .store
            .query_one(
                "SELECT id, name, role, env, secret_hash, expires_at_ms, last_used_at_ms, revoked_at_ms FROM api_keys WHERE id = $1",
                sql_params![id.to_owned()],
            )
            .await?
        else {
            return Ok(Err(KeyRejection::Unknown));
        };
        let stored = row.bytes(4)?;
        let presented = digest::digest(&digest::SHA256, secret.as_bytes());
        if constant_time::verify_slices_are_equal(presented.as_ref(), &stored).is_err()
            || row.text(3)? != self.env.as_str()
        {
            return Ok(Err(KeyRejection::Unknown));
        }
        if row.opt_int(7)?.is_some() {
            return Ok(Err(KeyRejection::Revoked));
        }
        let now = now_ms();
        if row.opt_int(5)?.is_some_and(|e| now >= e) {
            return Ok(Err(KeyRejection::Expired));
        }
        let principal = ApiPrincipal {
            id: row.text(0)?,
            name: row.text(1)?,
            role: row.text(2)?.parse()?,
        };
        if row
            .opt_int(6)?
            .is_none_or(|t| now - t >= KEY_TOUCH_EVERY_MS)
        {
            let store = self.store.clone();
            let id = principal.id.clone();
            tokio::spawn(async move {
                if let Err(e) = store
                    .touch(
                        "UPDATE api_keys SET last_used_at_ms = $2 WHERE id = $1",
                        sql_params![id, now],
                    )
                    .await
                {
                    tracing::warn!("could not record an API key's last use: {e}");
                }
            });
        }
        Ok(Ok(principal))
    }

    /// A key from another environment is a security event (alerted by the alerts issue).
    pub async fn record_wrong_environment_key(&self, ip: IpAddr, key_env: &str) -> Result<()> {
        let event = serde_json::json!({
            "ip": ip.to_string(),
            "key_env": key_env,
            "server_env": self.env.as_str(),
        });
        let change = Change::new(
            security_event("apikey_wrong_environment", &event),
            AuditEntry::new(
                "security.apikey_wrong_environment",
                "auth",
                AuditDetails::new()
                    .str("ip", &ip.to_string())
                    .str("key_env", key_env)
                    .str("server_env", self.env.as_str()),
            ),
        );
        self.store
            .commit(&Actor::System("access"), vec![change])
            .await?;
        Ok(())
    }
}

/// A security event for the alert pipeline (`events`, source `access`), written in the
/// same transaction as the change it reports. Details are ids, addresses and counts
/// only; the alert shows addresses as their network.
fn security_event(kind: &str, detail: &serde_json::Value) -> Mutation {
    Mutation::Sql {
        statement: "INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
                    VALUES ($1, 'access', $2, 'system:access', '', '', 'security', NULL, $3)",
        params: sql_params![now_ms(), kind, detail.to_string()],
        expect: Expect::One("security event"),
    }
}

/// Remove all of a user's recovery codes (MFA reset, re-enrollment).
fn delete_recovery_codes_change(user_id: &str) -> Change {
    Change::new(
        Mutation::Sql {
            statement: "DELETE FROM recovery_codes WHERE user_id = $1",
            params: sql_params![user_id.to_owned()],
            expect: Expect::Any,
        },
        AuditEntry::new(
            "mfa.recovery_codes.delete",
            format!("user:{user_id}"),
            AuditDetails::new(),
        ),
    )
}

/// A recovery code: 10 base32 characters (50 bits) shown as `xxxxx-xxxxx`.
fn recovery_code() -> Result<Zeroizing<String>> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bytes = random_bytes::<10>()?;
    let mut s = Zeroizing::new(String::with_capacity(11));
    for (i, b) in bytes.iter().enumerate() {
        if i == 5 {
            s.push('-');
        }
        s.push(char::from(ALPHABET[usize::from(*b & 31)]));
    }
    Ok(s)
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

    #[test]
    fn emails_normalise_and_validate() {
        assert_eq!(
            normalize_email(" Ops@Shop.Example ").unwrap(),
            "ops@shop.example"
        );
        for bad in [
            "", "no-at", "a@b", "a b@c.d", "@c.d", "a@.c", "a@c.d.", "a@b@c.d",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    async fn access_in(env: Environment) -> (Access, std::path::PathBuf) {
        use stockade_store::{DatabaseUrl, StoreOptions};
        use stockade_vault::{MasterKeySource, MasterKeys};
        let dir =
            std::env::temp_dir().join(format!("stockade-access-unit-{}", random_hex(8).unwrap()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = DatabaseUrl::Sqlite(dir.join("db.sqlite"));
        let (store, _) = Store::init(&url, env, &StoreOptions::default())
            .await
            .unwrap();
        let master = MasterKeys::generate(env, MasterKeySource::EnvVar).unwrap();
        let vault = Vault::bootstrap(store, master, &Actor::System("test"))
            .await
            .unwrap();
        let access = Access::new(Arc::new(vault), AccessConfig::default())
            .await
            .unwrap();
        (access, dir)
    }

    // `stockade demo` enrolls its admin's TOTP without a sign-in: dev only.
    #[tokio::test]
    async fn unattended_totp_enrollment_works_in_dev_and_is_refused_in_prod() {
        let actor = Actor::System("test");
        let pw = SecretString::from("Kq7-vantage-Mirror-42".to_owned());
        let (dev, dir) = access_in(Environment::Dev).await;
        dev.add_user("a@shop.example", Role::Admin, &pw, &actor)
            .await
            .unwrap();
        let (user, secret) = dev
            .enroll_totp_unattended("a@shop.example", &actor)
            .await
            .unwrap();
        assert!(user.mfa_enrolled);
        let code = SecretString::from(secret.code_at(now_ms() / 1000));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let factor = SecondFactor::Totp(code);
        dev.login(ip, "a@shop.example", &pw, Some(&factor), false)
            .await
            .unwrap();
        let _ = std::fs::remove_dir_all(dir);

        let (prod, dir) = access_in(Environment::Prod).await;
        prod.add_user("a@shop.example", Role::Admin, &pw, &actor)
            .await
            .unwrap();
        assert!(matches!(
            prod.enroll_totp_unattended("a@shop.example", &actor).await,
            Err(AccessError::DevOnly(_))
        ));
        assert!(
            !prod
                .user_by_email("a@shop.example")
                .await
                .unwrap()
                .unwrap()
                .mfa_enrolled
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn recovery_codes_are_random_and_shaped() {
        let a = recovery_code().unwrap();
        let b = recovery_code().unwrap();
        assert_ne!(*a, *b);
        assert_eq!(a.len(), 11);
        assert_eq!(a.as_bytes()[5], b'-');
    }
}
