//! The page for a banned address, in the style of the sign-in pages: which address is
//! banned, when the ban ends (or that it is permanent) and how an administrator lifts it.
//! [`AppError::Banned`](crate::error::AppError) answers with it on page routes, and adds
//! `Retry-After` for a ban that ends.

use std::net::IpAddr;

use askama::Template;
use stockade_core::time::format_rfc3339_ms;

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

/// The page for a banned address (the JSON answer is [`AppError::Banned`](crate::error::AppError)'s).
#[derive(Debug, Template)]
#[template(path = "banned.html")]
pub struct BannedPage {
    title: &'static str,
    ip: String,
    /// When the ban ends, readable, and how long that is from now; `None` if permanent.
    ends: Option<(String, String)>,
}

impl BannedPage {
    /// `until_s` is `None` for a permanent ban.
    pub fn new(ip: IpAddr, until_s: Option<i64>, now_s: i64) -> Self {
        BannedPage {
            title: "Address banned",
            ip: ip.to_string(),
            ends: until_s.map(|u| (readable(u), remaining(u - now_s))),
        }
    }
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
