//! TikTok webhook: HMAC verification and parsing of arbitrary bodies and headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockade_marketplaces::sign::tiktok_webhook_signature;
use stockade_marketplaces::tiktok::wire::{parse_webhook, verify_webhook};

fuzz_target!(|data: &[u8]| {
    // The first line (if any) is the Authorization header, the rest the body.
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    let _ = verify_webhook("fuzz_key", "fuzz_secret", header, body);
    // Correctly signed, so the parser sees every body.
    let sig = tiktok_webhook_signature("fuzz_key", "fuzz_secret", body);
    let verified = verify_webhook("fuzz_key", "fuzz_secret", Some(&sig), body);
    assert_eq!(verified, parse_webhook(body));
});
