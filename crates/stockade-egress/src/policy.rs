//! Where a request may go: the URL is parsed once, the scheme must be `https`, and the
//! host and port must match the environment's allowlist and the caller's.

use std::net::IpAddr;

use crate::EgressError;

/// A parsed request target.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub url: reqwest::Url,
    /// Lower-case host as it appears in the URL (IPv6 in brackets).
    pub host: String,
    pub port: u16,
    /// `host` for port 443, `host:port` otherwise: the key for buckets, breakers and logs.
    pub key: String,
}

/// Why a URL cannot be used, with the host when one is known (for the log).
#[derive(Debug)]
pub(crate) enum Refusal {
    Invalid,
    NotHttps { key: String },
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, Refusal> {
        let url = reqwest::Url::parse(text).map_err(|_| Refusal::Invalid)?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(Refusal::Invalid)?
            .to_ascii_lowercase();
        let port = url.port_or_known_default().ok_or(Refusal::Invalid)?;
        let key = if port == 443 {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        if url.scheme() != "https" {
            return Err(Refusal::NotHttps { key });
        }
        // Credentials in a URL would travel (and could be logged) outside our control.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Invalid);
        }
        Ok(Target {
            url,
            host,
            port,
            key,
        })
    }
}

/// Whether any pattern in `list` allows `host:port`. Patterns are `host` (port 443),
/// `host:port`, or `*.suffix[:port]` (any subdomain of `suffix`, not `suffix` itself).
pub(crate) fn allowed<S: AsRef<str>>(list: &[S], host: &str, port: u16) -> bool {
    list.iter().any(|p| matches(p.as_ref(), host, port))
}

fn matches(pattern: &str, host: &str, port: u16) -> bool {
    let pattern = pattern.trim();
    let (h, p) = match pattern.rsplit_once(':') {
        Some((h, p))
            if !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']')) =>
        {
            match p.parse::<u16>() {
                Ok(p) => (h, p),
                Err(_) => return false,
            }
        }
        _ => (pattern, 443),
    };
    if p != port || h.is_empty() {
        return false;
    }
    match h.strip_prefix("*.") {
        Some(suffix) => {
            if suffix.is_empty() || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
                return false;
            }
            host.len() > suffix.len() + 1
                && host
                    .get(host.len() - suffix.len()..)
                    .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
                && host.as_bytes().get(host.len() - suffix.len() - 1) == Some(&b'.')
        }
        None => h.eq_ignore_ascii_case(host),
    }
}

impl Refusal {
    pub fn into_error(self) -> EgressError {
        match self {
            Refusal::Invalid => EgressError::InvalidUrl,
            Refusal::NotHttps { .. } => EgressError::NotHttps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("api.ebay.com", "api.ebay.com", 443));
        assert!(!matches("api.ebay.com", "api.ebay.com", 8443));
        assert!(matches("api.ebay.com:8443", "api.ebay.com", 8443));
        assert!(!matches("api.ebay.com:8443", "api.ebay.com", 443));
        assert!(matches(
            "*.amazon.com",
            "sellingpartnerapi-na.amazon.com",
            443
        ));
        assert!(matches("*.amazon.com", "a.b.amazon.com", 443));
        assert!(!matches("*.amazon.com", "amazon.com", 443));
        assert!(!matches("*.amazon.com", "evilamazon.com", 443));
        assert!(!matches("*.amazon.com", "amazon.com.evil.net", 443));
        assert!(matches("127.0.0.1:9000", "127.0.0.1", 9000));
        assert!(!matches("*.0.0.1", "127.0.0.1", 443));
        assert!(matches("[::1]:9000", "[::1]", 9000));
        assert!(!matches("", "x", 443));
        assert!(!matches("x:99999", "x", 443));
        assert!(allowed(&["a.com", "b.com:444"], "b.com", 444));
        assert!(!allowed::<&str>(&[], "b.com", 443));
    }

    #[test]
    fn targets() {
        let t = Target::parse("https://API.example.com/x?token=1").unwrap_or_else(|_| panic!());
        assert_eq!(
            (t.host.as_str(), t.port, t.key.as_str()),
            ("api.example.com", 443, "api.example.com")
        );
        let t = Target::parse("https://127.0.0.1:8443/").unwrap_or_else(|_| panic!());
        assert_eq!(t.key, "127.0.0.1:8443");
        assert!(matches!(
            Target::parse("http://a.com/"),
            Err(Refusal::NotHttps { .. })
        ));
        assert!(matches!(
            Target::parse("https://u:p@a.com/"),
            Err(Refusal::Invalid)
        ));
        assert!(matches!(Target::parse("not a url"), Err(Refusal::Invalid)));
    }
}
