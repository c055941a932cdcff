//! `http.request`: an HTTPS request through the egress gateway to a host the workflow
//! declares in `permissions.hosts`, with a credential injected by name.
//!
//! # Rules
//! - **Hosts.** The URL's host must be in `permissions.hosts` (checked here, before
//!   anything is resolved or sent: a refusal is a `permission` error), and the gateway
//!   checks it again against the same list and the environment's egress allowlist.
//! - **Credentials.** `credential` names an entry of the vault's credential store; it
//!   must be in `permissions.credentials` and the credential's own scopes must name this
//!   workflow and the host (default deny). The secret is decrypted only here, put into
//!   `credential_header` as a sensitive header value (default `Authorization`, where a
//!   bare token is sent as `Bearer <token>`; `Name: Scheme` sends `Scheme <token>`), and
//!   dropped after the send. It never reaches the step's parameters, output, journal,
//!   errors or logs; headers in `headers` may not name the credential header.
//! - **Idempotency.** Every attempt sends `Idempotency-Key: <execution>/<step path>`,
//!   the same after a retry or a crash, so a receiver can recognise a repeat.
//! - **Outcome.** 2xx and 3xx (redirects are not followed) succeed with
//!   `{status, headers, body}`: the selected response headers ([`KEPT_HEADERS`]) and the
//!   body parsed as JSON when it is JSON, else text; a body over [`BODY_MAX`] bytes fails
//!   the step. 429 and 5xx are `transient` (retried by the step's `retry`), other 4xx are
//!   `http` (permanent unless `retry.on: always`); the status is on the error and so in
//!   the error event. Gateway failures map to `transient` (unreachable, paused host),
//!   `timeout`, `permission` (blocked) or `invalid` (not https, bad TLS).

use std::sync::Arc;

use serde_json::{Map, Value, json};
use stockade_core::SecretString;
use stockade_egress::{Caller, EgressError, Gateway, Method, Request};
use stockade_vault::Vault;

use super::error::{ErrorClass, StepError};
use super::handlers::{StepCtx, StepDone, StepFuture, StepHandler};
use crate::expr::Evaluated;

/// The largest response body a step keeps (it becomes the step's journaled output).
pub const BODY_MAX: usize = 256 * 1024;

/// Response headers copied into the output; the others (cookies, tokens) are dropped.
pub const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "location",
    "retry-after",
    "etag",
    "x-request-id",
];

/// Request headers a workflow may not set itself.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "idempotency-key",
    "transfer-encoding",
    "connection",
];

/// The `http.request` handler: the process's gateway and vault.
pub struct HttpRequest {
    pub egress: Gateway,
    pub vault: Arc<Vault>,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpRequest")
    }
}

fn invalid(message: impl Into<String>) -> StepError {
    StepError::new(ErrorClass::Invalid, message)
}

fn permission(message: impl Into<String>) -> StepError {
    StepError::new(ErrorClass::Permission, message)
}

/// The host (lower case) and authority (`host[:port]`) of an `https://` URL.
pub(crate) fn url_host(url: &str) -> Result<(String, String), StepError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| invalid("http.request: the URL must start with https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') || authority.starts_with('[') {
        return Err(invalid(
            "http.request: a URL with user info or an IP v6 literal is not accepted",
        ));
    }
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(invalid("http.request: the URL names no host"));
    }
    Ok((host, authority.to_ascii_lowercase()))
}

fn method(value: &Value) -> Result<Method, StepError> {
    let text = match value.get("method") {
        None | Some(Value::Null) => "GET",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(invalid("http.request: `method` is a string")),
    };
    match text.to_ascii_uppercase().as_str() {
        "GET" => Ok(Method::GET),
        "POST" => Ok(Method::POST),
        "PUT" => Ok(Method::PUT),
        "PATCH" => Ok(Method::PATCH),
        "DELETE" => Ok(Method::DELETE),
        "HEAD" => Ok(Method::HEAD),
        _ => Err(invalid(
            "http.request: `method` is one of GET, POST, PUT, PATCH, DELETE, HEAD",
        )),
    }
}

/// `credential_header`: the header name and the scheme put before the secret.
fn credential_header(value: &Value) -> Result<(String, Option<String>), StepError> {
    let text = match value.get("credential_header") {
        None | Some(Value::Null) => "Authorization",
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(invalid("http.request: `credential_header` is a string")),
    };
    let (name, scheme) = match text.split_once(':') {
        Some((n, s)) => (
            n.trim(),
            Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        ),
        None => (text, None),
    };
    let scheme = match (name.eq_ignore_ascii_case("authorization"), scheme) {
        (_, Some(s)) => Some(s),
        (true, None) => Some("Bearer".to_owned()),
        (false, None) => None,
    };
    Ok((name.to_ascii_lowercase(), scheme))
}

