//! What the overview shows of each channel that lives in the running process rather than
//! in the database: its push lag (p50/p99 from the sync engine's log-linear buckets, the
//! same samples `/metrics` and `stockade live` read, since the server started) and its
//! rate-limit state (the egress gateway's token bucket for the channel's API host and its
//! circuit breaker). The composition root implements [`ChannelLive`]; without it (a test
//! server) the overview shows "—".
//!
//! Invariants: reading takes nothing (no token, no sample); labels are connection names
//! and hosts the operator configured, never buyer data or secrets.

use crate::i18n::Lang;

/// A channel's push lag since the server started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PushLag {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub count: usize,
}

/// A channel API host's rate-limit state now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateState {
    /// Tokens in the host bucket (negative while pushes wait for reserved ones); `None`
    /// before the first request to the host.
    pub tokens: Option<f64>,
    pub burst: Option<f64>,
    /// The circuit breaker holds requests off after repeated failures.
    pub breaker_open: bool,
}

/// The future of a listing discovery.
pub type DiscoverFuture<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<stockade_sync::discover::DiscoverReport, stockade_sync::SyncError>,
            > + Send
            + 'a,
    >,
>;

/// Supplied by the composition root (stockade-app) from the sync engine and the gateway.
/// Also runs a listing discovery (`stockade sku discover`'s code path), which needs the
/// process's vault and egress gateway.
pub trait ChannelLive: Send + Sync {
    fn push_lag(&self, connection: &str) -> Option<PushLag>;
    fn rate_state(&self, api_host: &str) -> RateState;
    fn discover<'a>(
        &'a self,
        connection: &'a str,
        opts: stockade_sync::discover::DiscoverOptions,
        actor: &'a stockade_core::Actor,
    ) -> DiscoverFuture<'a>;
}

/// A duration in milliseconds, shortened for a table cell.
pub fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0} s", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1} s", v / 1000.0)
    } else {
        format!("{v:.0} ms")
    }
}

impl RateState {
    /// The state in words, in `lang`, and whether it is a problem.
    pub fn describe(&self, lang: Lang) -> (String, bool) {
        if self.breaker_open {
            return (lang.t("ov.rate_open").to_owned(), true);
        }
        match (self.tokens, self.burst) {
            (Some(t), Some(_)) if t < 0.0 => (lang.t("ov.rate_waiting").to_owned(), true),
            (Some(t), Some(b)) => (
                format!("{} {:.0}/{:.0}", lang.t("ov.rate_ok"), t.floor(), b),
                false,
            ),
            _ => (lang.t("ov.rate_idle").to_owned(), false),
        }
    }
}

/// The host of an `https://host[:port]/…` URL (what the gateway's buckets are keyed by).
pub fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_states_read_plainly() {
        assert_eq!(
            url_host("https://Open-API.tiktokglobalshop.com/x"),
            "open-api.tiktokglobalshop.com"
        );
        assert_eq!(url_host("https://127.0.0.1:9"), "127.0.0.1:9");
        let ok = RateState {
            tokens: Some(4.6),
            burst: Some(5.0),
            breaker_open: false,
        };
        assert_eq!(ok.describe(Lang::En), ("tokens 4/5".to_owned(), false));
        let wait = RateState {
            tokens: Some(-2.0),
            ..ok
        };
        assert!(wait.describe(Lang::En).1);
        let open = RateState {
            breaker_open: true,
            ..ok
        };
        assert!(open.describe(Lang::Zh).1);
        assert_eq!(ms(12.4), "12 ms");
        assert_eq!(ms(2500.0), "2.5 s");
    }
}
