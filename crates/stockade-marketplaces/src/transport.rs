//! The connectors' single way out: a request description sent through the egress
//! gateway. A trait object so the connectors' logic (pagination, token refresh, feed
//! flow) is unit-tested against a scripted transport.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{HeaderMap, Method};
use stockade_core::SecretString;
use stockade_core::order::Marketplace;

use crate::MarketError;

pub(crate) struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub path_template: &'static str,
    pub operation: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub secret_headers: Vec<(&'static str, SecretString)>,
    pub body: Option<(Vec<u8>, &'static str)>,
    pub partition: Option<String>,
    pub idempotent: Option<bool>,
}

impl HttpRequest {
    pub fn new(
        method: Method,
        url: String,
        path_template: &'static str,
        operation: &'static str,
    ) -> Self {
        HttpRequest {
            method,
            url,
            path_template,
            operation,
            headers: Vec::new(),
            secret_headers: Vec::new(),
            body: None,
            partition: None,
            idempotent: None,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn secret_header(mut self, name: &'static str, value: SecretString) -> Self {
        self.secret_headers.push((name, value));
        self
    }

    pub fn json_bytes(mut self, body: Vec<u8>) -> Self {
        self.body = Some((body, "application/json"));
        self
    }

    pub fn body(mut self, body: Vec<u8>, content_type: &'static str) -> Self {
        self.body = Some((body, content_type));
        self
    }

    /// An `application/x-www-form-urlencoded` body.
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        let mut text = String::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                text.push('&');
            }
            text.push_str(&crate::util::percent_encode(k));
            text.push('=');
            text.push_str(&crate::util::percent_encode(v));
        }
        self.body = Some((text.into_bytes(), "application/x-www-form-urlencoded"));
        self
    }

    pub fn partition(mut self, key: impl Into<String>) -> Self {
        self.partition = Some(key.into());
        self
    }

    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = Some(yes);
        self
    }
}

pub(crate) struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub(crate) type SendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<HttpResponse, MarketError>> + Send + 'a>>;

pub(crate) trait Transport: Send + Sync {
    fn send(&self, marketplace: Marketplace, request: HttpRequest) -> SendFuture<'_>;
    fn take_daily(&self, quota: &'static str, key: &str, limit: u32) -> bool;
    /// Today's count of `quota` for `key` is at least `used` (spent by another process).
    fn seed_daily(&self, quota: &'static str, key: &str, used: u32);
    /// How many of a round's calls to keep in flight when `wanted` would be (the
    /// gateway lowers it while the process is busy storing orders).
    fn round_calls(&self, wanted: usize) -> usize {
        wanted
    }
}

pub(crate) type SharedTransport = Arc<dyn Transport>;
