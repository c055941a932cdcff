//! eBay notifications: signature header decoding, ECDSA verification (raw and compact
//! body) against eBay's published test key, and parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockade_marketplaces::ebay::wire::{parse_notification, verify_notification};
use stockade_marketplaces::json::compact_json;
use stockade_marketplaces::sign::{EbayPublicKey, parse_ebay_signature_header};

const KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZhhxXKtR+TOvtDbgTPCkSof02qgBB7IsYOyf76ilExJ/upAa/vKIKheOoCyOpcLmi4t0b4uepb7LLjmMr90FUg==";

fuzz_target!(|data: &[u8]| {
    let Ok(key) = EbayPublicKey::from_pem(KEY) else {
        return;
    };
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    if let Some(h) = header {
        let _ = parse_ebay_signature_header(h);
    }
    let _ = verify_notification(&key, None, header, body);
    let _ = parse_notification(body);
    let _ = EbayPublicKey::from_pem(&String::from_utf8_lossy(body));
    if let Some(compact) = compact_json(body) {
        // Compacting is idempotent.
        assert_eq!(compact_json(&compact).as_deref(), Some(compact.as_slice()));
    }
});
