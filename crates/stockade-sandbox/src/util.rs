//! Small helpers: query strings, percent-encoding, ISO 8601 times, hashes.

use aws_lc_rs::{digest, hmac};

/// Decode `a=b&c=d` (percent-decoding, `+` as space), keeping order and duplicates.
pub(crate) fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

/// The first value of `key` in decoded query pairs.
pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode an `application/x-www-form-urlencoded` body.
pub(crate) fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    parse_query(&String::from_utf8_lossy(body))
}

pub(crate) fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hex::encode(hmac::sign(&key, msg).as_ref())
}

pub(crate) fn sha256_hex(msg: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, msg).as_ref())
}

/// Constant-time equality of two byte strings.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-01-01T00:00:00.000Z`.
pub(crate) fn iso_ms(ms: i64) -> String {
    stockade_core::time::format_rfc3339_ms(ms)
}

/// RFC 3339 UTC without fractions, e.g. `2026-01-01T00:00:00Z`.
pub(crate) fn iso_s(ms: i64) -> String {
    let s = iso_ms(ms);
    match s.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => s,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parse ISO 8601 `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM]` into Unix milliseconds.
/// A date-time without an offset is read as UTC.
pub(crate) fn parse_iso(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let mut dp = date.split('-');
    let y = num(dp.next()?)?;
    let mo = num(dp.next()?)?;
    let d = num(dp.next()?)?;
    if dp.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || date.len() != 10
    {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
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
    Some(ms - offset_ms)
}

/// The UTC day number of a Unix-milliseconds time.
pub(crate) fn utc_day(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query(
            "a=1&b=x%20y&c=a+b&filter=lastmodifieddate:%5B2026-01-01T00:00:00.000Z..%5D&d",
        );
        assert_eq!(query_get(&q, "b"), Some("x y"));
        assert_eq!(query_get(&q, "c"), Some("a b"));
        assert_eq!(
            query_get(&q, "filter"),
            Some("lastmodifieddate:[2026-01-01T00:00:00.000Z..]")
        );
        assert_eq!(query_get(&q, "d"), Some(""));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_encode("a b/[c]"), "a%20b%2F%5Bc%5D");
    }

    #[test]
    fn iso_round_trip() {
        for ms in [0i64, 1_700_000_000_123, 1_767_225_600_000, 951_782_400_000] {
            assert_eq!(parse_iso(&iso_ms(ms)), Some(ms));
            assert_eq!(parse_iso(&iso_s(ms)), Some(ms - ms % 1000));
        }
        assert_eq!(
            parse_iso("2026-01-01T02:00:00+02:00"),
            parse_iso("2026-01-01T00:00:00Z")
        );
        assert_eq!(parse_iso("2026-01-01"), parse_iso("2026-01-01T00:00:00Z"));
        assert_eq!(parse_iso("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_iso("yesterday"), None);
        for junk in [
            "2026-01-01T00:00:00+aé1",
            "2026-01-01T00:00:00.é",
            "é",
            "2026-01-01Té",
            "2026-01-01T00:00:00+",
        ] {
            let _ = parse_iso(junk);
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = crate::rng::SplitMix64::new(9);
        let alphabet: Vec<char> = "0123456789-:T.Z+%&=é[]{}|,ab".chars().collect();
        for _ in 0..20_000 {
            let len = rng.below(30) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
            let _ = parse_iso(&s);
            let _ = parse_query(&s);
            let _ = percent_decode(&s);
        }
    }

    #[test]
    fn hmac_vector() {
        // The library vector from the reference (TikTok signing).
        assert_eq!(
            hmac_sha256_hex(b"app_secret", b"app_secret/test-apifoobarapp_secret"),
            "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f"
        );
    }
}
