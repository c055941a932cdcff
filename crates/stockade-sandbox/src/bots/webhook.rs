//! Generic signed webhook receiver (our own scheme): `POST /webhook/{name}`.
//!
//! Checks in order: name (404), body size (413, over 256 KiB), timestamp within ±300 s
//! and signature (401 `{"error":"invalid signature"}`), JSON body (400), then 204.
//! `X-Stockade-Delivery` is recorded but not required.
//!
//! A receiver registered with a bearer token instead (an API that authenticates its
//! callers by token, e.g. a supplier's order endpoint called by a workflow's
//! `http.request`) checks `Authorization: Bearer TOKEN` (401 otherwise) in place of the
//! timestamp and signature; the other checks are the same.

use std::time::Instant;

use serde_json::json;

use super::{BotKind, BotsState, Clock, Incoming, Outcome, Reply, Shared, active, sign};

/// Largest accepted body (256 KiB).
const MAX_BODY: usize = 256 * 1024;
/// Accepted distance between `X-Stockade-Timestamp` and now.
const SKEW_S: i64 = 300;

/// One registered receiver.
#[derive(Debug)]
pub(crate) struct Hook {
    pub name: String,
    pub secret: String,
    /// Set: authenticate by this bearer token instead of the signature.
    pub bearer: Option<String>,
    pub throttled_until: Option<Instant>,
}

fn answer(bot: &str, status: u16, error: Option<&str>) -> Outcome {
    Outcome {
        bot: bot.to_owned(),
        kind: BotKind::Webhook,
        status,
        code: if error.is_some() {
            status.to_string()
        } else {
            "0".into()
        },
        message: error.unwrap_or("").to_owned(),
        accepted: error.is_none(),
        reply: match error {
            Some(e) => Reply::Json(json!({ "error": e })),
            None => Reply::Empty,
        },
        record_body: None,
    }
}

pub(crate) fn handle(
    _sh: &Shared,
    st: &mut BotsState,
    inc: &Incoming,
    clk: Clock,
    name: &str,
) -> Outcome {
    let Some(hook) = st.webhooks.get(name) else {
        return answer("", 404, Some("unknown webhook"));
    };
    let (secret, bearer, throttled) = (
        hook.secret.clone(),
        hook.bearer.clone(),
        hook.throttled_until,
    );
    if let Some(o) = st.fault_outcome(name, BotKind::Webhook) {
        return o;
    }
    if active(throttled, clk.now) {
        return answer(name, 429, Some("too many requests"));
    }
    if inc.body_len > MAX_BODY {
        return answer(name, 413, Some("payload too large"));
    }
    if let Some(token) = bearer {
        let want = format!("Bearer {token}");
        if inc.header("authorization") != Some(want.as_str()) {
            return answer(name, 401, Some("invalid token"));
        }
        if !inc.is_json {
            return answer(name, 400, Some("body is not JSON"));
        }
        return answer(name, 204, None);
    }
    let ts = inc.header("x-stockade-timestamp").unwrap_or("");
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| clk.now_ms.div_euclid(1000).abs_diff(t) <= SKEW_S.unsigned_abs());
    let signature = inc.header("x-stockade-signature").unwrap_or("");
    if !fresh || !sign::webhook_verify(&secret, ts, &inc.body, signature) {
        return answer(name, 401, Some("invalid signature"));
    }
    if !inc.is_json {
        return answer(name, 400, Some("body is not JSON"));
    }
    answer(name, 204, None)
}
