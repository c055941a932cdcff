//! Reading the database's clock, for the clock shared decisions follow
//! ([`stockade_core::clock`]).
//!
//! On PostgreSQL the database's clock is one for every process sharing it: [`Store::sync_clock`]
//! reads it (`clock_timestamp()`), records it for [`stockade_core::clock::now_ms`] at the
//! middle of the round trip, and returns this host's skew against it. Schedule ticks,
//! job claims and job leases (this crate's [`crate::jobs`], [`crate::schedule`]) then
//! follow it whenever this host's wall clock is off. On SQLite one process uses the
//! database, whose clock is this host's: nothing is read.

use std::time::Instant;

use crate::{Result, Store};

/// The longest round trip a reading of the database's clock may take to be used (its
/// uncertainty is half of it, under the 1 s the shared clock tolerates).
pub const MAX_ROUND_TRIP: std::time::Duration = std::time::Duration::from_millis(500);

const DB_NOW_PG: &str = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

impl Store {
    /// Read the database's clock and record it for [`stockade_core::clock::now_ms`].
    /// Returns this host's wall clock minus the database's (ms; positive: ahead), or
    /// `None` on SQLite (one clock) and when the reading took longer than
    /// [`MAX_ROUND_TRIP`]: a query that waited (a reconnect after a database restart, a
    /// busy pool) says nothing precise about when the database read its clock, and its
    /// wait would be taken for a skew.
    pub async fn sync_clock(&self) -> Result<Option<i64>> {
        if !self.is_postgres() {
            return Ok(None);
        }
        let sent = Instant::now();
        let db: Option<i64> = self.query_one_as(DB_NOW_PG, vec![]).await?;
        let back = Instant::now();
        let wall = stockade_core::time::now_ms();
        let Some(db) = db else { return Ok(None) };
        let round_trip = back.saturating_duration_since(sent);
        if round_trip > MAX_ROUND_TRIP {
            return Ok(None);
        }
        let middle = sent + round_trip / 2;
        stockade_core::clock::record_database_clock(db, middle);
        // The database's clock now: read at the middle, plus half the round trip.
        let half = i64::try_from((round_trip / 2).as_millis()).unwrap_or(0);
        Ok(Some(wall.saturating_sub(db.saturating_add(half))))
    }
}
