//! MFA: TOTP enrollment, MFA reset and recovery codes.
//!
//! Enrollment happens at a user's first sign-in: the pending secret is kept encrypted
//! by the vault and bound to the enrollment session until a valid code confirms it,
//! then it moves to the user and [`RECOVERY_CODES`] recovery codes are made, shown once
//! and stored only as vault-keyed HMAC tags. Unattended enrollment is for dev and test
//! environments only.

use std::net::IpAddr;

use stockade_core::event::{Event, MfaReset};
use stockade_core::{Actor, Environment, SecretString, time::now_ms};
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, sql_params};
use stockade_vault::{FieldContext, KeyOwner};
use zeroize::Zeroizing;

use super::{
    Access, AccessError, FailureKind, LoginError, NewSession, Result, SessionState, SessionView,
    Stage, UserInfo, lock, random_bytes, security_event,
};
use crate::totp::TotpSecret;

/// How many recovery codes a user gets at enrollment.
pub const RECOVERY_CODES: usize = 10;

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

impl Access {
    /// Forget a user's TOTP secret and recovery codes and end their sessions: the next
    /// sign-in leads to enrollment again.
    pub async fn reset_mfa(&self, email: &str, actor: &Actor) -> Result<UserInfo> {
        let user = self.require_user(email).await?;
        let event = Event::MfaReset(MfaReset {
            by: Some(actor.to_string()),
            user: user.id.clone(),
        });
        let changes = vec![
            Change::new(
                Mutation::Many {
                    steps: vec![
                        Mutation::Sql {
                            statement: "UPDATE users SET totp_secret = NULL, totp_last_step = NULL, mfa_enrolled_at_ms = NULL, updated_at_ms = $2 WHERE id = $1",
                            params: sql_params![user.id.clone(), now_ms()],
                            expect: Expect::One("user"),
                        },
                        security_event(event),
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

    pub(super) fn recovery_tag(&self, user_id: &str, code: &str) -> String {
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
    use std::sync::Arc;

    use stockade_store::Store;
    use stockade_vault::Vault;

    use super::super::{AccessConfig, SecondFactor, random_hex};
    use super::*;
    use crate::roles::Role;

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
