//! Users and passwords: accounts, roles, enabling and disabling, password changes and
//! the argon2id hashing behind them.
//!
//! Hashing runs on the blocking pool, at most a few at a time (the `hashing`
//! semaphore), so a burst of sign-ins cannot starve the runtime. Email addresses are
//! stored lower-cased ([`normalize_email`]). Changing a password or disabling a user ends
//! all of the user's sessions in the same commit.

use stockade_core::{Actor, SecretString, time::now_ms};
use stockade_store::{
    AuditDetails, AuditEntry, Change, Columns, Expect, FromRow, Mutation, StoreError, sql_params,
};
use zeroize::Zeroizing;

use super::{Access, AccessError, Result, random_hex};
use crate::password::{self, HashError};
use crate::roles::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub mfa_enrolled: bool,
    pub created_at_ms: i64,
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

/// Columns `id, email, role, disabled, mfa_enrolled_at_ms, created_at_ms` of `users`.
impl FromRow for UserInfo {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(UserInfo {
            id: c.get()?,
            email: c.get()?,
            role: c.parse("user role")?,
            disabled: c.get()?,
            mfa_enrolled: c.get::<Option<i64>>()?.is_some(),
            created_at_ms: c.get()?,
        })
    }
}

pub(super) struct PasswordRecord {
    pub(super) user: UserInfo,
    pub(super) hash: String,
    pub(super) totp_secret: Option<Vec<u8>>,
    pub(super) totp_last_step: Option<i64>,
}

impl Access {
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

    pub(super) async fn verify(&self, password: &SecretString, phc: &str) -> Result<bool> {
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
        Ok(self
            .store
            .query_as(
                "SELECT id, email, role, disabled, mfa_enrolled_at_ms, created_at_ms FROM users ORDER BY created_at_ms, id",
                vec![],
            )
            .await?)
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserInfo>> {
        let email = normalize_email(email)?;
        Ok(self
            .store
            .query_one_as(
                "SELECT id, email, role, disabled, mfa_enrolled_at_ms, created_at_ms FROM users WHERE email = $1",
                sql_params![email],
            )
            .await?)
    }

    pub(super) async fn require_user(&self, email: &str) -> Result<UserInfo> {
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

    pub(super) async fn password_record(&self, email: &str) -> Result<Option<PasswordRecord>> {
        let row = self
            .store
            .query_one_as(
                "SELECT id, email, role, disabled, mfa_enrolled_at_ms, created_at_ms, password_hash, totp_secret, totp_last_step
                 FROM users WHERE email = $1",
                sql_params![email.to_owned()],
            )
            .await?;
        Ok(
            row.map(|(user, hash, totp_secret, totp_last_step)| PasswordRecord {
                user,
                hash,
                totp_secret,
                totp_last_step,
            }),
        )
    }

    pub(super) async fn rehash(&self, user: &UserInfo, password: &SecretString) -> Result<()> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
