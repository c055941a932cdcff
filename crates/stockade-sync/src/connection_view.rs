//! Connections as an operator reviews them (the console's connections page and its API),
//! and the operator's revocation, shared with `stockade connection revoke`.
//!
//! [`views`] reads each connection with its push health ([`crate::health`]), its poll
//! cursor ([`crate::stats`]) and what the events say about its marketplace side (rate-limit
//! answers, authorization-expiring notices: [`stockade_store::Store::connection_signals`]).
//! Nothing here writes except [`revoke`], which refuses unless the name typed to confirm
//! is the connection's own, and then purges with the operator's reason ([`crate::purge`]):
//! the CLI and the console write the same `connection.purge` audit row and receipt.
//! Pause and resume are [`crate::connections::set_status`] for both.

use serde::Serialize;
use stockade_core::Actor;
use stockade_vault::Vault;

use crate::connections::{self, Connection, ConnectionStatus};
use crate::purge::{self, PurgeReceipt};
use crate::{Result, SyncError};

/// The purge reason of a revocation by an operator (CLI or console).
pub const OPERATOR_REVOKE_REASON: &str = "revoked by operator";

/// How far back rate-limit answers count as the connection's current state.
pub const THROTTLE_WINDOW_MS: i64 = 15 * 60 * 1000;

/// The most connections one view lists (a deployment has a handful).
pub const MAX_CONNECTIONS: usize = 500;

/// Whether `typed` confirms revoking `name`: the exact name, surrounding blanks ignored.
pub fn confirms(typed: &str, name: &str) -> bool {
    typed.trim() == name
}

/// One connection's state for review. No secret: credentials are never read here.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionView {
    pub name: String,
    pub marketplace: String,
    pub endpoint: String,
    pub account: String,
    pub status: ConnectionStatus,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// The newest authorization-expiring notice the marketplace sent (none kept: fine).
    pub auth_expiring_ms: Option<i64>,
    /// When the poller last moved its cursor.
    pub last_poll_ms: Option<i64>,
    pub push_failures: i64,
    pub push_failing_since_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    /// 429 answers in the last [`THROTTLE_WINDOW_MS`].
    pub throttled: i64,
    pub last_throttled_ms: Option<i64>,
}

impl ConnectionView {
    /// `ok`, `expiring` (a notice came) or `revoked`.
    pub fn authorization(&self) -> &'static str {
        if self.status == ConnectionStatus::Revoked {
            "revoked"
        } else if self.auth_expiring_ms.is_some() {
            "expiring"
        } else {
            "ok"
        }
    }
    /// Whether the marketplace is holding the connection back right now.
    pub fn rate_limited(&self) -> bool {
        self.throttled > 0
    }
}

async fn view(store: &stockade_store::Store, c: Connection, now_ms: i64) -> Result<ConnectionView> {
    let health = crate::health::connection_health(store, c.id).await?;
    let cursor = crate::stats::poll_cursor(store, c.id).await?;
    let signals = store
        .connection_signals(&c.name, now_ms - THROTTLE_WINDOW_MS)
        .await?;
    Ok(ConnectionView {
        marketplace: c.marketplace.as_str().to_owned(),
        endpoint: c.endpoint.as_str().to_owned(),
        account: c.account,
        status: c.status,
        created_at_ms: c.created_at_ms,
        revoked_at_ms: c.revoked_at_ms,
        auth_expiring_ms: signals.auth_expiring_ms,
        last_poll_ms: cursor.map(|(_, polled)| polled),
        push_failures: health.failures,
        push_failing_since_ms: health.failing_since_ms,
        last_error: health.last_error,
        last_error_at_ms: health.last_error_at_ms,
        throttled: signals.throttled,
        last_throttled_ms: signals.last_throttled_ms,
        name: c.name,
    })
}

/// Every connection (revoked ones last), by name, at most [`MAX_CONNECTIONS`].
pub async fn views(store: &stockade_store::Store, now_ms: i64) -> Result<Vec<ConnectionView>> {
    let mut all = connections::list(store).await?;
    all.sort_by(|a, b| {
        let revoked = |c: &Connection| c.status == ConnectionStatus::Revoked;
        revoked(a)
            .cmp(&revoked(b))
            .then_with(|| a.name.cmp(&b.name))
    });
    all.truncate(MAX_CONNECTIONS);
    let mut out = Vec::with_capacity(all.len());
    for c in all {
        out.push(view(store, c, now_ms).await?);
    }
    Ok(out)
}

/// One connection's view.
pub async fn view_of(
    store: &stockade_store::Store,
    name: &str,
    now_ms: i64,
) -> Result<ConnectionView> {
    let c = connections::get(store, name).await?;
    view(store, c, now_ms).await
}

/// Revoke and purge `name` as `actor`, only if `typed` confirms it ([`confirms`]); a
/// refusal (unknown name, wrong confirmation) changes nothing. The purge is
/// [`purge::purge`] with [`OPERATOR_REVOKE_REASON`] (idempotent: revoking a revoked
/// connection again finishes what a crash may have left and returns its receipt).
pub async fn revoke(vault: &Vault, name: &str, typed: &str, actor: &Actor) -> Result<PurgeReceipt> {
    let c = connections::get(vault.store(), name).await?;
    if !confirms(typed, &c.name) {
        return Err(SyncError::Invalid(
            "not confirmed: the name typed is not the connection's; nothing was changed".into(),
        ));
    }
    purge::purge(vault, &c.name, OPERATOR_REVOKE_REASON, actor).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_name_confirms() {
        assert!(confirms("shop-1", "shop-1"));
        assert!(confirms("  shop-1\n", "shop-1"));
        assert!(!confirms("shop-", "shop-1"));
        assert!(!confirms("SHOP-1", "shop-1"));
        assert!(!confirms("", "shop-1"));
    }
}
