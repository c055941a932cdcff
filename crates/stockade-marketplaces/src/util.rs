//! Small helpers: query strings, URL hosts, constant-time comparison. Percent-encoding
//! and RFC 3339 parsing are stockade-core's, re-exported here for the adapters.

pub use stockade_core::codec::{percent_decode, percent_encode};
pub use stockade_core::time::parse_rfc3339_ms;

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
            // Regression: off-calendar dates were accepted (and rolled over).
            "2026-02-31T00:00:00Z",
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
