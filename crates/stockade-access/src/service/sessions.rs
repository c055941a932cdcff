//! Sessions: opening, looking up, touching and ending them.
//!
//! The cookie carries a 256-bit random token; the database keeps only its SHA-256
//! (`id_hash`). A session is `Active` until its absolute lifetime ends; an active
//! session idle for longer than the idle timeout is `Locked` (password and code are
//! asked again); activity is written at most every [`TOUCH_EVERY_MS`]. Sign-in steps
//! before a full session (code prompt, enrollment) expire after [`PENDING_STEP_MS`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use stockade_core::{Actor, SecretString, time::now_ms};
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, sql_params};

use super::{Access, Result, UserInfo, random_bytes, sha256_hex};

/// Session activity is written at most this often (seconds); the idle lock is exact to it.
pub const TOUCH_EVERY_MS: i64 = 15_000;

/// Sign-in steps before a full session (code prompt, enrollment) expire after this.
pub const PENDING_STEP_MS: i64 = 10 * 60 * 1000;

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
    /// The console language the user chose (`en`, `zh`), if any (`users.language`).
    pub language: Option<String>,
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

impl Access {
    pub(super) fn session_insert(
        &self,
        user: &UserInfo,
        stage: Stage,
    ) -> Result<(NewSession, Change)> {
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

    pub(super) fn session_delete_change(&self, id_hash: &str, action: &str) -> Change {
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

    pub(super) fn end_sessions_change(&self, user_id: &str, because: &str) -> Change {
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

    /// Look up a session by its cookie token. `None` when unknown, expired, or its user
    /// is disabled. An active session idle for longer than the idle timeout is `Locked`.
    pub async fn session(&self, token: &str) -> Result<Option<SessionView>> {
        if token.len() != 43 {
            return Ok(None);
        }
        let id_hash = sha256_hex(token.as_bytes());
        let Some((user, language, stage, csrf, created_at_ms, (last_seen_ms, expires_at_ms))) = self
            .store
            .query_one_as::<(UserInfo, Option<String>, String, String, i64, (i64, i64))>(
                "SELECT u.id, u.email, u.role, u.disabled, u.mfa_enrolled_at_ms, u.created_at_ms,
                        u.language, s.stage, s.csrf, s.created_at_ms, s.last_seen_ms, s.expires_at_ms
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
                sql_params![id_hash.clone()],
            )
            .await?
        else {
            return Ok(None);
        };
        let now = now_ms();
        if user.disabled || now >= expires_at_ms {
            return Ok(None);
        }
        let state = match Stage::parse(&stage) {
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
            csrf,
            created_at_ms,
            last_seen_ms,
            expires_at_ms,
            language,
        }))
    }

    /// Record activity on an active session (at most every [`TOUCH_EVERY_MS`]).
    pub async fn touch_session(&self, session: &SessionView) -> Result<()> {
        let now = now_ms();
        if session.state == SessionState::Active && now - session.last_seen_ms >= TOUCH_EVERY_MS {
            self.store
                .write_unaudited(
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
            .count(
                "SELECT COUNT(*) FROM sessions WHERE expires_at_ms <= $1",
                sql_params![now],
            )
            .await?;
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
}
