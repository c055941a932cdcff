//! Losing PostgreSQL and getting it back (a restart, a failover, a network cut).
//!
//! - [`unavailable`] tells a lost or refused connection (I/O errors, SQLSTATE class 08,
//!   `57P01`–`57P03` as a restarting server sends them, no pooled connection within the
//!   acquire timeout) from an error of the statement itself. Those become
//!   [`crate::StoreError::Unavailable`]: callers answer "try again later" (webhooks 503,
//!   so the marketplaces deliver again) and background loops wait a round, without a
//!   line of their own.
//! - [`Reachability`] says so in the log: one warning when an operation first fails
//!   that way, a reminder a minute while it lasts, and one line when an operation that
//!   started after the failure succeeds again (with how long and how many failed) —
//!   a few lines per outage, not one per request. The pool reconnects by itself.
//! - The pool hides a short outage: it drops connections whose ping fails and, while
//!   new ones are refused, makes callers wait (up to its acquire timeout) rather than
//!   fail. So an operation still waiting after [`PROBE_AFTER`] makes the store try one
//!   fresh connection of its own ([`Reachability::probe`], at most one a second): if the
//!   server refuses it or does not answer, that is the outage, said as above. Under mere
//!   load the probe connects and nothing is logged.
//! - The same, for monitoring: [`Reachability::reachable`] (down from the first failure
//!   to the first success after it) and [`Reachability::failed_operations`] (operations
//!   failed that way; probes are not counted), on `/metrics`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

/// How often a still-unreachable database is mentioned again.
const REMIND_EVERY: Duration = Duration::from_secs(60);
/// An operation waiting this long makes the store probe the server.
pub(crate) const PROBE_AFTER: Duration = Duration::from_secs(1);
/// How long a probe waits for a new connection, and the least time between two.
const PROBE_WITHIN: Duration = Duration::from_secs(2);
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Why `e` means the connection to the database is lost or refused, if it does.
pub(crate) fn unavailable(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Io(io) => Some(io.to_string()),
        sqlx::Error::Tls(_) => Some("the TLS connection failed".into()),
        sqlx::Error::Protocol(_) => Some("the connection broke mid-message".into()),
        sqlx::Error::PoolTimedOut => {
            Some("no PostgreSQL connection within the pool's timeout".into())
        }
        sqlx::Error::WorkerCrashed => Some("the connection's worker stopped".into()),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            (code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03"))
                .then(|| format!("{} (SQLSTATE {code})", db.message()))
        }
        _ => None,
    }
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    reminded: Instant,
    failed: u64,
}

/// Whether the database was last seen reachable, and the log lines when that changes.
#[derive(Debug, Default)]
pub(crate) struct Reachability {
    down: AtomicBool,
    /// Operations failed because the database was unreachable, since the start.
    failed_ops: AtomicU64,
    outage: Mutex<Option<Outage>>,
    /// When the last probe started.
    probed: Mutex<Option<Instant>>,
}

impl Reachability {
    /// Try one fresh connection (not the pool's) with `opts`; a refusal or no answer
    /// within [`PROBE_WITHIN`] is an outage ([`Self::failed`]). At most one probe a
    /// second; the others return at once.
    pub(crate) async fn probe(&self, opts: &PgConnectOptions) {
        {
            let Ok(mut p) = self.probed.lock() else {
                return;
            };
            let now = Instant::now();
            if p.is_some_and(|t| now.duration_since(t) < PROBE_EVERY) {
                return;
            }
            *p = Some(now);
        }
        match tokio::time::timeout(PROBE_WITHIN, opts.connect()).await {
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
            }
            Ok(Err(e)) => {
                if let Some(reason) = unavailable(&e) {
                    self.went_down(&reason);
                }
            }
            Err(_) => self.went_down("no answer to a new connection within 2 s"),
        }
    }

    /// An operation failed with [`unavailable`] `reason`.
    pub(crate) fn failed(&self, reason: &str) {
        self.failed_ops.fetch_add(1, Ordering::Relaxed);
        self.went_down(reason);
    }

    /// Whether the database was last seen reachable.
    pub(crate) fn reachable(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    /// Operations failed because the database was unreachable, since the start.
    pub(crate) fn failed_operations(&self) -> u64 {
        self.failed_ops.load(Ordering::Relaxed)
    }

    /// The database is unreachable (`reason`): said once, then reminded.
    fn went_down(&self, reason: &str) {
        let Ok(mut o) = self.outage.lock() else {
            return;
        };
        let now = Instant::now();
        match o.as_mut() {
            None => {
                tracing::warn!(
                    "the database is unreachable ({reason}): what needs it fails for now (webhooks answer 503, so the marketplaces deliver again; background work pauses); reconnecting on its own"
                );
                *o = Some(Outage {
                    since: now,
                    reminded: now,
                    failed: 1,
                });
                self.down.store(true, Ordering::Release);
            }
            Some(o) => {
                o.failed += 1;
                if now.duration_since(o.reminded) >= REMIND_EVERY {
                    o.reminded = now;
                    tracing::warn!(
                        "the database is still unreachable after {:.0} s ({reason}); {} operations failed so far",
                        now.duration_since(o.since).as_secs_f64(),
                        o.failed
                    );
                }
            }
        }
    }

    /// An operation that started at `started` succeeded. One that started before the
    /// outage was noticed proves nothing (it may have run on a connection since cut).
    pub(crate) fn succeeded(&self, started: Instant) {
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut o) = self.outage.lock() else {
            return;
        };
        if o.as_ref().is_some_and(|o| started > o.since)
            && let Some(o) = o.take()
        {
            self.down.store(false, Ordering::Release);
            tracing::info!(
                "the database is reachable again after {:.1} s; {} operations failed meanwhile (webhooks refused then are delivered again, background work resumes)",
                o.since.elapsed().as_secs_f64(),
                o.failed
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_are_unavailable_statement_errors_are_not() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(unavailable(&refused).is_some());
        assert!(unavailable(&sqlx::Error::PoolTimedOut).is_some());
        assert!(unavailable(&sqlx::Error::RowNotFound).is_none());
        assert!(unavailable(&sqlx::Error::PoolClosed).is_none());
    }

    #[test]
    fn an_outage_ends_only_with_an_operation_started_after_it() {
        let r = Reachability::default();
        let before = Instant::now();
        r.succeeded(before);
        assert!(r.reachable());
        std::thread::sleep(Duration::from_millis(2));
        r.failed("connection refused");
        r.failed("connection refused");
        assert!(!r.reachable());
        r.succeeded(before);
        assert!(
            !r.reachable(),
            "an operation older than the outage proves nothing"
        );
        r.succeeded(Instant::now());
        assert!(r.reachable());
        // Operations are counted, a failed probe is not.
        r.went_down("no answer to a new connection within 2 s");
        assert!(!r.reachable());
        assert_eq!(r.failed_operations(), 2);
    }
}
