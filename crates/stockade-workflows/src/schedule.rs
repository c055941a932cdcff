//! Schedules: a cron pattern read in an IANA time zone (croner, chrono-tz).
//!
//! Patterns have five fields (minute hour day-of-month month day-of-week) or six with
//! seconds first; `L`, `W` and `#` are supported; day-of-month and day-of-week combine
//! as in Vixie cron (either matches when both are restricted). A pattern is refused when
//! it does not parse, when its zone is not an IANA name, or when it never fires (such as
//! `0 0 31 2 *`). Daylight saving follows croner: a time skipped by a spring-forward gap
//! runs once when the gap ends (02:30 on a 02:00 → 03:00 night runs at 03:00), a repeated
//! time runs once (at its first occurrence).

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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn ticks_are_read_in_the_zone() {
        let now = utc(2026, 12, 6, 0, 0);
        let s = CronSchedule::parse("0 9 * * *", Some("Asia/Shanghai"), now).unwrap();
        // 09:00 in Shanghai is 01:00 UTC.
        assert_eq!(s.next_after(now), Some(utc(2026, 12, 6, 1, 0)));
    }

    #[test]
    fn daylight_saving_in_a_us_zone() {
        let now = utc(2026, 3, 7, 12, 0);
        // 02:30 does not exist in New York on 2026-03-08 (clocks go 02:00 → 03:00): the
        // tick runs once, when the gap ends (03:00 EDT), and the next day as usual.
        let s = CronSchedule::parse("30 2 * * *", Some("America/New_York"), now).unwrap();
        let first = s.next_after(now).unwrap();
        assert_eq!(first, utc(2026, 3, 8, 7, 0));
        let second = s.next_after(first).unwrap();
        assert_eq!(second, utc(2026, 3, 9, 6, 30));
        // 01:30 happens twice on 2026-11-01 (fall back): it runs once.
        let now = utc(2026, 10, 31, 12, 0);
        let s = CronSchedule::parse("30 1 * * *", Some("America/New_York"), now).unwrap();
        let first = s.next_after(now).unwrap();
        assert_eq!(first, utc(2026, 11, 1, 5, 30));
        assert_eq!(s.next_after(first), Some(utc(2026, 11, 2, 6, 30)));
    }

    #[test]
    fn never_and_nonsense_are_refused() {
        let now = utc(2026, 12, 6, 0, 0);
        assert!(matches!(
            CronSchedule::parse("0 0 31 2 *", None, now),
            Err(ScheduleError::Never(_))
        ));
        assert!(matches!(
            CronSchedule::parse("0 0 * * *", Some("Europe/Nowhere"), now),
            Err(ScheduleError::Zone(_))
        ));
        assert!(matches!(
            CronSchedule::parse("every day", None, now),
            Err(ScheduleError::Pattern(..))
        ));
    }
}
