//! Schedules: a cron pattern read in an IANA time zone (croner, chrono-tz).
//!
//! Patterns have five fields (minute hour day-of-month month day-of-week) or six with
//! seconds first; `L`, `W` and `#` are supported; day-of-month and day-of-week combine
//! as in Vixie cron (either matches when both are restricted). A pattern is refused when
//! it does not parse, when its zone is not an IANA name, or when it never fires (such as
//! `0 0 31 2 *`). Daylight saving follows croner: a time skipped by a spring-forward gap
//! runs once at the shifted instant, a repeated time runs once.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

/// Why a schedule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("`{0}` is not a cron pattern: {1}")]
    Pattern(String, String),
    #[error("`{0}` is not an IANA time zone (like Asia/Shanghai, America/New_York or UTC)")]
    Zone(String),
    #[error("`{0}` never fires")]
    Never(String),
}

/// Parse a time zone name (case-sensitive IANA names, `UTC` included).
pub fn zone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError::Zone(name.chars().take(64).collect()))
}

impl CronSchedule {
    /// Parse a pattern in a zone (UTC when `None`); `now` is where "never fires" is
    /// checked from.
    pub fn parse(
        pattern: &str,
        tz: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, ScheduleError> {
        let tz = match tz {
            Some(name) => zone(name)?,
            None => Tz::UTC,
        };
        let cron = Cron::from_str(pattern)
            .map_err(|e| ScheduleError::Pattern(pattern.to_owned(), e.to_string()))?;
        let s = CronSchedule { cron, tz };
        if s.next_after(now).is_none() {
            return Err(ScheduleError::Never(pattern.to_owned()));
        }
        Ok(s)
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }
}
