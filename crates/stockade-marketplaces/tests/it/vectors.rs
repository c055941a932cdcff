//! The worked signing examples and real vectors from the reference.

use stockade_marketplaces::json::compact_json;
use stockade_marketplaces::sign::{
    EbayDigest, EbayPublicKey, ebay_challenge_body, ebay_challenge_response,
    parse_ebay_signature_header, tiktok_sign, tiktok_webhook_signature, tiktok_webhook_verify,
};

pub const TIKTOK_SAMPLE: &str = r#"{"type":1,"shop_id":"7494726673780148744","timestamp":1664095733,"data":{"order_id":"576684019603311365","order_status":"AWAITING_SHIPMENT","update_time":1664095610}}"#;

pub const EBAY_SIGNATURE: &str = "eyJhbGciOiJlY2RzYSIsImtpZCI6Ijk5MzYyNjFhLTdkN2ItNDYyMS1hMGYxLTk2Y2NiNDI4YWY0OSIsInNpZ25hdHVyZSI6Ik1FWUNJUUNmeGZJV3V4bVdjSUJRSjljNS9YN2lHREpxczJSQ0dzQkVhQWppbnlycmZBSWhBSVY2d0djVGlCdVY1S0pVaWYyaG9reXJMK1E5c3NIa2FkK214Mm5FRTI1dyIsImRpZ2VzdCI6IlNIQTEifQ==";
pub const EBAY_KEY_B64: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZhhxXKtR+TOvtDbgTPCkSof02qgBB7IsYOyf76ilExJ/upAa/vKIKheOoCyOpcLmi4t0b4uepb7LLjmMr90FUg==";
pub const EBAY_MESSAGE_COMPACT: &str = r#"{"metadata":{"topic":"MARKETPLACE_ACCOUNT_DELETION","schemaVersion":"1.0","deprecated":false},"notification":{"notificationId":"49feeaeb-4982-42d9-a377-9645b8479411_33f7e043-fed8-442b-9d44-791923bd9a6d","eventDate":"2021-03-19T20:43:59.462Z","publishDate":"2021-03-19T20:43:59.679Z","publishAttemptCount":1,"data":{"username":"test_user","userId":"ma8vp1jySJC","eiasToken":"nY+sHZ2PrBmdj6wVnY+sEZ2PrA2dj6wJnY+gAZGEpwmdj6x9nY+seQ=="}}}"#;
pub const EBAY_MESSAGE_PRETTY: &str = include_str!("fixtures/ebay_account_deletion.json");

#[test]
fn tiktok_sign_library_vector() {
    assert_eq!(
        tiktok_sign("app_secret", "/test-api", &[("foo", "bar")], None),
        "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f"
    );
}

#[test]
fn tiktok_sign_realistic_example() {
    let body = br#"{"skus":[{"id":"1729592969712207012","inventory":[{"warehouse_id":"7068517275539719942","quantity":10}]}]}"#;
    // Parameter order in the request does not matter; sign/access_token are excluded.
    let params = [
        ("timestamp", "1700000000"),
        ("sign", "ignored"),
        ("shop_cipher", "ROW_abc"),
        ("app_key", "my_key"),
        ("access_token", "ignored"),
    ];
    assert_eq!(
        tiktok_sign(
            "my_secret",
            "/product/202309/products/1729592969712203945/inventory/update",
            &params,
            Some(body)
        ),
        "e5ee4e2f09d4dcf556b4dadf109af0c0cd9619bc0fde06a72f217351a7a2e9ba"
    );
}

#[test]
fn tiktok_webhook_check_value() {
    let sig = tiktok_webhook_signature("fake_app_key", "fake_app_secret", TIKTOK_SAMPLE.as_bytes());
    assert_eq!(
        sig,
        "21109834de72ec53c9959716d8514ae388ce1f123e5ffdcafc46713fcdf62b27"
    );
    assert!(tiktok_webhook_verify(
        "fake_app_key",
        "fake_app_secret",
        TIKTOK_SAMPLE.as_bytes(),
        &sig.to_uppercase()
    ));
    assert!(!tiktok_webhook_verify(
        "fake_app_key",
        "other",
        TIKTOK_SAMPLE.as_bytes(),
        &sig
    ));
    let mut body = TIKTOK_SAMPLE.as_bytes().to_vec();
    body[10] ^= 1;
    assert!(!tiktok_webhook_verify(
        "fake_app_key",
        "fake_app_secret",
        &body,
        &sig
    ));
}

