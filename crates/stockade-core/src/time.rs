//! Wall-clock time as Unix milliseconds: its RFC 3339 rendering, the date and duration
//! parsers every crate uses (RFC 3339, ISO 8601, HTTP dates, `90d`-style durations).
//!
//! Stored times are `i64` milliseconds since the Unix epoch (UTC) on both database
//! backends, so the audit hash input is identical everywhere.
//!
//! Invariant: every parser here refuses a date that is not on the calendar
//! (`2026-02-31`, `2026-13-01`, `2025-02-29`) and an hour past 23; the calendar check is
//! the `time` crate's ([`days_from_civil`]). A second of `60` (a leap second) is accepted
//! as it always was. Parsers never panic on input.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now. A clock before 1970 reads as 0.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Render Unix milliseconds as RFC 3339 UTC with millisecond precision,
/// e.g. `2026-11-22T08:01:02.345Z`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Render Unix milliseconds as RFC 3339 UTC without fractions, e.g.
/// `2026-11-22T08:01:02Z`.
pub fn format_rfc3339_s(ms: i64) -> String {
    let s = format_rfc3339_ms(ms);
    match s.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => s,
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm; total
/// over every `i64`, unlike the `time` crate's ±9999-year range).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d is in 1..=31 and m in 1..=12 by construction.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// Days since 1970-01-01 of a calendar date, or None when the date is not on the
/// calendar (month 13, February 30th, February 29th of a common year, year past ±9999).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    let month = ::time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        ::time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
            .ok()?;
    Some(i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
}

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// A run of ASCII digits as a number (no sign, no spaces).
fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Parse an RFC 3339 timestamp (`2026-01-02T03:04:05.678Z`, offsets allowed, fractional
/// seconds optional, `T`, `t` or a space between date and time, no offset read as UTC)
/// to Unix milliseconds. Fractions past milliseconds are truncated.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = digits;
    let year = num(&b[0..4])?;
    let month = num(&b[5..7])?;
    let day = num(&b[8..10])?;
    let hour = num(&b[11..13])?;
    let minute = num(&b[14..16])?;
    let second = num(&b[17..19])?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &b[start..i.min(start + 3)];
        let mut ms = num(frac)?;
        for _ in frac.len()..3 {
            ms *= 10;
        }
        millis = ms;
    }
    let offset_secs = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let oh = num(&b[i + 1..i + 3])?;
            let om = num(&b[i + 4..i + 6])?;
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day)?;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    secs.checked_mul(1000)?.checked_add(millis)
}

/// Parse ISO 8601 `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM|±HHMM|±HH]` into Unix
/// milliseconds: the looser form query filters use. A date-time without an offset is
/// read as UTC; a date alone is its midnight UTC.
pub fn parse_iso8601_ms(s: &str) -> Option<i64> {
    let num = |s: &str| digits(s.as_bytes());
    let s = s.trim();
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let mut dp = date.split('-');
    let y = num(dp.next()?)?;
    let mo = num(dp.next()?)?;
    let d = num(dp.next()?)?;
    if dp.next().is_some() || date.len() != 10 {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d)? * 86_400_000;
    if rest.is_empty() {
        return Some(ms);
    }
    let (time, offset_ms) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let off = &off[1..];
        let (oh, om) = match off.split_once(':') {
            Some((h, m)) => (num(h)?, num(m)?),
            None if off.len() == 4 => (num(off.get(..2)?)?, num(off.get(2..)?)?),
            None => (num(off)?, 0),
        };
        (t, sign * (oh * 3_600_000 + om * 60_000))
    } else {
        (rest, 0)
    };
    let (hms, frac) = match time.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (time, None),
    };
    let mut tp = hms.split(':');
    let h = num(tp.next()?)?;
    let mi = num(tp.next()?)?;
    let sec = match tp.next() {
        Some(x) => num(x)?,
        None => 0,
    };
    if tp.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut frac_ms = 0;
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let padded = format!("{f:0<3}");
        frac_ms = num(&padded[..3])?;
    }
    ms += h * 3_600_000 + mi * 60_000 + sec * 1000 + frac_ms;
    ms.checked_sub(offset_ms)
}

