//! The clock watch: every second, read the database's clock (PostgreSQL) for the clock
//! the processes share ([`stockade_core::clock`]) and say, in one log line per change,
//! when this host's wall clock jumped or disagrees with the database's, and what
//! Stockade does about it (schedules, job claims and leases follow the database's clock
//! meanwhile). Never a line per check: a clock that stays off is reported once.

use std::time::{Duration, Instant};

use stockade_core::clock::ClockWatch;
use stockade_store::Store;
use tokio::task::JoinHandle;

/// How often the clocks are compared.
const EVERY: Duration = Duration::from_secs(1);

/// Start the watch; abort the handle to stop it.
pub(crate) fn start(store: Store) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut watch = ClockWatch::new();
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // An unreachable database: no observation (the next one spans the gap).
            let skew = match store.sync_clock().await {
                // A reading too slow to be precise (the database was away or busy): none.
                Ok(None) if store.is_postgres() => continue,
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("clock: cannot read the database's clock: {e}");
                    continue;
                }
            };
            let wall = stockade_core::time::now_ms();
            if let Some(note) = watch.observe(Instant::now(), wall, skew) {
                if note.is_warning() {
                    tracing::warn!("{note}");
                } else {
                    tracing::info!("{note}");
                }
            }
        }
    })
}
