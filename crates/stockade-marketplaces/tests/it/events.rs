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

/// A correctly signed TikTok webhook outside the freshness window is a replay (or a clock
/// problem) and is refused; inside it, it parses as usual.
#[test]
fn tiktok_webhook_freshness() {
    use stockade_marketplaces::FreshnessWindow;
    use stockade_marketplaces::sign::tiktok_webhook_signature;
    let window = FreshnessWindow {
        max_age_s: 900,
        max_ahead_s: 300,
    };
    let body = TIKTOK_SAMPLE.as_bytes(); // timestamp 1664095733
    let sig = tiktok_webhook_signature("fake_app_key", "fake_app_secret", body);
    let at = |now: i64| {
        tiktok::wire::verify_fresh_webhook(
            "fake_app_key",
            "fake_app_secret",
            Some(&sig),
            body,
            &window,
            now,
        )
    };
    assert!(matches!(
        at(1_664_095_733 + 60),
        Ok(InboundEvent::OrderChanged { .. })
    ));
    assert!(at(1_664_095_733 - 299).is_ok());
    let stale = at(1_664_095_733 + 901).unwrap_err();
    assert!(matches!(stale, EventError::StaleTimestamp(_)), "{stale}");
    assert_eq!(stale.http_status(), 401);
    assert!(stale.to_string().contains("901 s old"), "{stale}");
    assert!(matches!(
        at(1_664_095_733 - 301),
        Err(EventError::StaleTimestamp(_))
    ));
    // The signature is checked first: a bad one is a bad signature, whatever its age.
    assert_eq!(
        tiktok::wire::verify_fresh_webhook(
            "fake_app_key",
            "fake_app_secret",
            Some("00"),
            body,
            &window,
            0
        ),
        Err(EventError::BadSignature)
    );
    // No timestamp at all: refused.
    let bare = br#"{"type":6,"shop_id":"1","data":{}}"#;
    let sig = tiktok_webhook_signature("k", "s", bare);
    assert!(matches!(
        tiktok::wire::verify_fresh_webhook("k", "s", Some(&sig), bare, &window, 1_700_000_000),
        Err(EventError::StaleTimestamp(_))
    ));
}

#[test]
fn only_accepted_return_and_refunds_restock() {
    use tiktok::wire::return_restocks;
    assert!(return_restocks(
        "RETURN_AND_REFUND",
        "RETURN_OR_REFUND_REQUEST_COMPLETE"
    ));
    assert!(return_restocks(
        "RETURN_AND_REFUND",
        "RETURN_OR_REFUND_REQUEST_SUCCESS"
    ));
    assert!(!return_restocks("RETURN_AND_REFUND", "BUYER_SHIPPED_ITEM"));
    assert!(!return_restocks(
        "RETURN_AND_REFUND",
        "REJECT_RECEIVE_PACKAGE"
    ));
    assert!(!return_restocks(
        "REFUND",
        "RETURN_OR_REFUND_REQUEST_COMPLETE"
    ));
    assert!(!return_restocks(
        "REPLACEMENT",
        "REPLACEMENT_REQUEST_COMPLETE"
    ));
}
