//! Small helpers: query strings, hashes, and the simulators' names for stockade-core's
//! percent-encoding and ISO 8601 codecs.

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

pub(crate) use stockade_core::codec::{percent_decode, percent_encode};

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
    stockade_core::time::format_rfc3339_s(ms)
}

/// ISO 8601 `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM]` to Unix milliseconds (UTC when no
/// offset is given); off-calendar dates are refused.
pub(crate) use stockade_core::time::parse_iso8601_ms as parse_iso;

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
        // Regression: an off-calendar date was accepted (and rolled over).
        assert_eq!(parse_iso("2026-02-31"), None);
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
