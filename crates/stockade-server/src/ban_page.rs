//! The answer to a banned address: a page in the style of the sign-in pages that says
//! which address is banned and when the ban ends, or JSON for API and webhook clients.
//! Both carry `Retry-After` for a ban that ends.

use std::net::IpAddr;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;
use stockade_core::time::format_rfc3339_ms;

use crate::pages::esc;

/// `2026-11-22 08:53 UTC` (to the minute; the JSON answer has the exact time).
fn readable(until_s: i64) -> String {
    let t = format_rfc3339_ms(until_s.saturating_mul(1000));
    match (t.get(..10), t.get(11..16)) {
        (Some(day), Some(hm)) => format!("{day} {hm} UTC"),
        _ => t,
    }
}

/// `in 9 minutes`, `in 2 hours`, `in 3 days`.
fn remaining(seconds: i64) -> String {
    let s = seconds.max(1);
    let (n, unit) = if s < 90 {
        (s, "second")
    } else if s < 90 * 60 {
        ((s + 59) / 60, "minute")
    } else if s < 36 * 3600 {
        ((s + 3599) / 3600, "hour")
    } else {
        ((s + 86_399) / 86_400, "day")
    };
    format!("in {n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The JSON 403 for a banned address (API and webhook clients), with `Retry-After`.
pub fn banned_json(until_s: Option<i64>, now_s: i64) -> Response {
    let retry_after = until_s.map(|u| (u - now_s).max(1));
    let message = match until_s {
        Some(u) => format!(
            "this address is banned after repeated failures until {}",
            format_rfc3339_ms(u.saturating_mul(1000))
        ),
        None => {
            "this address is banned after repeated failures until an administrator lifts the ban"
                .to_owned()
        }
    };
    let mut res = (
        StatusCode::FORBIDDEN,
        Json(json!({"error": {
            "code": "banned",
            "message": message,
            "until": until_s.map(|u| format_rfc3339_ms(u.saturating_mul(1000))),
            "retry_after_s": retry_after,
        }})),
    )
        .into_response();
    if let Some(v) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// The 403 for a banned address. `until_s` is `None` for a permanent ban.
pub fn banned(ip: IpAddr, until_s: Option<i64>, now_s: i64, wants_json: bool) -> Response {
    let retry_after = until_s.map(|u| (u - now_s).max(1));
    if wants_json {
        return banned_json(until_s, now_s);
    }
    let mut res = {
        let ends = match (until_s, retry_after) {
            (Some(u), Some(left)) => format!(
                "<p>The ban ends at <strong>{}</strong> ({}). Requests before then are refused, and do not extend it.</p>",
                esc(&readable(u)),
                esc(&remaining(left))
            ),
            _ => "<p>The ban is <strong>permanent</strong>: it ends when an administrator lifts it.</p>".to_owned(),
        };
        let body = format!(
            "<p class=\"error\" role=\"alert\">Your address, <code>{}</code>, is banned: too many failed attempts came from it, or an administrator banned it.</p>\
             {ends}\
             <p>If this is a mistake, an administrator can lift the ban with <code>stockade ban remove {}</code> (see <code>stockade ban list</code>).</p>",
            esc(&ip.to_string()),
            esc(&ip.to_string()),
        );
        (
            StatusCode::FORBIDDEN,
            Html(format!(
                "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
                 <title>Address banned · Stockade</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
                 <body><main><h1>Address banned</h1>{body}</main></body></html>\n"
            )),
        )
            .into_response()
    };
    if let Some(v) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_the_ban_is_readable() {
        assert_eq!(readable(0), "1970-01-01 00:00 UTC");
        assert_eq!(remaining(30), "in 30 seconds");
        assert_eq!(remaining(60 * 9), "in 9 minutes");
        assert_eq!(remaining(3600), "in 60 minutes");
        assert_eq!(remaining(7200), "in 2 hours");
        assert_eq!(remaining(7 * 86_400), "in 7 days");
        assert_eq!(remaining(-5), "in 1 second");
    }
}
