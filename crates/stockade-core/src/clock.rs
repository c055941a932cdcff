//! The clock that decisions shared between processes follow, and the watch that notices
//! when this host's wall clock jumps or disagrees with the database's.
//!
//! Several processes on one PostgreSQL decide together when a schedule tick is due, when
//! a job may be claimed and when a worker's job lease has expired. Those decisions must
//! read one clock, or a host whose clock was stepped (by NTP, by hand, a VM resumed)
//! fires a schedule's ticks an hour early, or re-queues jobs other processes are still
//! running. The one clock is the database's:
//!
//! - [`now_ms`] is this host's wall clock while it agrees with the database's clock to
//!   within [`TOLERANCE_MS`] (so a host in step behaves exactly as with the wall clock);
//!   when it does not, it is the database's clock as last read ([`record_database_clock`])
//!   advanced by the **monotonic** clock since, which a step of the wall clock does not
//!   move. The switch happens at the first reading after a jump, not at the next sync.
//! - Without a reading (SQLite: one process, whose database clock *is* this host's; or a
//!   command that has not read it) [`now_ms`] is the wall clock.
//! - Local waits (timers, countdowns, rate buckets) use the monotonic clock and need
//!   neither.
//!
//! [`ClockWatch`] turns periodic observations (wall clock, monotonic clock, skew against
//! the database) into at most one [`ClockNote`] per change — a jump, a skew that
//! appeared, the clocks agreeing again — for one log line each, never a line per check.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

/// Within this, the wall clock counts as agreeing with the database's: [`now_ms`] is the
/// wall clock.
pub const TOLERANCE_MS: i64 = 1_000;
/// A jump of the wall clock, or a skew against the database, beyond this is reported.
pub const REPORT_MS: i64 = 2_000;

/// No reading of the database's clock yet.
const NONE: i64 = i64::MIN;

/// The database's clock minus the monotonic milliseconds since [`base`], at the last
/// reading ([`NONE`] before one).
static DB_OFFSET: AtomicI64 = AtomicI64::new(NONE);

/// The monotonic origin the offset is counted from.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn mono_ms(at: Instant) -> i64 {
    i64::try_from(at.saturating_duration_since(base()).as_millis()).unwrap_or(i64::MAX)
}

/// The database's clock read as `db_ms` (ms since the epoch) at monotonic instant `at`
/// (the middle of the round trip).
pub fn record_database_clock(db_ms: i64, at: Instant) {
    DB_OFFSET.store(db_ms.saturating_sub(mono_ms(at)), Ordering::Relaxed);
}

/// Forget the database's clock: [`now_ms`] is the wall clock again.
pub fn forget_database_clock() {
    DB_OFFSET.store(NONE, Ordering::Relaxed);
}

/// The database's clock now, as last read and advanced by the monotonic clock; `None`
/// without a reading.
pub fn database_ms() -> Option<i64> {
    let offset = DB_OFFSET.load(Ordering::Relaxed);
    (offset != NONE).then(|| offset.saturating_add(mono_ms(Instant::now())))
}

/// This host's wall clock minus the database's (ms; positive: ahead); `None` without a
/// reading.
pub fn skew_ms() -> Option<i64> {
    database_ms().map(|db| crate::time::now_ms().saturating_sub(db))
}

/// Milliseconds since the epoch on the clock shared by the processes of one database:
/// the wall clock while it agrees with the database's, else the database's (see the
/// module).
pub fn now_ms() -> i64 {
    let wall = crate::time::now_ms();
    match database_ms() {
        Some(db) if wall.saturating_sub(db).abs() > TOLERANCE_MS => db,
        _ => wall,
    }
}

/// What changed about the clocks since the last observation, for one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockNote {
    /// The wall clock moved `by_ms` more than the monotonic clock (`mono_ms`) did; `skew_ms`
    /// is its distance from the database's clock afterwards (`None`: not read).
    Jumped {
        by_ms: i64,
        mono_ms: i64,
        skew_ms: Option<i64>,
    },
    /// The wall clock is `skew_ms` away from the database's (no jump seen here: it
    /// started so, or drifted).
    Skewed { skew_ms: i64 },
    /// The wall clock agrees with the database's again.
    InStep,
}

impl ClockNote {
    /// A warning (a jump or a skew), or good news.
    pub fn is_warning(&self) -> bool {
        !matches!(self, ClockNote::InStep)
    }
}

fn secs(ms: i64) -> i64 {
    (ms.abs() + 500) / 1000
}

fn skew_words(skew_ms: i64) -> String {
    let side = if skew_ms > 0 { "ahead of" } else { "behind" };
    format!("{} s {side} the database's clock", secs(skew_ms))
}

const FOLLOWS: &str = "schedule ticks, job claims and job leases follow the database's clock while they disagree, so nothing runs twice or early";
const FIX: &str = "keep this host's time in sync (NTP, chrony)";

impl fmt::Display for ClockNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockNote::Jumped {
                by_ms,
                mono_ms,
                skew_ms,
            } => {
                let way = if *by_ms > 0 { "forward" } else { "back" };
                write!(
                    f,
                    "clock: this host's wall clock jumped {way} by {} s (the monotonic clock ran {} s meanwhile)",
                    secs(*by_ms),
                    secs(*mono_ms)
                )?;
                match skew_ms {
                    Some(s) if s.abs() > TOLERANCE_MS => {
                        write!(f, " and is now {}: {FOLLOWS}; {FIX}", skew_words(*s))
                    }
                    Some(_) => write!(
                        f,
                        " and agrees with the database's clock again: decisions follow it as before; {FIX}"
                    ),
                    None => write!(
                        f,
                        ": with SQLite this host's clock is the database's, so schedules follow the new time (ticks passed over count as missed); {FIX}"
                    ),
                }
            }
            ClockNote::Skewed { skew_ms } => write!(
                f,
                "clock: this host's wall clock is {}: {FOLLOWS}; {FIX}",
                skew_words(*skew_ms)
            ),
            ClockNote::InStep => write!(
                f,
                "clock: this host's wall clock agrees with the database's clock again (within {} s)",
                TOLERANCE_MS / 1000
            ),
        }
    }
}

