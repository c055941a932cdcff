//! Request signing for each channel type, exactly as the platforms specify
//! (`reference/security-specs.md` §1.2, §2.2). The two chat schemes differ and are
//! easily confused:
//!
//! | | DingTalk custom robot | Feishu / Lark custom bot |
//! |---|---|---|
//! | timestamp | milliseconds | seconds |
//! | HMAC key | the secret | `timestamp + "\n" + secret` |
//! | HMAC message | `timestamp + "\n" + secret` | empty |
//! | where | URL query, base64 then URL-encoded | JSON fields `timestamp`, `sign`, plain base64 |
//!
//! The generic webhook is our own scheme: `X-Stockade-Signature: sha256=<hex>` over
//! `timestamp + "." + body`, keyed with the channel's secret (documented in
//! docs/alerts.md so receivers can verify it).

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// DingTalk: base64(HMAC-SHA256(key = secret, msg = `ts_ms + "\n" + secret`)), not yet
/// URL-encoded (see [`dingtalk_query`]).
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let message = format!("{timestamp_ms}\n{secret}");
    B64.encode(hmac::sign(&key, message.as_bytes()).as_ref())
}

/// The query string a signed DingTalk robot call carries: `access_token`, `timestamp`
/// and the URL-encoded `sign` (encoded exactly once).
pub fn dingtalk_query(access_token: &str, secret: Option<&str>, timestamp_ms: i64) -> String {
    let mut q = format!("access_token={}", url_encode(access_token));
    if let Some(secret) = secret {
        q.push_str(&format!(
            "&timestamp={timestamp_ms}&sign={}",
            url_encode(&dingtalk_sign(secret, timestamp_ms))
        ));
    }
    q
}

/// Feishu / Lark: base64(HMAC-SHA256(key = `ts_s + "\n" + secret`, msg = empty)).
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    let string_to_sign = format!("{timestamp_s}\n{secret}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, string_to_sign.as_bytes());
    B64.encode(hmac::sign(&key, b"").as_ref())
}

/// Generic webhook: `sha256=` + hex(HMAC-SHA256(key = secret, msg = `ts_s + "." + body`)).
pub fn webhook_signature(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp_s.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
}

/// Check a generic webhook signature (for receivers and tests): constant-time, and the
/// timestamp within `tolerance_s` of `now_s`.
pub fn verify_webhook_signature(
    secret: &str,
    timestamp_s: i64,
    body: &[u8],
    signature: &str,
    now_s: i64,
    tolerance_s: i64,
) -> bool {
    if (now_s - timestamp_s).abs() > tolerance_s {
        return false;
    }
    let Some(hex_sig) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(tag) = hex::decode(hex_sig) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = timestamp_s.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(body);
    hmac::verify(&key, &message, &tag).is_ok()
}

/// RFC 3986 percent-encoding of everything but unreserved characters (what
/// `quote_plus` produces for base64 text: `+` → `%2B`, `/` → `%2F`, `=` → `%3D`).
pub use stockade_core::codec::percent_encode as url_encode;

#[cfg(test)]
mod tests {
    use super::*;

    // reference/security-specs.md §1.2 (computed with the platform's own Python sample).
    #[test]
    fn dingtalk_golden_vector() {
        let sign = dingtalk_sign("this is secret", 1_577_262_236_757);
        assert_eq!(sign, "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM=");
        assert_eq!(
            url_encode(&sign),
            "hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
        );
        assert_eq!(
            dingtalk_query("tok", Some("this is secret"), 1_577_262_236_757),
            "access_token=tok&timestamp=1577262236757&sign=hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
        );
        assert_eq!(dingtalk_query("tok", None, 1), "access_token=tok");
    }

    // reference/security-specs.md §2.2 (the Feishu documentation's example values).
    #[test]
    fn feishu_golden_vector() {
        assert_eq!(
            feishu_sign("demo", 1_599_360_473),
            "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="
        );
    }

    #[test]
    fn the_two_schemes_are_not_interchangeable() {
        // Swapping key and message (the classic bug) gives a different signature.
        let ts = 1_599_360_473;
        let swapped = {
            let key = hmac::Key::new(hmac::HMAC_SHA256, b"demo");
            B64.encode(hmac::sign(&key, format!("{ts}\ndemo").as_bytes()).as_ref())
        };
        assert_ne!(swapped, feishu_sign("demo", ts));
        assert_eq!(swapped, dingtalk_sign("demo", ts));
    }

    #[test]
    fn webhook_signature_round_trip() {
        let body = br#"{"type":"stockade.alert"}"#;
        let sig = webhook_signature("s3cret", 1_700_000_000, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify_webhook_signature(
            "s3cret",
            1_700_000_000,
            body,
            &sig,
            1_700_000_100,
            300
        ));
        assert!(!verify_webhook_signature(
            "other",
            1_700_000_000,
            body,
            &sig,
            1_700_000_000,
            300
        ));
        assert!(!verify_webhook_signature(
            "s3cret",
            1_700_000_000,
            b"{}",
            &sig,
            1_700_000_000,
            300
        ));
        assert!(!verify_webhook_signature(
            "s3cret",
            1_700_000_000,
            body,
            &sig,
            1_700_000_301,
            300
        ));
        // Known answer, computed independently: printf '1700000000.{"type":"stockade.alert"}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            sig,
            "sha256=9cd1a5c23a142644586b6b787a7a4892b48f764f89507ccf7de6fe5134220984"
        );
    }

    #[test]
    fn url_encoding_is_single() {
        assert_eq!(url_encode("a+b/c=d e"), "a%2Bb%2Fc%3Dd%20e");
        assert_eq!(url_encode("AZaz09-_.~"), "AZaz09-_.~");
    }
}