impl HttpRequest {
    /// The credential's secret as the header value to send, after the permission and
    /// scope checks.
    async fn secret(
        &self,
        ctx: &StepCtx<'_>,
        name: &str,
        host: &str,
        scheme: Option<&str>,
    ) -> Result<SecretString, StepError> {
        if !ctx.permissions.credentials.iter().any(|c| c.value == name) {
            return Err(permission(format!(
                "http.request: credential {name} is not in permissions.credentials"
            )));
        }
        let unavailable = || {
            StepError::new(
                ErrorClass::Transient,
                format!("http.request: credential {name} could not be read"),
            )
        };
        let info = self
            .vault
            .list_credentials()
            .await
            .map_err(|_| unavailable())?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| invalid(format!("http.request: no credential named {name}")))?;
        let scoped = |list: &[String], want: &str| list.iter().any(|s| s == want || s == "*");
        if !scoped(&info.scopes.workflows, ctx.workflow) || !scoped(&info.scopes.hosts, host) {
            return Err(permission(format!(
                "http.request: credential {name} is not scoped to this workflow and host"
            )));
        }
        let secret = self
            .vault
            .reveal_credential(name)
            .await
            .map_err(|_| unavailable())?;
        Ok(match scheme {
            Some(s) if !secret.expose_secret().contains(' ') => {
                SecretString::from(format!("{s} {}", secret.expose_secret()))
            }
            _ => secret,
        })
    }

    /// The request to send, credential included.
    async fn build(
        &self,
        ctx: &StepCtx<'_>,
        value: &Value,
    ) -> Result<(Request, String), StepError> {
        let url = match value.get("url") {
            Some(Value::String(s)) => s.trim().to_owned(),
            _ => return Err(invalid("http.request needs `url` (a string)")),
        };
        let (host, authority) = url_host(&url)?;
        if !ctx
            .permissions
            .hosts
            .iter()
            .any(|h| h.value.eq_ignore_ascii_case(&host))
        {
            return Err(permission(format!(
                "http.request: host {host} is not in permissions.hosts; nothing was sent"
            )));
        }
        let (cred_name, scheme) = credential_header(value)?;
        let mut req = Request::new(method(value)?, url, "/workflow", "workflow.http_request")
            .header("idempotency-key", ctx.idempotency_key)
            .partition(ctx.workflow);
        match value.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    let lower = k.to_ascii_lowercase();
                    if RESERVED.contains(&lower.as_str()) || lower == cred_name {
                        return Err(invalid(format!(
                            "http.request: header {k} is set by Stockade"
                        )));
                    }
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    req = req.header_named(&lower, text);
                }
            }
            Some(_) => return Err(invalid("http.request: `headers` is a mapping")),
        }
        match value.get("body") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                req = req.body(s.clone().into_bytes(), "text/plain; charset=utf-8")
            }
            Some(other) => req = req.json(other),
        }
        if let Some(Value::String(name)) = value.get("credential") {
            let secret = self.secret(ctx, name, &host, scheme.as_deref()).await?;
            req = req.secret_header_named(&cred_name, &secret);
        }
        Ok((req, authority))
    }
}

fn from_egress(e: &EgressError) -> StepError {
    let class = match e {
        EgressError::Blocked { .. } => ErrorClass::Permission,
        EgressError::Timeout => ErrorClass::Timeout,
        EgressError::Connect(_)
        | EgressError::CircuitOpen { .. }
        | EgressError::Store(_)
        | EgressError::Contained(_) => ErrorClass::Transient,
        _ => ErrorClass::Invalid,
    };
    StepError::new(class, format!("http.request: {e}"))
}

/// The step's output from a response (or the error its status means).
fn output(resp: &stockade_egress::Response) -> Result<Value, StepError> {
    let status = resp.status.as_u16();
    if status == 429 || status >= 500 || (400..500).contains(&status) {
        let class = if status == 429 || status >= 500 {
            ErrorClass::Transient
        } else {
            ErrorClass::Http
        };
        let mut e = StepError::new(
            class,
            format!("http.request: the server answered HTTP {status}"),
        );
        e.status = Some(status);
        return Err(e);
    }
    if resp.body.len() > BODY_MAX {
        return Err(invalid(format!(
            "http.request: the response body is over {BODY_MAX} bytes"
        )));
    }
    let mut headers = Map::new();
    for name in KEPT_HEADERS {
        if let Some(v) = resp.headers.get(*name).and_then(|v| v.to_str().ok()) {
            headers.insert((*name).to_owned(), json!(v));
        }
    }
    let body = if resp.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&resp.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&resp.body).into_owned()))
    };
    Ok(json!({ "status": status, "headers": headers, "body": body }))
}

impl StepHandler for HttpRequest {
    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            // Data sent out: buyer data needs the step's reviewed allow_pii.
            let value = params
                .for_sink(ctx.allow_pii)
                .map_err(|e| permission(e.0))?;
            let (req, authority) = self.build(ctx, value).await?;
            let mut allowed: Vec<String> = ctx
                .permissions
                .hosts
                .iter()
                .map(|h| h.value.to_ascii_lowercase())
                .collect();
            // A declared host on another port than 443 (the URL says which).
            if authority.contains(':') {
                allowed.push(authority);
            }
            let refs: Vec<&str> = allowed.iter().map(String::as_str).collect();
            let client = self
                .egress
                .client(Caller::Workflow(ctx.workflow.to_owned()), &refs);
            let resp = client.send(req).await.map_err(|e| from_egress(&e))?;
            Ok(StepDone {
                output: output(&resp)?,
                changes: vec![],
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_credential_headers_are_read_strictly() {
        assert_eq!(
            url_host("https://Api.Example.com:8443/x?y").unwrap(),
            ("api.example.com".into(), "api.example.com:8443".into())
        );
        assert!(url_host("http://api.example.com/").is_err());
        assert!(url_host("https://user@api.example.com/").is_err());
        assert_eq!(
            credential_header(&json!({})).unwrap(),
            ("authorization".into(), Some("Bearer".into()))
        );
        assert_eq!(
            credential_header(&json!({"credential_header": "X-Api-Key"})).unwrap(),
            ("x-api-key".into(), None)
        );
        assert_eq!(
            credential_header(&json!({"credential_header": "Authorization: Token"})).unwrap(),
            ("authorization".into(), Some("Token".into()))
        );
    }
}
