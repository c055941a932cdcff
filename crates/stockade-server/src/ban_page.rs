//! The page for a banned address, in the style of the sign-in pages: which address is
//! banned, when the ban ends (or that it is permanent) and how an administrator lifts it,
//! in the request's language with the end in the console's time zone.
//! [`AppError::Banned`](crate::error::AppError) answers with it on page routes, and adds
//! `Retry-After` for a ban that ends.

use std::net::IpAddr;

use askama::Template;

use crate::compliance::fill;
use crate::frame::Frame;
use crate::i18n::{Lang, local_time};

/// `in 9 minutes`, `in 2 hours`, `in 3 days` (in `lang`).
fn remaining(seconds: i64, lang: Lang) -> String {
    let s = seconds.max(1);
    let (n, unit) = if s < 90 {
        (s, "s")
    } else if s < 90 * 60 {
        ((s + 59) / 60, "m")
    } else if s < 36 * 3600 {
        ((s + 3599) / 3600, "h")
    } else {
        ((s + 86_399) / 86_400, "d")
    };
    let key = format!("ban.in_{unit}{}", if n == 1 { "1" } else { "n" });
    fill(lang.t(&key), std::iter::once(n.to_string()))
}

/// The page for a banned address (the JSON answer is [`AppError::Banned`](crate::error::AppError)'s).
#[derive(Debug, Template)]
#[template(path = "banned.html")]
pub struct BannedPage {
    f: Frame,
    title: &'static str,
    ip: String,
    /// When the ban ends (in the console's time zone), and how long that is from now;
    /// `None` if permanent.
    ends: Option<(String, String)>,
}

impl BannedPage {
    /// `until_s` is `None` for a permanent ban. The page has no language switch (a banned
    /// address could not follow it).
    pub fn new(ip: IpAddr, until_s: Option<i64>, now_s: i64, f: Frame, tz: chrono_tz::Tz) -> Self {
        let f = Frame { here: None, ..f };
        BannedPage {
            title: f.t("ban.title"),
            ip: ip.to_string(),
            ends: until_s.map(|u| {
                (
                    local_time(tz, u.saturating_mul(1000)),
                    remaining(u - now_s, f.lang),
                )
            }),
            f,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_the_ban_is_readable_in_both_languages() {
        assert_eq!(remaining(30, Lang::En), "in 30 seconds");
        assert_eq!(remaining(60 * 9, Lang::En), "in 9 minutes");
        assert_eq!(remaining(3600, Lang::En), "in 60 minutes");
        assert_eq!(remaining(7200, Lang::En), "in 2 hours");
        assert_eq!(remaining(7 * 86_400, Lang::En), "in 7 days");
        assert_eq!(remaining(-5, Lang::En), "in 1 second");
        assert_eq!(remaining(7200, Lang::Zh), "2 小时后");
    }
}
