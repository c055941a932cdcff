//! The marketplaces' signing algorithms, as the sandbox checks and produces them.
//! Public so tests and the benchmark can build correctly signed requests.

use crate::util::{hmac_sha256_hex, sha256_hex};

/// TikTok Shop request `sign` (reference §2.3): all query parameters except `sign` and
/// `access_token` (and `x-tts-access-token`), sorted by key, concatenated `{key}{value}`,
/// prefixed by the path, followed by the body when one is signed, wrapped in the app
/// secret, HMAC-SHA256 keyed with the app secret, lowercase hex. Pass `body` only for
/// non-GET, non-multipart requests with a non-empty body.
pub fn tiktok_sign(
    app_secret: &str,
    path: &str,
    query: &[(String, String)],
    body: Option<&[u8]>,
) -> String {
    let mut params: Vec<&(String, String)> = query
        .iter()
        .filter(|(k, _)| k != "sign" && k != "access_token" && k != "x-tts-access-token")
        .collect();
    params.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut msg = Vec::with_capacity(256 + body.map_or(0, <[u8]>::len));
    msg.extend_from_slice(app_secret.as_bytes());
    msg.extend_from_slice(path.as_bytes());
    for (k, v) in params {
        msg.extend_from_slice(k.as_bytes());
        msg.extend_from_slice(v.as_bytes());
    }
    if let Some(b) = body {
        msg.extend_from_slice(b);
    }
    msg.extend_from_slice(app_secret.as_bytes());
    hmac_sha256_hex(app_secret.as_bytes(), &msg)
}

/// TikTok webhook `Authorization` header: hex HMAC-SHA256(app_secret, app_key + body).
pub fn tiktok_webhook_signature(app_key: &str, app_secret: &str, body: &[u8]) -> String {
    let mut msg = Vec::with_capacity(app_key.len() + body.len());
    msg.extend_from_slice(app_key.as_bytes());
    msg.extend_from_slice(body);
    hmac_sha256_hex(app_secret.as_bytes(), &msg)
}

/// eBay endpoint validation: hex SHA-256 of challenge code ‖ verification token ‖ endpoint.
pub fn ebay_challenge_response(
    challenge_code: &str,
    verification_token: &str,
    endpoint: &str,
) -> String {
    sha256_hex(format!("{challenge_code}{verification_token}{endpoint}").as_bytes())
}

/// The fixed DER prefix of a P-256 SubjectPublicKeyInfo; the uncompressed point follows.
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tiktok_library_vector() {
        assert_eq!(
            tiktok_sign("app_secret", "/test-api", &q(&[("foo", "bar")]), None),
            "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f"
        );
    }

    #[test]
    fn tiktok_realistic_vector() {
        let body = br#"{"skus":[{"id":"1729592969712207012","inventory":[{"warehouse_id":"7068517275539719942","quantity":10}]}]}"#;
        let query = q(&[
            ("timestamp", "1700000000"),
            ("app_key", "my_key"),
            ("shop_cipher", "ROW_abc"),
            ("sign", "ignored"),
            ("access_token", "ignored"),
        ]);
        assert_eq!(
            tiktok_sign(
                "my_secret",
                "/product/202309/products/1729592969712203945/inventory/update",
                &query,
                Some(body)
            ),
            "e5ee4e2f09d4dcf556b4dadf109af0c0cd9619bc0fde06a72f217351a7a2e9ba"
        );
    }

    #[test]
    fn tiktok_webhook_check_value() {
        let body = br#"{"type":1,"shop_id":"7494726673780148744","timestamp":1664095733,"data":{"order_id":"576684019603311365","order_status":"AWAITING_SHIPMENT","update_time":1664095610}}"#;
        assert_eq!(
            tiktok_webhook_signature("fake_app_key", "fake_app_secret", body),
            "21109834de72ec53c9959716d8514ae388ce1f123e5ffdcafc46713fcdf62b27"
        );
    }

    #[test]
    fn ebay_challenge_vector() {
        assert_eq!(
            ebay_challenge_response(
                "a8628072-3d33-45ee-9004-bee86830a22d",
                "71745723-d031-455c-bfa5-f90d11b4f20a",
                "http://www.testendpoint.com/webhook"
            ),
            "ca527df75caa230092d7e90484071e8f05d63068f1317973d6a3a42593734bbb"
        );
    }
}
