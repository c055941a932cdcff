//! Sessions as an administrator reviews them (the console's security page and its API):
//! the sessions in force, ending one, ending all of a user's.
//!
//! A session is named by its public id: the first 16 hex digits of its `id_hash`, the same
//! id its audit rows carry (`session:<id>`). Neither the cookie token nor its full hash is
//! ever returned; the public id cannot be turned into a cookie. Ending a session is an
//! audited commit (`session.revoke`, or `session.end_all` for all of a user's) as the
//! acting administrator; a refusal (unknown id, unknown user) writes nothing.

use stockade_core::{Actor, time::now_ms};
use stockade_store::{AuditDetails, AuditEntry, Columns, FromRow, sql_params};

use super::{Access, AccessError, Result};
use crate::Role;

/// Length of a session's public id (hex digits of its hash).
pub const SESSION_ID_LEN: usize = 16;

/// A session in force, without anything that could sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The public id (see the module doc).
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub role: Role,
    /// `active`, or a sign-in step not yet finished (`mfa`, `enroll`).
    pub stage: String,
    pub created_at_ms: i64,
    pub last_seen_ms: i64,
    pub expires_at_ms: i64,
}

impl FromRow for SessionInfo {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(SessionInfo {
            id: c.get()?,
            user_id: c.get()?,
            email: c.get()?,
            role: c.parse("user role")?,
            stage: c.get()?,
            created_at_ms: c.get()?,
            last_seen_ms: c.get()?,
            expires_at_ms: c.get()?,
        })
    }
}

/// Sessions in force, newest first, after the cursor `(created_at_ms, id)`.
const SESSIONS: &str = "SELECT SUBSTR(s.id_hash, 1, 16), u.id, u.email, u.role, s.stage,
        s.created_at_ms, s.last_seen_ms, s.expires_at_ms
     FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.expires_at_ms > $1
       AND (s.created_at_ms < $2 OR (s.created_at_ms = $2 AND SUBSTR(s.id_hash, 1, 16) > $3))
     ORDER BY s.created_at_ms DESC, SUBSTR(s.id_hash, 1, 16) LIMIT $4";
const FIND: &str =
    "SELECT id_hash FROM sessions WHERE SUBSTR(id_hash, 1, 16) = $1 AND expires_at_ms > $2";

/// Whether `id` looks like a public session id (16 lower-case hex digits).
pub fn valid_session_id(id: &str) -> bool {
    id.len() == SESSION_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Access {
    /// Up to `limit` sessions in force, newest first, after `after` (the last
    /// `(created_at_ms, id)` of the previous page).
    pub async fn sessions_page(
        &self,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<SessionInfo>> {
        let (created, id) = after.unwrap_or((i64::MAX, String::new()));
        Ok(self
            .store
            .query_as(SESSIONS, sql_params![now_ms(), created, id, limit])
            .await?)
    }

    /// End one session by its public id, as `actor` (audited `session.revoke`).
    pub async fn revoke_session(&self, id: &str, actor: &Actor) -> Result<()> {
        if !valid_session_id(id) {
            return Err(AccessError::SessionNotFound);
        }
        let hashes: Vec<String> = self
            .store
            .query_as(FIND, sql_params![id.to_owned(), now_ms()])
            .await?;
        let [hash] = hashes.as_slice() else {
            // None, or (never in practice) two sharing a prefix: refuse, change nothing.
            return Err(AccessError::SessionNotFound);
        };
        let change = self.session_delete_change(hash, "session.revoke");
        self.store.commit(actor, vec![change]).await?;
        Ok(())
    }

    /// End every session of the user `user_id`, as `actor` (audited `session.end_all`).
    /// Returns how many were in force.
    pub async fn revoke_user_sessions(&self, user_id: &str, actor: &Actor) -> Result<i64> {
        let exists = self
            .store
            .count(
                "SELECT COUNT(*) FROM users WHERE id = $1",
                sql_params![user_id.to_owned()],
            )
            .await?;
        if exists == 0 {
            return Err(AccessError::UserNotFound);
        }
        let n = self
            .store
            .count(
                "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
                sql_params![user_id.to_owned()],
            )
            .await?;
        let mut change = self.end_sessions_change(user_id, "revoked by an administrator");
        change.audit = AuditEntry::new(
            "session.end_all",
            format!("user:{user_id}"),
            AuditDetails::new()
                .str("because", "revoked by an administrator")
                .int("sessions", n),
        );
        self.store.commit(actor, vec![change]).await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ids_are_sixteen_hex_digits() {
        assert!(valid_session_id("0123456789abcdef"));
        assert!(!valid_session_id("0123456789ABCDEF"));
        assert!(!valid_session_id("0123456789abcde"));
        assert!(!valid_session_id("0123456789abcdeg"));
        assert!(!valid_session_id("' OR 1=1 --xxxxx"));
    }
}