#[test]
fn ebay_challenge_vector() {
    let code = "a8628072-3d33-45ee-9004-bee86830a22d";
    let token = "71745723-d031-455c-bfa5-f90d11b4f20a";
    let endpoint = "http://www.testendpoint.com/webhook";
    assert_eq!(
        ebay_challenge_response(code, token, endpoint),
        "ca527df75caa230092d7e90484071e8f05d63068f1317973d6a3a42593734bbb"
    );
    assert_eq!(
        ebay_challenge_body(code, token, endpoint),
        r#"{"challengeResponse":"ca527df75caa230092d7e90484071e8f05d63068f1317973d6a3a42593734bbb"}"#
    );
}

#[test]
fn ebay_real_signature_verifies_over_the_compact_message() {
    let header = parse_ebay_signature_header(EBAY_SIGNATURE).unwrap();
    assert_eq!(header.kid, "9936261a-7d7b-4621-a0f1-96ccb428af49");
    assert_eq!(header.digest, EbayDigest::Sha1);
    let key = EbayPublicKey::from_pem(EBAY_KEY_B64).unwrap();
    let pem = format!("-----BEGIN PUBLIC KEY-----{EBAY_KEY_B64}-----END PUBLIC KEY-----");
    assert_eq!(EbayPublicKey::from_pem(&pem).unwrap(), key);
    assert_eq!(key.point().len(), 65);

    // The exact signed bytes.
    assert!(key.verify_exact(
        EbayDigest::Sha1,
        &header.signature,
        EBAY_MESSAGE_COMPACT.as_bytes()
    ));
    // The pretty-printed file only verifies through its compact form.
    assert!(!key.verify_exact(
        EbayDigest::Sha1,
        &header.signature,
        EBAY_MESSAGE_PRETTY.as_bytes()
    ));
    assert_eq!(
        compact_json(EBAY_MESSAGE_PRETTY.as_bytes()).unwrap(),
        EBAY_MESSAGE_COMPACT.as_bytes()
    );
    assert!(key.verify_notification(
        EbayDigest::Sha1,
        &header.signature,
        EBAY_MESSAGE_PRETTY.as_bytes()
    ));
    // Wrong digest, tampered body.
    assert!(!key.verify_notification(
        EbayDigest::Sha256,
        &header.signature,
        EBAY_MESSAGE_COMPACT.as_bytes()
    ));
    let tampered = EBAY_MESSAGE_COMPACT.replace("test_user", "test_usex");
    assert!(!key.verify_notification(EbayDigest::Sha1, &header.signature, tampered.as_bytes()));
}

#[test]
fn ebay_signature_header_errors_are_typed() {
    use stockade_marketplaces::sign::SignatureFormatError as E;
    assert_eq!(parse_ebay_signature_header("%%%"), Err(E::HeaderNotBase64));
    assert_eq!(
        parse_ebay_signature_header("bm90IGpzb24="),
        Err(E::HeaderNotJson)
    );
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    assert_eq!(
        parse_ebay_signature_header(&b64(
            r#"{"alg":"rsa","kid":"k","signature":"AA==","digest":"SHA1"}"#
        )),
        Err(E::UnsupportedAlgorithm("rsa".into()))
    );
    assert_eq!(
        parse_ebay_signature_header(&b64(
            r#"{"alg":"ecdsa","kid":"k","signature":"AA==","digest":"MD5"}"#
        )),
        Err(E::UnsupportedDigest("MD5".into()))
    );
    assert_eq!(
        parse_ebay_signature_header(&b64(
            r#"{"alg":"ecdsa","kid":"k","signature":"!!","digest":"SHA1"}"#
        )),
        Err(E::SignatureNotBase64)
    );
}
