//! Literals that look like secrets: known token prefixes, private keys, JWTs, AWS access
//! key ids, and long high-entropy strings.
//!
//! A workflow names credentials (`credential: supplier-hmac`); it never holds one. The
//! check errs towards reporting: a false alarm costs a reviewer a look, a missed key
//! costs a rotation. The reason returned never contains the matched text.

/// Shortest string the entropy check considers.
pub const ENTROPY_MIN_LEN: usize = 32;

const PREFIXES: &[(&str, &str)] = &[
    ("sk_live_", "a Stripe live secret key"),
    ("rk_live_", "a Stripe live restricted key"),
    ("ghp_", "a GitHub personal access token"),
    ("gho_", "a GitHub OAuth token"),
    ("ghs_", "a GitHub app token"),
    ("ghu_", "a GitHub user token"),
    ("github_pat_", "a GitHub fine-grained token"),
    ("xoxb-", "a Slack bot token"),
    ("xoxp-", "a Slack user token"),
    ("xoxa-", "a Slack app token"),
    ("xoxr-", "a Slack refresh token"),
    ("xoxs-", "a Slack session token"),
    ("glpat-", "a GitLab access token"),
    ("AIza", "a Google API key"),
];

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'/' | b'.')
}

/// The runs of token characters in `text`.
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii() || !is_token_byte(c as u8))
        .filter(|t| !t.is_empty())
}

/// Why `text` looks like it holds a secret, or `None`.
pub fn looks_like_secret(text: &str) -> Option<&'static str> {
    if text.contains("-----BEGIN") {
        return Some("a PEM private key or certificate block");
    }
    for token in tokens(text) {
        if let Some(reason) = token_reason(token) {
            return Some(reason);
        }
    }
    None
}

fn token_reason(token: &str) -> Option<&'static str> {
    for (prefix, what) in PREFIXES {
        if token
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.len() >= 8)
        {
            return Some(what);
        }
    }
    if is_aws_key_id(token) {
        return Some("an AWS access key id");
    }
    if is_jwt(token) {
        return Some("a JWT");
    }
    // Dots split host names and versions; a long dotted token is judged per part.
    for part in token.split('.') {
        if high_entropy(part) {
            return Some("a long high-entropy string (a key or token?)");
        }
    }
    None
}

fn is_aws_key_id(t: &str) -> bool {
    ["AKIA", "ASIA"].iter().any(|p| {
        t.strip_prefix(p).is_some_and(|rest| {
            rest.len() == 16
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
    })
}

fn is_jwt(t: &str) -> bool {
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().all(|p| {
            p.len() >= 4
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_uuid(t: &str) -> bool {
    let groups: Vec<usize> = t.split('-').map(str::len).collect();
    groups == [8, 4, 4, 4, 12] && t.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
}

/// Shannon entropy in bits per byte.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn high_entropy(t: &str) -> bool {
    if t.len() < ENTROPY_MIN_LEN || is_uuid(t) {
        return false;
    }
    let has_digit = t.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = t.bytes().any(|b| b.is_ascii_alphabetic());
    if !has_digit || !has_alpha {
        return false;
    }
    let hex = t.bytes().all(|b| b.is_ascii_hexdigit());
    let e = entropy(t);
    if hex { e >= 3.0 } else { e >= 4.2 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_shapes_are_reported() {
        for s in [
            "Bearer sk_live_51HqX2bC3d4e5F6g7H8",
            "ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "xoxb-1234567890-abcdefghij",
            "AKIAIOSFODNN7EXAMPLE",
            "-----BEGIN PRIVATE KEY-----",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWJ5dGVz",
            "token=8f14e45fceea167a5a36dedd4bea2543aab2c3f9d1e0",
            "q8Zr2LmX0vT7pK4nB9wE1yH6cJ3sF5dA",
        ] {
            assert!(looks_like_secret(s).is_some(), "{s}");
        }
    }

    #[test]
    fn ordinary_values_are_not() {
        for s in [
            "Low stock on {{ item.sku }}: {{ item.available }} left",
            "https://api.supplier.example.com/v2/stock-levels/warehouse-singapore",
            "order-created-audit-note-and-alert-workflow",
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "sk_live_",
            "{{ steps.fetch.output.orders | length > 0 }}",
            "supplier-hmac",
        ] {
            assert_eq!(looks_like_secret(s), None, "{s}");
        }
    }
}
