//! The bots' signing schemes, as the simulator verifies them. Public so tests and
//! clients can build correctly signed requests.

use aws_lc_rs::{constant_time, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

fn hmac_sha256(key: &[u8], msg: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg)
}

/// DingTalk custom robot `sign` before URL-encoding: base64(HMAC-SHA256(key = secret,
/// msg = timestamp + "\n" + secret)), `timestamp` in Unix milliseconds. Percent-encode
/// it exactly once when putting it in the URL (or let the HTTP client's query builder
/// do it, but not both).
pub fn dingtalk_sign(secret: &str, timestamp_ms: &str) -> String {
    let msg = format!("{timestamp_ms}\n{secret}");
    STANDARD.encode(hmac_sha256(secret.as_bytes(), msg.as_bytes()).as_ref())
}

/// Feishu / Lark custom bot `sign`: base64(HMAC-SHA256(key = timestamp + "\n" + secret,
/// msg = empty)), `timestamp` in Unix seconds; sent as top-level JSON fields `timestamp`
/// and `sign`, not URL-encoded. Note the key and message are swapped relative to DingTalk.
pub fn feishu_sign(secret: &str, timestamp_s: &str) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    STANDARD.encode(hmac_sha256(key.as_bytes(), b"").as_ref())
}

/// The generic webhook `X-Stockade-Signature` header value:
/// `sha256=` + lower-case hex of HMAC-SHA256(key = secret, msg = timestamp + "." + body),
/// `timestamp` being the `X-Stockade-Timestamp` header (Unix seconds).
pub fn webhook_signature(secret: &str, timestamp_s: &str, body: &[u8]) -> String {
    let mut msg = Vec::with_capacity(timestamp_s.len() + 1 + body.len());
    msg.extend_from_slice(timestamp_s.as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &msg).as_ref())
    )
}

/// Constant-time string equality (lengths are not secret).
pub(crate) fn same(a: &str, b: &str) -> bool {
    constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Whether `sign` (already percent-decoded once) is the DingTalk signature.
pub(crate) fn dingtalk_verify(secret: &str, timestamp_ms: &str, sign: &str) -> bool {
    same(&dingtalk_sign(secret, timestamp_ms), sign)
}

/// Whether `sign` is the Feishu signature.
pub(crate) fn feishu_verify(secret: &str, timestamp_s: &str, sign: &str) -> bool {
    same(&feishu_sign(secret, timestamp_s), sign)
}

/// Whether `signature` is the generic webhook signature (exact `sha256=<lower hex>`).
pub(crate) fn webhook_verify(
    secret: &str,
    timestamp_s: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    same(&webhook_signature(secret, timestamp_s, body), signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::{parse_query, percent_encode, query_get};

    #[test]
    fn dingtalk_golden_vector() {
        let b64 = dingtalk_sign("this is secret", "1577262236757");
        assert_eq!(b64, "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM=");
        assert_eq!(
            percent_encode(&b64),
            "hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
        );
        // The verifier sees the query value decoded once.
        let q = parse_query("sign=hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D");
        let sign = query_get(&q, "sign").unwrap_or_default();
        assert!(dingtalk_verify("this is secret", "1577262236757", sign));
        // Double-encoded: still percent-encoded after one decoding.
        let double = percent_encode(&percent_encode(&b64));
        let q = parse_query(&format!("sign={double}"));
        let sign = query_get(&q, "sign").unwrap_or_default();
        assert!(!dingtalk_verify("this is secret", "1577262236757", sign));
        // Not encoded at all: '+' decodes to a space.
        let q = parse_query(&format!("sign={b64}"));
        let sign = query_get(&q, "sign").unwrap_or_default();
        assert!(!dingtalk_verify("this is secret", "1577262236757", sign));
        assert!(!dingtalk_verify("this is secreT", "1577262236757", &b64));
        assert!(!dingtalk_verify("this is secret", "1577262236758", &b64));
    }

    #[test]
    fn feishu_golden_vector() {
        let s = feishu_sign("demo", "1599360473");
        assert_eq!(s, "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8=");
        assert!(feishu_verify("demo", "1599360473", &s));
        // The DingTalk scheme (key and message swapped) does not verify.
        assert!(!feishu_verify(
            "demo",
            "1599360473",
            &dingtalk_sign("demo", "1599360473")
        ));
        assert!(!dingtalk_verify("demo", "1599360473", &s));
    }

    #[test]
    fn webhook_signature_shape() {
        let s = webhook_signature("k", "1700000000", b"{}");
        assert!(s.starts_with("sha256="));
        assert_eq!(s.len(), 7 + 64);
        assert!(webhook_verify("k", "1700000000", b"{}", &s));
        assert!(!webhook_verify("k", "1700000000", b"{} ", &s));
        let upper = format!("sha256={}", s.trim_start_matches("sha256=").to_uppercase());
        assert!(!webhook_verify("k", "1700000000", b"{}", &upper));
    }
}
