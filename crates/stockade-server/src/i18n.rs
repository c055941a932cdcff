//! The console's languages: English and Simplified Chinese, one message catalogue each
//! (`static/i18n/en.tsv`, `static/i18n/zh.tsv`, embedded at compile time: `key<TAB>text`
//! per line), the language of a request (a signed-in user's stored choice, else the
//! `stockade_lang` cookie set by `/lang`, else `Accept-Language`, else English) and times
//! in the console's time zone.
//!
//! Invariants: both catalogues hold exactly the same keys (a unit test fails otherwise),
//! so no page silently falls back to English; a key missing at run time shows as `??`
//! (visible, never blank, never English) and logs an error. Times are stored in UTC (milliseconds) and only
//! converted here, for display.

use axum::http::{HeaderMap, header};
use chrono::TimeZone;

use crate::extract::{Caller, cookie};

/// The cookie holding the chosen language (`en` or `zh`).
pub const LANG_COOKIE: &str = "stockade_lang";

const EN: &str = include_str!("../static/i18n/en.tsv");
const ZH: &str = include_str!("../static/i18n/zh.tsv");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Zh];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// The value of an HTML `lang` attribute.
    pub fn html(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "zh" | "zh-cn" | "zh-hans" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The request's language: the cookie, else the first supported `Accept-Language`
    /// entry by quality, else English.
    pub fn of(headers: &HeaderMap) -> Lang {
        if let Some(l) = cookie(headers, LANG_COOKIE).and_then(Lang::parse) {
            return l;
        }
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut best: Option<(f32, Lang)> = None;
        for part in accept.split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    /// The language of a permission-gated request: a signed-in user's stored choice
    /// (`users.language`, set by the language switch), else [`Lang::of`] the request.
    pub fn for_caller(caller: &Caller, headers: &HeaderMap) -> Lang {
        match caller {
            Caller::Session(s) => s
                .language
                .as_deref()
                .and_then(Lang::parse)
                .unwrap_or_else(|| Lang::of(headers)),
            Caller::Key(_) => Lang::of(headers),
        }
    }

    fn catalogue(self) -> &'static str {
        match self {
            Lang::En => EN,
            Lang::Zh => ZH,
        }
    }

    /// The text of `key` in this language (`??` if it is missing, which the catalogue
    /// test forbids).
    pub fn t(self, key: &str) -> &'static str {
        entries(self.catalogue())
            .find(|(k, _)| *k == key)
            .map_or_else(|| leak_key(key), |(_, v)| v)
    }
}

fn leak_key(key: &str) -> &'static str {
    // Never reached when the catalogue test passes; keeps the page readable if it is.
    tracing::error!("message {key:?} is missing from the catalogue");
    "??"
}

/// The `(key, text)` pairs of a catalogue (blank lines and `#` comments skipped).
pub fn entries(text: &'static str) -> impl Iterator<Item = (&'static str, &'static str)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
}

/// Every key of a language's catalogue.
pub fn keys(lang: Lang) -> Vec<&'static str> {
    entries(lang.catalogue()).map(|(k, _)| k).collect()
}

/// `ms` (UTC milliseconds) as local time in `tz`: `2026-12-07 08:38:09 CST`.
pub fn local_time(tz: chrono_tz::Tz, ms: i64) -> String {
    match tz.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.format("%Y-%m-%d %H:%M:%S %Z").to_string(),
        _ => String::new(),
    }
}

/// The `Set-Cookie` value that keeps a chosen language for a year.
pub fn lang_cookie(lang: Lang, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax{secure}",
        lang.code()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn both_catalogues_have_the_same_keys_and_no_empty_or_duplicate_text() {
        let en = keys(Lang::En);
        let zh = keys(Lang::Zh);
        for k in &en {
            assert!(zh.contains(k), "{k} is missing from zh.tsv");
        }
        for k in &zh {
            assert!(en.contains(k), "{k} is missing from en.tsv");
        }
        for lang in Lang::ALL {
            let ks = keys(lang);
            for (i, k) in ks.iter().enumerate() {
                assert!(!ks[i + 1..].contains(k), "{k} twice in {}", lang.code());
                assert!(!lang.t(k).trim().is_empty(), "{k} empty");
            }
        }
        // Chinese texts are Chinese: each has at least one CJK character.
        for (k, v) in entries(ZH) {
            assert!(
                v.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{k} is not translated: {v}"
            );
        }
    }

    #[test]
    fn the_language_comes_from_the_cookie_then_accept_language() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::of(&h), Lang::En);
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("fr;q=1, zh-CN;q=0.9, en;q=0.8"),
        );
        assert_eq!(Lang::of(&h), Lang::Zh);
        h.insert(header::COOKIE, HeaderValue::from_static("stockade_lang=en"));
        assert_eq!(Lang::of(&h), Lang::En);
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("en-US,en;q=0.9"),
        );
        h.insert(header::COOKIE, HeaderValue::from_static("stockade_lang=zh"));
        assert_eq!(Lang::of(&h), Lang::Zh);
    }

    #[test]
    fn times_are_shown_in_the_zone() {
        let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        assert_eq!(local_time(tz, 0), "1970-01-01 08:00:00 CST");
        let sg: chrono_tz::Tz = "Asia/Singapore".parse().unwrap();
        assert_eq!(local_time(sg, 0), "1970-01-01 07:30:00 +0730");
    }
}
