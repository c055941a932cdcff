//! Small helpers: percent-encoding, RFC 3339 parsing, query strings.

/// Percent-encode a query or path component (RFC 3986: everything except the unreserved
/// characters `A-Z a-z 0-9 - _ . ~` becomes `%XX`).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0f));
        }
    }
    out
}

fn hex_digit(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 })
}

/// Decode `%XX` escapes and `+` (as a space) in a query component. Invalid escapes are
/// kept as they are.
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hi = char::from(bytes[i + 1]).to_digit(16);
                let lo = char::from(bytes[i + 2]).to_digit(16);
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Build `base + path + ?k=v&…` with every key and value percent-encoded.
pub fn url_with_query(base: &str, path: &str, query: &[(&str, &str)]) -> String {
    let mut url = String::with_capacity(base.len() + path.len() + 64);
    url.push_str(base.trim_end_matches('/'));
    url.push_str(path);
    for (i, (k, v)) in query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&percent_encode(k));
        url.push('=');
        url.push_str(&percent_encode(v));
    }
    url
}

/// The value of one query parameter in a `path?query` string, decoded.
pub fn query_param(path_and_query: &str, name: &str) -> Option<String> {
    let (_, query) = path_and_query.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// The host (and `:port` if given) of an `https://host[:port]/…` URL, lowercased.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Parse an RFC 3339 / ISO 8601 timestamp (`2026-01-02T03:04:05.678Z`, offsets allowed,
/// fractional seconds optional) to Unix milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |s: &[u8]| -> Option<i64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let year = num(&b[0..4])?;
    let month = num(&b[5..7])?;
    let day = num(&b[8..10])?;
    let hour = num(&b[11..13])?;
    let minute = num(&b[14..16])?;
    let second = num(&b[17..19])?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
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
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    secs.checked_mul(1000)?.checked_add(millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Compare two byte strings in constant time (for shared secrets and signatures).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_core_formatting() {
        for ms in [0, 1_795_334_462_345, 951_782_400_000, 1_616_186_639_462] {
            let text = stockade_core::time::format_rfc3339_ms(ms);
            assert_eq!(parse_rfc3339_ms(&text), Some(ms), "{text}");
        }
        assert_eq!(
            parse_rfc3339_ms("2021-03-19T20:43:59.462Z"),
            Some(1_616_186_639_462)
        );
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.5Z"), Some(500));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00"), Some(0));
        for bad in [
            "",
            "2021-13-01T00:00:00Z",
            "x",
            "2021-01-01T00:00:00.Z",
            "2021-01-01T00:00:00Q",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn percent_coding() {
        assert_eq!(percent_encode("a b/[c]~"), "a%20b%2F%5Bc%5D~");
        assert_eq!(percent_decode("a%20b%2F%5Bc%5D~+x%zz%"), "a b/[c]~ x%zz%");
        assert_eq!(
            query_param("/hook?challenge_code=a%2Db&x=1", "challenge_code"),
            Some("a-b".into())
        );
        assert_eq!(query_param("/hook", "x"), None);
        assert_eq!(
            host_of("https://Api.Example.com:8443/x?y"),
            Some("api.example.com:8443".into())
        );
    }
}
