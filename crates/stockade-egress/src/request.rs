//! What a caller sends and gets back.

use std::fmt;
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use stockade_core::SecretString;

use crate::EgressError;

/// An outbound request. The URL (with its query) is sent but never logged: the log and
/// anomalies name the request by its `path_template` and `operation`.
#[derive(Clone)]
pub struct Request {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) path_template: &'static str,
    pub(crate) operation: &'static str,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) idempotent: bool,
    pub(crate) partition: String,
    pub(crate) timeout: Option<Duration>,
    /// A header or body could not be built; `send` refuses the request.
    pub(crate) invalid: bool,
    /// A non-empty 2xx answer must be JSON; anything else is an anomaly.
    pub(crate) expect_json: bool,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path_template", &self.path_template)
            .field("operation", &self.operation)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.as_ref().map_or(0, Vec::len))
            .field("idempotent", &self.idempotent)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// A request for `url`. `path_template` (e.g. `/orders/{orderId}`) and `operation`
    /// (e.g. `getOrder`) name it in the log and select its rate bucket. Idempotent by
    /// default for GET, HEAD, PUT and DELETE.
    pub fn new(
        method: Method,
        url: impl Into<String>,
        path_template: &'static str,
        operation: &'static str,
    ) -> Self {
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        );
        Request {
            method,
            url: url.into(),
            path_template,
            operation,
            headers: HeaderMap::new(),
            body: None,
            idempotent,
            partition: String::new(),
            timeout: None,
            invalid: false,
            expect_json: false,
        }
    }

    pub fn get(
        url: impl Into<String>,
        path_template: &'static str,
        operation: &'static str,
    ) -> Self {
        Self::new(Method::GET, url, path_template, operation)
    }

    pub fn post(
        url: impl Into<String>,
        path_template: &'static str,
        operation: &'static str,
    ) -> Self {
        Self::new(Method::POST, url, path_template, operation)
    }

    pub fn put(
        url: impl Into<String>,
        path_template: &'static str,
        operation: &'static str,
    ) -> Self {
        Self::new(Method::PUT, url, path_template, operation)
    }

    pub fn patch(
        url: impl Into<String>,
        path_template: &'static str,
        operation: &'static str,
    ) -> Self {
        Self::new(Method::PATCH, url, path_template, operation)
    }

    fn set(mut self, name: &str, value: Result<HeaderValue, ()>) -> Self {
        match (HeaderName::from_bytes(name.as_bytes()), value) {
            (Ok(name), Ok(value)) => {
                self.headers.insert(name, value);
            }
            _ => self.invalid = true,
        }
        self
    }

    /// Set a header (replacing one of the same name).
    pub fn header(self, name: &'static str, value: impl Into<String>) -> Self {
        let value = HeaderValue::try_from(value.into()).map_err(|_| ());
        self.set(name, value)
    }

    /// Set a header holding a secret (a token, a signature key): marked sensitive and
    /// never logged.
    pub fn secret_header(self, name: &'static str, value: &SecretString) -> Self {
        let value = HeaderValue::from_str(value.expose_secret())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| ());
        self.set(name, value)
    }

    /// Set a header whose name is only known at run time (a workflow's `headers`).
    pub fn header_named(self, name: &str, value: impl Into<String>) -> Self {
        let value = HeaderValue::try_from(value.into()).map_err(|_| ());
        self.set(name, value)
    }

    /// Set a secret header whose name is only known at run time (a workflow's
    /// `credential_header`): marked sensitive and never logged.
    pub fn secret_header_named(self, name: &str, value: &SecretString) -> Self {
        let value = HeaderValue::from_str(value.expose_secret())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| ());
        self.set(name, value)
    }

    /// A JSON body (`content-type: application/json`).
    pub fn json<T: Serialize>(self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.body(bytes, "application/json"),
            Err(_) => Request {
                invalid: true,
                ..self
            },
        }
    }

    pub fn body(mut self, bytes: Vec<u8>, content_type: &'static str) -> Self {
        self.body = Some(bytes);
        self.set(
            "content-type",
            HeaderValue::from_str(content_type).map_err(|_| ()),
        )
    }

    /// An `application/x-www-form-urlencoded` body.
    pub fn form(self, pairs: &[(&str, &str)]) -> Self {
        let out = stockade_core::codec::form_encode(pairs);
        self.body(out.into_bytes(), "application/x-www-form-urlencoded")
    }

    /// Whether the request may be repeated after a 5xx, a timeout or a connection failure.
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }

    /// The API answers JSON: a non-empty 2xx body that is not JSON (an HTML error page,
    /// a truncated document) is recorded as a `malformed` anomaly. The response is still
    /// returned; the caller reports its own typed error.
    pub fn expect_json(mut self, yes: bool) -> Self {
        self.expect_json = yes;
        self
    }

    /// The rate-bucket partition (a seller or shop id) for this request's operation.
    pub fn partition(mut self, key: impl Into<String>) -> Self {
        self.partition = key.into();
        self
    }

    /// Override the gateway's per-attempt timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    #[cfg(test)]
    pub(crate) fn content_type_is_set(&self) -> bool {
        self.headers.contains_key(CONTENT_TYPE)
    }
}

/// A response, its body read in full (up to the gateway's size limit).
#[derive(Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// How many attempts were made, this one included.
    pub attempts: u32,
}

impl fmt::Debug for Response {
    // Headers may carry cookies or tokens and bodies PII: show only their size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers.len())
            .field("body_len", &self.body.len())
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl Response {
    /// Parse the body as JSON. The error names the status and content type, never the body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, EgressError> {
        serde_json::from_slice(&self.body).map_err(|_| EgressError::NotJson {
            status: self.status.as_u16(),
            content_type: self
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(100).collect())
                .unwrap_or_default(),
        })
    }

    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        let r = Request::post("https://x/", "/", "op").form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "Atzr|a+b/c=d e&f"),
        ]);
        assert_eq!(
            String::from_utf8(r.body.clone().unwrap_or_default()).unwrap_or_default(),
            "grant_type=refresh_token&refresh_token=Atzr%7Ca%2Bb%2Fc%3Dd+e%26f"
        );
        assert!(r.content_type_is_set());
        assert!(!r.idempotent);
        assert!(Request::put("https://x/", "/", "op").idempotent);
    }

    #[test]
    fn bad_headers_make_the_request_invalid_and_secrets_do_not_print() {
        let secret = SecretString::from("tok\nen".to_owned());
        let r = Request::get("https://x/", "/", "op").secret_header("authorization", &secret);
        assert!(r.invalid);
        let secret = SecretString::from("Bearer sekrit-123".to_owned());
        let r = Request::get("https://x/?q=hidden", "/", "op")
            .header("X-Upper", "fine")
            .secret_header("authorization", &secret);
        assert!(!r.invalid);
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("sekrit") && !shown.contains("hidden"),
            "{shown}"
        );
        assert!(
            Request::get("https://x/", "/", "op")
                .header("bad name", "v")
                .invalid
        );
    }

    #[test]
    fn not_json_names_status_and_type_only() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let r = Response {
            status: StatusCode::OK,
            headers,
            body: b"<html>secret page</html>".to_vec(),
            attempts: 1,
        };
        let e = r
            .json::<serde_json::Value>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("200") && e.contains("text/html") && !e.contains("secret"),
            "{e}"
        );
    }
}