/// Parse an HTTP date in the IMF-fixdate form (`Sun, 06 Nov 1994 08:49:37 GMT`, years
/// 1970–9999; the weekday is not checked) to Unix milliseconds.
pub fn parse_http_date_ms(s: &str) -> Option<i64> {
    let (_, rest) = s.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: i64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let sec: i64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT"
        || parts.next().is_some()
        || !(0..24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..=60).contains(&sec)
        || !(1970..=9999).contains(&year)
    {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(((days * 86_400) + h * 3600 + m * 60 + sec) * 1000)
}

/// A duration that is not one of the forms [`parse_duration_secs`] accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a duration: {0:?}")]
pub struct BadDuration(pub String);

/// Parse `90d`, `12h`, `30m`, `45s`, `2w`, or a plain number of seconds, to seconds
/// (at least 1); `never` and `permanent` are None.
pub fn parse_duration_secs(text: &str) -> Result<Option<i64>, BadDuration> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("never") || t.eq_ignore_ascii_case("permanent") {
        return Ok(None);
    }
    let bad = || BadDuration(text.to_owned());
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(mult).ok_or_else(bad)?;
    if secs <= 0 {
        return Err(bad());
    }
    Ok(Some(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_render_exactly() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_rfc3339_ms(1_795_334_462_345),
            "2026-11-22T08:01:02.345Z"
        );
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn days_from_civil_agrees_with_civil_from_days() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(
                days_from_civil(y, i64::from(m), i64::from(d)),
                Some(days),
                "{days}"
            );
        }
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 2, 29), Some(11_016));
    }

    // Regression: the five hand-written date parsers accepted `2026-02-31` (it
    // silently became 2026-03-03) and month 13 or day 0 where they checked only 1..=31.
    #[test]
    fn dates_off_the_calendar_are_refused() {
        for (y, m, d) in [
            (2026, 2, 31),
            (2026, 2, 29),
            (2026, 4, 31),
            (2026, 13, 1),
            (2026, 0, 1),
            (2026, 1, 0),
            (2026, 1, 32),
            (1900, 2, 29),
            (-1, -1, -1),
            (i64::MAX, 1, 1),
        ] {
            assert_eq!(days_from_civil(y, m, d), None, "{y}-{m}-{d}");
        }
        assert!(days_from_civil(2024, 2, 29).is_some());
        for bad in [
            "2026-02-31T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-04-31T00:00:00.000+02:00",
            "2026-01-01T24:00:00Z",
            "2026-01-01T23:60:00Z",
            "2026-01-01T23:59:61Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "rfc3339 {bad}");
            assert_eq!(parse_iso8601_ms(bad), None, "iso8601 {bad}");
        }
        for bad in ["2026-02-31", "2026-02-30T10:00", "2026-06-31 10:00:00"] {
            assert_eq!(parse_iso8601_ms(bad), None, "iso8601 {bad}");
        }
        for bad in [
            "Tue, 31 Feb 2026 00:00:00 GMT",
            "Sun, 29 Feb 2026 00:00:00 GMT",
            "Thu, 31 Apr 2026 00:00:00 GMT",
            "Thu, 00 Jan 2026 00:00:00 GMT",
            "Thu, 01 Jan 2026 24:00:00 GMT",
        ] {
            assert_eq!(parse_http_date_ms(bad), None, "http {bad}");
        }
        // The same day one step back is still accepted (leap seconds too).
        assert!(parse_rfc3339_ms("2026-02-28T23:59:60Z").is_some());
        assert!(parse_iso8601_ms("2024-02-29").is_some());
        assert!(parse_http_date_ms("Thu, 29 Feb 2024 00:00:00 GMT").is_some());
    }

    #[test]
    fn rfc3339_forms() {
        for ms in [0, 1_795_334_462_345, 951_782_400_000, 1_616_186_639_462] {
            let text = format_rfc3339_ms(ms);
            assert_eq!(parse_rfc3339_ms(&text), Some(ms), "{text}");
            assert_eq!(parse_iso8601_ms(&text), Some(ms), "{text}");
        }
        assert_eq!(format_rfc3339_s(1_795_334_462_345), "2026-11-22T08:01:02Z");
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01 00:00:00.5Z"), Some(500));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.123456Z"), Some(123));
        assert_eq!(parse_rfc3339_ms("1970-01-01"), None);
        assert_eq!(parse_iso8601_ms("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_iso8601_ms("1970-01-01T02:00+0100"), Some(3_600_000));
        assert_eq!(parse_iso8601_ms("1970-01-01T02:00-01"), Some(10_800_000));
        assert_eq!(parse_iso8601_ms("1970-1-01"), None);
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        for bad in [
            "",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT x",
        ] {
            assert_eq!(parse_http_date_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("90d"), Ok(Some(90 * 86_400)));
        assert_eq!(parse_duration_secs(" 2w "), Ok(Some(14 * 86_400)));
        assert_eq!(parse_duration_secs("15m"), Ok(Some(900)));
        assert_eq!(parse_duration_secs("600"), Ok(Some(600)));
        assert_eq!(parse_duration_secs("Never"), Ok(None));
        for bad in ["", "0", "-5m", "5y", "1.5h", "99999999999999999999w", "m"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
    }
}
