//! Wake-ups between processes sharing one database. After a change the others must see
//! soon (incident controls, bans), the writer calls [`crate::Store::wake`]; a process
//! waiting in [`Wakeups::wait`] for that topic returns early and re-reads.
//!
//! On PostgreSQL this is `NOTIFY` / `LISTEN` (each waiter on a connection of its own,
//! not one of the pool's); on SQLite nothing is sent and waiting is a plain sleep. A
//! waiter still re-reads after every period: a notification only shortens the wait, so a
//! lost one, a reconnect, or PgBouncer in transaction mode (where `LISTEN` receives
//! nothing) costs at most one period. Payloads are empty: the topic says what to re-read.

use std::time::Duration;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Incident isolations and the lockdown (`incident_controls`).
    Controls,
    /// Address bans added or lifted.
    Bans,
    /// Connections added, paused, resumed, edited or revoked (`connections`): every
    /// process re-reads its connection registry.
    Connections,
    /// Credentials stored, rotated or revoked: every process rebuilds the connections
    /// that use them (with [`Topic::Connections`]'s re-read).
    Credentials,
    /// Webhook fetches handed to a connection's owner (`fetch_requests`): the owners
    /// read them.
    Fetches,
    /// Listing quantities to push changed (an ingest batch committed) for connections
    /// another process owns: the owners' pushers look for work.
    Listings,
}

impl Topic {
    pub(crate) fn channel(self) -> &'static str {
        match self {
            Topic::Controls => "stockade_controls",
            Topic::Bans => "stockade_bans",
            Topic::Connections => "stockade_connections",
            Topic::Credentials => "stockade_credentials",
            Topic::Fetches => "stockade_fetches",
            Topic::Listings => "stockade_listings",
        }
    }
}

/// Waits for a topic's wake-ups (see the module).
pub struct Wakeups {
    pub(crate) listener: Option<sqlx::postgres::PgListener>,
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups")
            .field("listening", &self.listener.is_some())
            .finish()
    }
}

impl Wakeups {
    /// Return after `period`, or earlier when another process woke this topic.
    pub async fn wait(&mut self, period: Duration) {
        match self.listener.as_mut() {
            Some(l) => {
                if let Ok(Err(_)) = tokio::time::timeout(period, l.recv()).await {
                    // The connection failed (it reconnects on the next call): no busy
                    // loop while the database is down.
                    tokio::time::sleep(period).await;
                }
            }
            None => tokio::time::sleep(period).await,
        }
    }

    /// Take the wake-ups already received without waiting, so that a burst of them costs
    /// one re-read rather than one each (at most 10,000 at a time).
    pub async fn drain(&mut self) {
        if let Some(l) = self.listener.as_mut() {
            for _ in 0..10_000 {
                match tokio::time::timeout(Duration::ZERO, l.recv()).await {
                    Ok(Ok(_)) => {}
                    _ => break,
                }
            }
        }
    }

    /// Whether wake-ups can arrive (PostgreSQL with a working `LISTEN`).
    pub fn listening(&self) -> bool {
        self.listener.is_some()
    }
}
