//! Bad input gives typed errors.

use stockade_marketplaces::ebay::wire::verify_notification;
use stockade_marketplaces::events::check_body_size;
use stockade_marketplaces::sign::{EbayDigest, EbayPublicKey};
use stockade_marketplaces::{EventError, InboundEvent, MAX_EVENT_BODY, amazon, ebay, tiktok};

use crate::vectors::{
    EBAY_KEY_B64, EBAY_MESSAGE_COMPACT, EBAY_MESSAGE_PRETTY, EBAY_SIGNATURE, TIKTOK_SAMPLE,
};

#[test]
fn tiktok_webhook_verification() {
    let sig = "21109834de72ec53c9959716d8514ae388ce1f123e5ffdcafc46713fcdf62b27";
    let body = TIKTOK_SAMPLE.as_bytes();
    assert!(matches!(
        tiktok::wire::verify_webhook("fake_app_key", "fake_app_secret", Some(sig), body),
        Ok(InboundEvent::OrderChanged { .. })
    ));
    assert_eq!(
        tiktok::wire::verify_webhook("fake_app_key", "fake_app_secret", None, body),
        Err(EventError::MissingSignature("authorization".into()))
    );
    assert_eq!(
        tiktok::wire::verify_webhook("fake_app_key", "fake_app_secret", Some("00"), body),
        Err(EventError::BadSignature)
    );
}

#[test]
fn oversized_bodies_are_refused_before_anything_else() {
    let big = vec![b' '; MAX_EVENT_BODY + 1];
    let too_large = EventError::TooLarge {
        size: MAX_EVENT_BODY + 1,
        limit: MAX_EVENT_BODY,
    };
    assert_eq!(check_body_size(&big), Err(too_large.clone()));
    assert_eq!(
        tiktok::wire::verify_webhook("k", "s", None, &big),
        Err(too_large.clone())
    );
    assert_eq!(
        amazon::wire::verify_event(None, "x-stockade-event-key", "k", &big),
        Err(too_large.clone())
    );
    let key = EbayPublicKey::from_pem(EBAY_KEY_B64).unwrap();
    assert_eq!(
        verify_notification(&key, None, None, &big),
        Err(too_large.clone())
    );
    assert_eq!(too_large.http_status(), 413);
    assert!(check_body_size(&vec![b' '; MAX_EVENT_BODY]).is_ok());
}

#[test]
fn html_malformed_and_unknown_are_distinct() {
    let html = b"<html><body>502 Bad Gateway</body></html>";
    assert_eq!(tiktok::wire::parse_webhook(html), Err(EventError::NotJson));
    assert_eq!(amazon::wire::parse_event(html), Err(EventError::NotJson));
    assert_eq!(
        ebay::wire::parse_notification(html),
        Err(EventError::NotJson)
    );
    assert_eq!(tiktok::wire::parse_webhook(b""), Err(EventError::NotJson));

    assert!(matches!(
        tiktok::wire::parse_webhook(b"{\"type\":"),
        Err(EventError::Malformed(_))
    ));
    assert!(matches!(
        amazon::wire::parse_event(b"{\"NotificationType\":1}"),
        Err(EventError::Malformed(_))
    ));
    assert!(matches!(
        ebay::wire::parse_notification(b"{\"metadata\":{}}"),
        Err(EventError::Malformed(_))
    ));
    // Order change without its order id.
    assert!(matches!(
        tiktok::wire::parse_webhook(br#"{"type":1,"shop_id":"1","data":{}}"#),
        Err(EventError::Malformed(_))
    ));

    assert_eq!(
        tiktok::wire::parse_webhook(br#"{"type":99,"shop_id":"1"}"#),
        Err(EventError::UnknownEvent("99".into()))
    );
    assert_eq!(
        amazon::wire::parse_event(br#"{"NotificationType":"SOMETHING_NEW","Payload":{}}"#),
        Err(EventError::UnknownEvent("SOMETHING_NEW".into()))
    );
    assert_eq!(
        ebay::wire::parse_notification(
            br#"{"metadata":{"topic":"NEW_TOPIC"},"notification":{"data":{}}}"#
        ),
        Err(EventError::UnknownEvent("NEW_TOPIC".into()))
    );
}

#[test]
fn amazon_shared_secret_header() {
    let body = include_bytes!("fixtures/amazon_order_change.json");
    assert!(
        amazon::wire::verify_event(Some("s3cret"), "x-stockade-event-key", "s3cret", body).is_ok()
    );
    assert_eq!(
        amazon::wire::verify_event(Some("wrong"), "x-stockade-event-key", "s3cret", body),
        Err(EventError::BadSignature)
    );
    assert_eq!(
        amazon::wire::verify_event(None, "x-stockade-event-key", "s3cret", body),
        Err(EventError::MissingSignature("x-stockade-event-key".into()))
    );
    // An empty configured secret never matches.
    assert_eq!(
        amazon::wire::verify_event(Some(""), "h", "", body),
        Err(EventError::BadSignature)
    );
}

#[test]
fn ebay_signed_notification_end_to_end() {
    let key = EbayPublicKey::from_pem(EBAY_KEY_B64).unwrap();
    for body in [EBAY_MESSAGE_COMPACT, EBAY_MESSAGE_PRETTY] {
        assert!(matches!(
            verify_notification(
                &key,
                Some(EbayDigest::Sha1),
                Some(EBAY_SIGNATURE),
                body.as_bytes()
            ),
            Ok(InboundEvent::Revoked { .. })
        ));
    }
    let tampered = EBAY_MESSAGE_COMPACT.replace("ma8vp1jySJC", "someoneelse");
    assert_eq!(
        verify_notification(&key, None, Some(EBAY_SIGNATURE), tampered.as_bytes()),
        Err(EventError::BadSignature)
    );
    assert_eq!(
        verify_notification(&key, None, None, EBAY_MESSAGE_COMPACT.as_bytes()),
        Err(EventError::MissingSignature("x-ebay-signature".into()))
    );
    assert!(matches!(
        verify_notification(
            &key,
            None,
            Some("not base64!"),
            EBAY_MESSAGE_COMPACT.as_bytes()
        ),
        Err(EventError::SignatureFormat(_))
    ));
}

#[test]
fn errors_never_echo_input() {
    let secretish = br#"{"type":"Atza|supersecret-token-value"}"#;
    let err = tiktok::wire::parse_webhook(secretish).unwrap_err();
    assert!(!err.to_string().contains("supersecret"), "{err}");
}
