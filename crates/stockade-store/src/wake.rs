//! Wake-ups between processes sharing one database. After a change the others must see
//! soon (incident controls, bans), the writer calls [`crate::Store::wake`]; a process
//! waiting in [`Wakeups::wait`] for that topic returns early and re-reads.
//!
//! On PostgreSQL this is `NOTIFY` / `LISTEN`: one connection of its own per store (not
//! one of the pool's, [`Hub`]) listens on every topic's channel and wakes that topic's
//! waiters. One listening session per process rather than one per waiter matters beyond
//! the connection count: PostgreSQL signals every listening session of the database on
//! every NOTIFY, whatever its channel. On SQLite nothing is sent and waiting is a plain
//! sleep. A waiter still re-reads after every period: a notification only shortens the
//! wait, so a lost one, a reconnect, or PgBouncer in transaction mode (where `LISTEN`
//! receives nothing) costs at most one period. Payloads are empty: the topic says what to
//! re-read.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

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

/// Every topic, in [`Topic::index`] order.
const TOPICS: [Topic; 6] = [
    Topic::Controls,
    Topic::Bans,
    Topic::Connections,
    Topic::Credentials,
    Topic::Fetches,
    Topic::Listings,
];

impl Topic {
    fn index(self) -> usize {
        TOPICS.iter().position(|t| *t == self).unwrap_or(0)
    }

    fn of_channel(channel: &str) -> Option<Topic> {
        TOPICS.into_iter().find(|t| t.channel() == channel)
    }

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

/// A store's one listening session (PostgreSQL): every topic's channel, each wake-up
/// passed to that topic's waiters as a new count. It stops (closing its connection) when
/// the store is dropped.
pub(crate) struct Hub {
    topics: Arc<[watch::Sender<u64>; TOPICS.len()]>,
    task: tokio::task::AbortHandle,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hub {
    /// Pass `listener`'s notifications (already listening on every topic's channel) on.
    pub(crate) fn start(mut listener: sqlx::postgres::PgListener) -> Hub {
        let topics: Arc<[watch::Sender<u64>; TOPICS.len()]> =
            Arc::new(std::array::from_fn(|_| watch::channel(0).0));
        let senders = topics.clone();
        let task = tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        if let Some(t) = Topic::of_channel(n.channel()) {
                            senders[t.index()].send_modify(|c| *c = c.wrapping_add(1));
                        }
                    }
                    Err(e) => {
                        // It reconnects and listens again on the next call; meanwhile
                        // the waiters' periodic reads hold. No busy loop while the
                        // database is down.
                        tracing::debug!("the LISTEN connection failed ({e}); reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
        .abort_handle();
        Hub { topics, task }
    }

    /// The channels to listen on.
    pub(crate) fn channels() -> impl Iterator<Item = &'static str> {
        TOPICS.into_iter().map(Topic::channel)
    }

    pub(crate) fn wakeups(&self, topic: Topic) -> Wakeups {
        Wakeups {
            rx: Some(self.topics[topic.index()].subscribe()),
        }
    }
}

/// Waits for a topic's wake-ups (see the module).
#[derive(Debug)]
pub struct Wakeups {
    pub(crate) rx: Option<watch::Receiver<u64>>,
}

impl Wakeups {
    /// Return after `period`, or earlier when another process woke this topic since the
    /// last wait or [`Wakeups::drain`].
    pub async fn wait(&mut self, period: Duration) {
        match self.rx.as_mut() {
            Some(rx) => {
                if let Ok(Err(_)) = tokio::time::timeout(period, rx.changed()).await {
                    // The store is closing: no busy loop.
                    tokio::time::sleep(period).await;
                }
            }
            None => tokio::time::sleep(period).await,
        }
    }

    /// Take the wake-ups already received without waiting, so that a burst of them costs
    /// one re-read rather than one each.
    pub async fn drain(&mut self) {
        if let Some(rx) = self.rx.as_mut() {
            rx.borrow_and_update();
        }
    }

    /// Whether wake-ups can arrive (PostgreSQL with a working `LISTEN`).
    pub fn listening(&self) -> bool {
        self.rx.is_some()
    }
}
