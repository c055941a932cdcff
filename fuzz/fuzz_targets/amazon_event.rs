//! Amazon EventBridge / SQS ORDER_CHANGE events: shared-secret check and parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockade_marketplaces::amazon::wire::{parse_event, verify_event};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_event(data);
    let verified = verify_event(Some("fuzz-key"), "x-stockade-event-key", "fuzz-key", data);
    assert_eq!(parsed, verified);
    let _ = verify_event(
        std::str::from_utf8(data).ok(),
        "x-stockade-event-key",
        "fuzz-key",
        data,
    );
});