/// Watches the clocks from periodic observations (see the module).
#[derive(Debug, Default)]
pub struct ClockWatch {
    /// The previous observation: monotonic instant and wall clock.
    last: Option<(Instant, i64)>,
    /// A skew was reported and has not gone yet.
    skewed: bool,
}

impl ClockWatch {
    pub fn new() -> Self {
        ClockWatch::default()
    }

    /// One observation: the wall clock `wall_ms` at monotonic instant `at`, and the skew
    /// against the database's clock if it was read. At most one note: a jump beyond
    /// [`REPORT_MS`] (with the skew after it), else a skew beyond [`REPORT_MS`] not yet
    /// reported, else the clocks agreeing again (within [`TOLERANCE_MS`]) after a skew.
    pub fn observe(
        &mut self,
        at: Instant,
        wall_ms: i64,
        skew_ms: Option<i64>,
    ) -> Option<ClockNote> {
        let jump = self.last.map(|(was_at, was_wall)| {
            let mono =
                i64::try_from(at.saturating_duration_since(was_at).as_millis()).unwrap_or(i64::MAX);
            (wall_ms.saturating_sub(was_wall).saturating_sub(mono), mono)
        });
        self.last = Some((at, wall_ms));
        let was_skewed = self.skewed;
        match skew_ms {
            Some(s) if s.abs() > REPORT_MS => self.skewed = true,
            Some(s) if s.abs() <= TOLERANCE_MS => self.skewed = false,
            // Between the two: no change (no note flapping around one threshold).
            Some(_) => {}
            None => self.skewed = false,
        }
        if let Some((by_ms, mono_ms)) = jump
            && by_ms.abs() > REPORT_MS
        {
            return Some(ClockNote::Jumped {
                by_ms,
                mono_ms,
                skew_ms,
            });
        }
        match (was_skewed, self.skewed, skew_ms) {
            (false, true, Some(s)) => Some(ClockNote::Skewed { skew_ms: s }),
            (true, false, Some(_)) => Some(ClockNote::InStep),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_watch_reports_each_change_once() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let wall0 = 1_800_000_000_000;
        let mut w = ClockWatch::new();
        assert_eq!(w.observe(at(0), wall0, Some(10)), None);
        assert_eq!(w.observe(at(1), wall0 + 1_000, Some(-20)), None);
        // Stepped forward one hour: one note, then quiet while it stays so.
        let note = w.observe(at(2), wall0 + 3_602_000, Some(3_600_000));
        assert_eq!(
            note,
            Some(ClockNote::Jumped {
                by_ms: 3_600_000,
                mono_ms: 1_000,
                skew_ms: Some(3_600_000)
            })
        );
        let text = note.unwrap().to_string();
        assert!(text.contains("jumped forward by 3600 s"), "{text}");
        assert!(
            text.contains("3600 s ahead of the database's clock"),
            "{text}"
        );
        for s in 3..30 {
            let wall = wall0 + 3_600_000 + i64::try_from(s).unwrap() * 1000;
            assert_eq!(w.observe(at(s), wall, Some(3_600_000)), None);
        }
        // Back: one note saying it agrees again.
        let note = w.observe(at(31), wall0 + 31_000, Some(5)).unwrap();
        assert!(note.to_string().contains("jumped back by 3600 s"), "{note}");
        assert!(
            note.to_string().contains("agrees with the database"),
            "{note}"
        );
        assert_eq!(w.observe(at(32), wall0 + 32_000, Some(5)), None);
        // A skew without a jump (the database's clock moved, or drift) is reported once,
        // and its end once; hovering between the thresholds says nothing.
        assert_eq!(
            w.observe(at(33), wall0 + 33_000, Some(-5_000)),
            Some(ClockNote::Skewed { skew_ms: -5_000 })
        );
        assert!(
            ClockNote::Skewed { skew_ms: -5_000 }
                .to_string()
                .contains("5 s behind")
        );
        assert_eq!(w.observe(at(34), wall0 + 34_000, Some(-1_500)), None);
        assert_eq!(w.observe(at(35), wall0 + 35_000, Some(-2_500)), None);
        assert_eq!(
            w.observe(at(36), wall0 + 36_000, Some(0)),
            Some(ClockNote::InStep)
        );
        // SQLite: no database reading, a jump is still reported.
        let note = w.observe(at(37), wall0 + 37_000 - 600_000, None).unwrap();
        assert!(note.to_string().contains("jumped back by 600 s"), "{note}");
        assert!(note.to_string().contains("SQLite"), "{note}");
    }

    #[test]
    fn the_shared_clock_follows_the_database_only_when_the_wall_clock_is_off() {
        // One test touches the process-wide reading (tests run in threads).
        let wall = crate::time::now_ms();
        record_database_clock(wall + 200, Instant::now());
        let n = now_ms();
        assert!(
            (n - crate::time::now_ms()).abs() < 100,
            "in step: the wall clock"
        );
        record_database_clock(wall - 3_600_000, Instant::now());
        let n = now_ms();
        assert!(
            (n - (wall - 3_600_000)).abs() < 1_000,
            "skewed: the database's"
        );
        assert!(skew_ms().unwrap() > 3_599_000);
        forget_database_clock();
        assert_eq!(database_ms(), None);
        assert!((now_ms() - crate::time::now_ms()).abs() < 100);
    }
}
