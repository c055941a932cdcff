//! Sign-in: the password step, the second factor (a TOTP code or a recovery code) and
//! the flows built on them (one-step JSON login, the pages' two-step login, the code
//! prompt, unlocking an idle-locked session).
//!
//! Every step checks the ban guard and the account throttle first, and every failure is
//! counted ([`Access::record_failure`]) and answered the same way, never saying which
//! factor was wrong. Unknown emails cost the same hash as known ones. A second factor is
//! consumed in the same commit that opens the session, so a code or a TOTP step is used
//! at most once even across processes.

use std::net::IpAddr;

use stockade_core::{Actor, SecretString, time::now_ms};
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, StoreError, sql_params};
use stockade_vault::FieldContext;

use super::users::PasswordRecord;
use super::{
    Access, FailureKind, LoginError, NewSession, Result, SessionState, SessionView, Stage,
    UserInfo, lock, normalize_email,
};
use crate::ban::{FailureOutcome, Jail};
use crate::password;
use crate::totp::TotpSecret;

/// The second factor offered at sign-in.
#[derive(Debug)]
pub enum SecondFactor {
    Totp(SecretString),
    Recovery(SecretString),
}

impl Access {
    pub(super) fn gate(&self, ip: IpAddr, account: &str) -> Result<(), LoginError> {
        if let Some(ban) = self.banned(ip, Jail::Interactive) {
            return Err(LoginError::Banned { until: ban.until });
        }
        if let Some(retry_after) = lock(&self.throttle).retry_after(account, now_ms() / 1000) {
            return Err(LoginError::Throttled { retry_after });
        }
        Ok(())
    }

    pub(super) async fn fail(
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

    pub(super) fn login_event(&self, ip: IpAddr, user: &UserInfo, method: &str) -> Change {
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
}
