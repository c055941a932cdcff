//! `Server-Timing: app;dur=<ms>` on every response: the time from the request entering
//! the outermost layer to its response's headers (the whole gate, the handler, the
//! database and the template). `stockade bench console` reads it to report server time
//! per page without counting the network or the client. It is a duration only, never
//! anything about the request or the caller.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The header's name.
pub const HEADER: &str = "server-timing";

/// The layer: wraps everything else (added last in [`crate::routes::router`]).
pub async fn server_timing(req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let mut res = next.run(req).await;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.3}")) {
        res.headers_mut().insert(HEADER, v);
    }
    res
}

/// The `dur` of an `app` entry in a `Server-Timing` value, in milliseconds.
pub fn parse(value: &str) -> Option<f64> {
    value
        .split(',')
        .map(str::trim)
        .find(|m| m.starts_with("app;") || *m == "app")?
        .split(';')
        .find_map(|p| p.trim().strip_prefix("dur="))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_its_own_header() {
        assert_eq!(super::parse("app;dur=1.250"), Some(1.25));
        assert_eq!(super::parse("db;dur=3, app;dur=0.5"), Some(0.5));
        assert_eq!(super::parse("db;dur=3"), None);
    }
}
