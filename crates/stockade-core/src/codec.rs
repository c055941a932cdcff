//! URL component percent-encoding and IP networks, written once for every crate.
//!
//! Percent-encoding is RFC 3986's: everything but the unreserved characters
//! `A-Z a-z 0-9 - _ . ~` becomes `%XX` (upper-case hex), which is also what the
//! marketplaces' and chat platforms' signature recipes expect; form bodies use the
//! WHATWG form encoding ([`form_encode`]). Decoding reads a query or
//! form component: `+` is a space, invalid escapes stay as they are, invalid UTF-8 becomes
//! U+FFFD. IP networks are [`ipnet::IpNet`]; [`parse_ip_net`] also reads a bare address
//! as its one-address network. Nothing here panics on input.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// What RFC 3986 leaves unencoded: the unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The unreserved characters and `@` (otpauth labels keep the address readable).
const UNRESERVED_AND_AT: &AsciiSet = &UNRESERVED.remove(b'@');

/// Percent-encode a query or path component: everything but `A-Z a-z 0-9 - _ . ~`
/// becomes `%XX`.
pub fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, UNRESERVED).to_string()
}

/// [`percent_encode`], but `@` stays as it is (an `otpauth://` label).
pub fn percent_encode_keep_at(value: &str) -> String {
    utf8_percent_encode(value, UNRESERVED_AND_AT).to_string()
}

/// Decode `%XX` escapes and `+` (as a space) in a query or form component. Invalid
/// escapes are kept as they are.
pub fn percent_decode(value: &str) -> String {
    let spaced = value.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// An `application/x-www-form-urlencoded` body (WHATWG URL standard: space is `+`,
/// `* - . _` and alphanumerics stay, everything else is `%XX`).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// An address (`::1`, `10.1.2.3`) or CIDR range (`10.0.0.0/8`, `127.0.0.1/8`, host bits
/// allowed), surrounding spaces ignored; None for anything else.
pub fn parse_ip_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if text.contains('/') {
        text.parse().ok()
    } else {
        text.parse::<std::net::IpAddr>().ok().map(IpNet::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_coding() {
        assert_eq!(
            percent_encode("a b/[c]~-_.é+="),
            "a%20b%2F%5Bc%5D~-_.%C3%A9%2B%3D"
        );
        assert_eq!(
            percent_encode_keep_at("Stockade:a@b.c d"),
            "Stockade%3Aa@b.c%20d"
        );
        assert_eq!(percent_decode("a%20b%2F%5Bc%5D~+x%zz%"), "a b/[c]~ x%zz%");
        assert_eq!(percent_decode("%2B+%C3%A9%4"), "+ é%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        for s in ["", "a b+c/d?e=f&g", "ünï 😀 %41"] {
            assert_eq!(percent_decode(&percent_encode(s)), s);
        }
    }

    #[test]
    fn form_bodies() {
        assert_eq!(
            form_encode(&[("grant_type", "refresh_token"), ("a b", "x*y+z/é~")]),
            "grant_type=refresh_token&a+b=x*y%2Bz%2F%C3%A9%7E"
        );
        assert_eq!(form_encode(&[]), "");
    }

    #[test]
    fn ip_networks() {
        let net = parse_ip_net(" 127.0.0.1/8 ").unwrap();
        assert!(net.contains(&"127.9.9.9".parse::<std::net::IpAddr>().unwrap()));
        assert!(!net.contains(&"128.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(!net.contains(&"::1".parse::<std::net::IpAddr>().unwrap()));
        let one = parse_ip_net("::1").unwrap();
        assert!(one.contains(&"::1".parse::<std::net::IpAddr>().unwrap()));
        assert!(!one.contains(&"::2".parse::<std::net::IpAddr>().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x",
            "10.0.0.1/",
            "/8",
        ] {
            assert_eq!(parse_ip_net(bad), None, "{bad}");
        }
    }
}
