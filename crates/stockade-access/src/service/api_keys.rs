//! API keys: creating, listing, revoking and checking them.
//!
//! A key reads `stk_<env>_<id>_<secret>`; the token is shown once and only the SHA-256
//! of its secret is stored, compared in constant time. Keys are checked against the
//! database on every request, with no cache, so a revocation takes effect on the next
//! request. A key from another environment is refused and reported as a security event.

use std::net::IpAddr;

use aws_lc_rs::{constant_time, digest};
use stockade_core::event::{Event, WrongEnvironmentKey};
use stockade_core::{Actor, Environment, SecretString, time::now_ms};
use stockade_store::{
    AuditDetails, AuditEntry, Change, Columns, Expect, FromRow, Mutation, StoreError, sql_params,
};
use zeroize::Zeroizing;

use super::{Access, AccessError, Result, random_bytes, random_hex, security_event};
use crate::roles::Role;

/// An API key's last use is written at most this often.
pub const KEY_TOUCH_EVERY_MS: i64 = 60_000;

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

impl FromRow for ApiKeyInfo {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(ApiKeyInfo {
            id: c.get()?,
            name: c.get()?,
            role: c.parse("API key role")?,
            env: c.get()?,
            created_by: c.get()?,
            created_at_ms: c.get()?,
            expires_at_ms: c.get()?,
            last_used_at_ms: c.get()?,
            revoked_at_ms: c.get()?,
        })
    }
}

impl Access {
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
        Ok(self
            .store
            .query_as(
                "SELECT id, name, role, env, created_by, created_at_ms, expires_at_ms, last_used_at_ms, revoked_at_ms
                 FROM api_keys ORDER BY created_at_ms, id",
                vec![],
            )
            .await?)
    }

    /// Revoke a key by name or id. Takes effect on the next request: keys are checked
    /// against the database on every request, with no cache.
    pub async fn revoke_api_key(&self, name_or_id: &str, actor: &Actor) -> Result<ApiKeyInfo> {
        let active: Vec<ApiKeyInfo> = self
            .api_keys()
            .await?
            .into_iter()
            .filter(|k| k.revoked_at_ms.is_none())
            .collect();
        // An exact id wins over a name (a name may look like another key's id).
        let key = active
            .iter()
            .find(|k| k.id == name_or_id)
            .or_else(|| active.iter().find(|k| k.name == name_or_id))
            .cloned()
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
        // A read by primary key on every request (no cache: a revocation holds at once).
        let Some((secret_hash, key)) = self
            .store
            .query_by_key_as::<(Vec<u8>, ApiKeyInfo)>(
                "SELECT secret_hash, id, name, role, env, created_by, created_at_ms, expires_at_ms, last_used_at_ms, revoked_at_ms
                 FROM api_keys WHERE id = $1",
                sql_params![id.to_owned()],
            )
            .await?
            .into_iter()
            .next()
        else {
            return Ok(Err(KeyRejection::Unknown));
        };
        let presented = digest::digest(&digest::SHA256, secret.as_bytes());
        if constant_time::verify_slices_are_equal(presented.as_ref(), &secret_hash).is_err()
            || key.env != self.env.as_str()
        {
            return Ok(Err(KeyRejection::Unknown));
        }
        if key.revoked_at_ms.is_some() {
            return Ok(Err(KeyRejection::Revoked));
        }
        let now = now_ms();
        if key.expires_at_ms.is_some_and(|e| now >= e) {
            return Ok(Err(KeyRejection::Expired));
        }
        let principal = ApiPrincipal {
            id: key.id,
            name: key.name,
            role: key.role,
        };
        if key
            .last_used_at_ms
            .is_none_or(|t| now - t >= KEY_TOUCH_EVERY_MS)
        {
            let store = self.store.clone();
            let id = principal.id.clone();
            tokio::spawn(async move {
                if let Err(e) = store
                    .write_unaudited(
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
        let event = Event::ApiKeyWrongEnvironment(WrongEnvironmentKey {
            ip: Some(ip.to_string()),
            key_env: key_env.to_owned(),
            server_env: self.env.as_str().to_owned(),
        });
        let change = Change::new(
            security_event(event),
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
