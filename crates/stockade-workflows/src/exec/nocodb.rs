//! `nocodb.list`, `nocodb.insert`, `nocodb.update`, `nocodb.delete`: NocoDB's v2 data API
//! (`/api/v2/tables/{tableId}/records`) through the egress gateway, with an API token
//! from the credential store sent as `xc-token`.
//!
//! # Rules
//! - **Hosts and credentials** as for `http.request` (`exec/http.rs`): `https://` only,
//!   the URL's host in `permissions.hosts` (checked before anything is read or sent), the
//!   credential in `permissions.credentials` and scoped to the workflow and the host. The
//!   token is decrypted only here, sent as the sensitive header `xc-token`, and never put
//!   into an output, an error or a log (an error text from NocoDB is cut, scrubbed, and
//!   has the token replaced should NocoDB ever echo it).
//! - **At most [`MAX_ROWS`] rows per step** for insert, update and delete: a larger call
//!   is refused before anything is sent, telling the author to split it with `for_each`.
//!   The step is not chunked on purpose: NocoDB has no idempotent insert, so a chunked
//!   insert retried after a crash or a lost answer would send again the chunks that had
//!   already succeeded and duplicate their rows. One request per step keeps the durable
//!   executor's guarantee: each batch of a `for_each` is its own journaled step, so after
//!   a crash only the batch in flight is sent again. (That batch may still be inserted
//!   twice if NocoDB stored it but its answer was lost; the docs say how to guard.)
//!   Updates (by `Id`) and deletes repeat harmlessly. `nocodb.list` reads one page of at
//!   most [`LIST_MAX`] rows (NocoDB's own maximum); page with `offset`.
//! - **Rate limit.** NocoDB allows about 5 requests/s per user. Every request takes a
//!   token from the gateway's bucket for [`OPERATION`], partitioned by (host, credential
//!   name): [`RATE_PER_SEC`] per second, no burst, shared by every execution of the
//!   process. A 429 that survives the gateway's own retries pauses that partition for the
//!   time NocoDB asks (`Retry-After`, else NocoDB's documented 30 s) for every execution,
//!   and the step waits and sends again while its waits total at most
//!   [`MAX_RATE_WAIT`] (the step's `timeout`, enforced by the executor, cuts it shorter).
//!   Past that the step fails `transient` with status 429, so its `retry` policy applies.
//! - **Errors.** NocoDB's `{error, message}` / `{msg}` bodies become step errors: 401/403
//!   "the API token in credential X was refused", 404 "table … not found" (or NocoDB's
//!   message for a missing record), 422 over the payload limit, other 4xx `http`
//!   (permanent), 429 and 5xx `transient`.
//! - **Idempotency.** Every request carries `Idempotency-Key: <execution>/<step path>`
//!   (the same on every attempt); NocoDB ignores it, a proxy in front of it may not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockade_core::SecretString;
use stockade_egress::{Caller, EgressError, Gateway, Method, Request, Response};
use stockade_vault::Vault;

use super::error::{ErrorClass, StepError};
use super::handlers::{StepCtx, StepDone, StepFuture, StepHandler};
use super::http::{BODY_MAX, url_host};
use crate::expr::Evaluated;

/// The most rows one insert, update or delete step sends (NocoDB's payload limit).
pub const MAX_ROWS: usize = 100;
/// The largest `limit` of `nocodb.list` (NocoDB's `DB_QUERY_LIMIT_MAX`).
pub const LIST_MAX: u64 = 1000;
/// Requests per second per (host, credential), below NocoDB's 5.
pub const RATE_PER_SEC: f64 = 4.0;
/// The wait after a 429 without `Retry-After` (NocoDB's documented 30 s).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The most a step waits in total for NocoDB's rate limit before failing `transient`.
pub const MAX_RATE_WAIT: Duration = Duration::from_secs(60);
/// The gateway operation (and rate bucket) of every NocoDB request.
pub const OPERATION: &str = "workflow.nocodb";
/// The longest NocoDB error text kept in a step error, in characters.
const MESSAGE_KEEP: usize = 200;

/// Which of the four steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NocoOp {
    List,
    Insert,
    Update,
    Delete,
}

impl NocoOp {
    /// The step kind (`nocodb.list` …).
    pub fn kind(self) -> &'static str {
        match self {
            NocoOp::List => "nocodb.list",
            NocoOp::Insert => "nocodb.insert",
            NocoOp::Update => "nocodb.update",
            NocoOp::Delete => "nocodb.delete",
        }
    }

    fn method(self) -> Method {
        match self {
            NocoOp::List => Method::GET,
            NocoOp::Insert => Method::POST,
            NocoOp::Update => Method::PATCH,
            NocoOp::Delete => Method::DELETE,
        }
    }
}

/// A NocoDB step handler: the process's gateway and vault.
pub struct NocoDb {
    egress: Gateway,
    vault: Arc<Vault>,
    op: NocoOp,
}

impl std::fmt::Debug for NocoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NocoDb({})", self.op.kind())
    }
}

impl NocoDb {
    /// The handler for `op`; defines the gateway's NocoDB rate bucket.
    pub fn new(egress: Gateway, vault: Arc<Vault>, op: NocoOp) -> Self {
        egress.define_limit(OPERATION, RATE_PER_SEC, 1);
        NocoDb { egress, vault, op }
    }

    fn err(&self, class: ErrorClass, message: impl std::fmt::Display) -> StepError {
        StepError::new(class, format!("{}: {message}", self.op.kind()))
    }
}

/// What one step sends, checked before the credential is read.
#[derive(Debug)]
struct Call {
    url: String,
    host: String,
    authority: String,
    credential: String,
    body: Option<Value>,
}

fn text_param<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str).map(str::trim)
}

/// `a,b` from a string or an array of strings (`sort`, `fields`).
fn list_param(value: &Value, key: &str) -> Result<Option<String>, String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => out.push(s.trim().to_owned()),
                    _ => return Err(format!("`{key}` is a string or a list of strings")),
                }
            }
            Ok(Some(out.join(",")).filter(|s| !s.is_empty()))
        }
        Some(_) => Err(format!("`{key}` is a string or a list of strings")),
    }
}

fn number_param(value: &Value, key: &str, max: u64) -> Result<Option<u64>, String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(format!("`{key}` is a whole number from 0 to {max}")),
        },
    }
}

/// Percent-encode a query value (everything but RFC 3986's unreserved characters).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An `Id` as NocoDB takes it: a whole number or a non-empty string.
fn row_id(v: &Value) -> Option<Value> {
    match v {
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(v.clone()),
        Value::String(s) if !s.trim().is_empty() => Some(v.clone()),
        _ => None,
    }
}

/// The request body of a write step, or why it is refused.
fn write_body(op: NocoOp, value: &Value) -> Result<Value, String> {
    let (key, what) = match op {
        NocoOp::Delete => ("ids", "ids"),
        _ => ("rows", "rows"),
    };
    let items = match value.get(key) {
        Some(Value::Array(items)) => items,
        _ => return Err(format!("`{key}` is a list")),
    };
    if items.len() > MAX_ROWS {
        return Err(format!(
            "{} {what} given, but at most {MAX_ROWS} go in one request (NocoDB's payload limit); \
             split them with for_each over batches of at most {MAX_ROWS} (nothing was sent)",
            items.len()
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match op {
            NocoOp::Delete => match row_id(item) {
                Some(id) => out.push(json!({ "Id": id })),
                None => return Err(format!("ids[{i}] is not a row Id (a number or a string)")),
            },
            _ => {
                let Value::Object(map) = item else {
                    return Err(format!("rows[{i}] is not a mapping of column to value"));
                };
                if op == NocoOp::Update && map.get("Id").and_then(row_id).is_none() {
                    return Err(format!("rows[{i}] has no `Id` (update works by Id)"));
                }
                out.push(item.clone());
            }
        }
    }
    Ok(Value::Array(out))
}

/// The list query string (`?where=…&sort=…`), or why it is refused.
fn list_query(value: &Value) -> Result<String, String> {
    let mut pairs = Vec::new();
    if let Some(w) = value.get("where") {
        match w {
            Value::Null => {}
            Value::String(s) if s.trim().is_empty() => {}
            Value::String(s) => pairs.push(("where", s.trim().to_owned())),
            _ => return Err("`where` is a string such as (status,eq,paid)".into()),
        }
    }
    for key in ["sort", "fields"] {
        if let Some(v) = list_param(value, key)? {
            pairs.push((key, v));
        }
    }
    if let Some(n) = number_param(value, "limit", LIST_MAX)? {
        pairs.push(("limit", n.max(1).to_string()));
    }
    if let Some(n) = number_param(value, "offset", u64::from(u32::MAX))? {
        pairs.push(("offset", n.to_string()));
    }
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    Ok(if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    })
}

impl NocoDb {
    /// The step's request, checked (nothing read or sent yet).
    fn call(&self, ctx: &StepCtx<'_>, value: &Value) -> Result<Call, StepError> {
        let invalid = |m: String| self.err(ErrorClass::Invalid, m);
        let base = text_param(value, "url")
            .ok_or_else(|| invalid("needs `url` (the NocoDB base URL, a string)".into()))?;
        if !base.starts_with("https://") {
            return Err(invalid("the URL must start with https://".into()));
        }
        if base.contains(['?', '#']) {
            return Err(invalid(
                "`url` is NocoDB's base URL, without a query".into(),
            ));
        }
        let (host, authority) = url_host(base)
            .map_err(|e| invalid(e.message.trim_start_matches("http.request: ").to_owned()))?;
        if !ctx
            .permissions
            .hosts
            .iter()
            .any(|h| h.value.eq_ignore_ascii_case(&host))
        {
            return Err(self.err(
                ErrorClass::Permission,
                format_args!("host {host} is not in permissions.hosts; nothing was sent"),
            ));
        }
        let table = text_param(value, "table").unwrap_or("");
        if table.is_empty()
            || table.len() > 64
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(invalid(
                "`table` is a NocoDB table id such as m1abc2def3 (letters, digits, _)".into(),
            ));
        }
        let credential = text_param(value, "credential")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| invalid("needs `credential` (the name of the API token)".into()))?
            .to_owned();
        let mut url = format!(
            "{}/api/v2/tables/{table}/records",
            base.trim_end_matches('/')
        );
        let body = match self.op {
            NocoOp::List => {
                url.push_str(&list_query(value).map_err(invalid)?);
                None
            }
            op => Some(write_body(op, value).map_err(invalid)?),
        };
        Ok(Call {
            url,
            host,
            authority,
            credential,
            body,
        })
    }

    /// The API token, after the permission and scope checks.
    async fn token(
        &self,
        ctx: &StepCtx<'_>,
        name: &str,
        host: &str,
    ) -> Result<SecretString, StepError> {
        if !ctx.permissions.credentials.iter().any(|c| c.value == name) {
            return Err(self.err(
                ErrorClass::Permission,
                format_args!("credential {name} is not in permissions.credentials"),
            ));
        }
        let unavailable = || {
            self.err(
                ErrorClass::Transient,
                format_args!("credential {name} could not be read"),
            )
        };
        let info = self
            .vault
            .list_credentials()
            .await
            .map_err(|_| unavailable())?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                self.err(
                    ErrorClass::Invalid,
                    format_args!(
                        "no credential named {name} (store the API token with `stockade credential set`)"
                    ),
                )
            })?;
        let scoped = |list: &[String], want: &str| list.iter().any(|s| s == want || s == "*");
        if !scoped(&info.scopes.workflows, ctx.workflow) || !scoped(&info.scopes.hosts, host) {
            return Err(self.err(
                ErrorClass::Permission,
                format_args!("credential {name} is not scoped to this workflow and host"),
            ));
        }
        self.vault
            .reveal_credential(name)
            .await
            .map_err(|_| unavailable())
    }
}

// ---- the rate limit's shared pause after a 429 ----

/// Per (host, credential) partition: no request before this instant (set by a 429).
fn pauses() -> &'static Mutex<HashMap<String, Instant>> {
    static PAUSES: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    PAUSES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// How long `partition` is still paused.
fn paused_for(partition: &str) -> Duration {
    let now = Instant::now();
    let mut map = pauses().lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, until| *until > now);
    map.get(partition)
        .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
}

/// Pause `partition` for `wait` (never shortening a longer pause).
fn pause(partition: &str, wait: Duration) {
    let until = Instant::now() + wait;
    let mut map = pauses().lock().unwrap_or_else(|e| e.into_inner());
    let entry = map.entry(partition.to_owned()).or_insert(until);
    if *entry < until {
        *entry = until;
    }
}

/// `Retry-After` in seconds (NocoDB sends delta-seconds), else the documented 30 s.
fn retry_after(resp: &Response) -> Duration {
    resp.headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_RETRY_AFTER, |s| Duration::from_secs(s.min(3600)))
}

// ---- responses ----

/// NocoDB's error body as (code, message): `{error, message}` or `{msg}`; the message cut
/// to [`MESSAGE_KEEP`] characters with the token replaced (the stored text is scrubbed
/// again by the executor).
fn error_body(body: &[u8], token: &SecretString) -> (Option<String>, String) {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = parsed
        .get("error")
        .and_then(Value::as_str)
        .filter(|c| {
            !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
        .map(str::to_owned);
    let message = ["message", "msg"]
        .iter()
        .find_map(|k| parsed.get(*k).and_then(Value::as_str))
        .unwrap_or("");
    let secret = token.expose_secret();
    let mut message = if secret.is_empty() {
        message.to_owned()
    } else {
        message.replace(secret, "[redacted]")
    };
    message = message
        .chars()
        .filter(|c| !c.is_control())
        .take(MESSAGE_KEEP)
        .collect();
    (code, message)
}

impl NocoDb {
    /// The step error a non-2xx answer means.
    fn refusal(&self, resp: &Response, credential: &str, token: &SecretString) -> StepError {
        let status = resp.status.as_u16();
        let (code, message) = error_body(&resp.body, token);
        let said = match (&code, message.is_empty()) {
            (Some(c), false) => format!(" ({c}: {message})"),
            (Some(c), true) => format!(" ({c})"),
            (None, false) => format!(" ({message})"),
            (None, true) => String::new(),
        };
        let (class, text) = match status {
            401 | 403 => (
                ErrorClass::Http,
                format!(
                    "the API token in credential {credential} was refused (HTTP {status}){said}"
                ),
            ),
            404 if code.as_deref() == Some("ERR_TABLE_NOT_FOUND") || code.is_none() => (
                ErrorClass::Http,
                format!("the table was not found (HTTP 404){said}; check `table` (a table id)"),
            ),
            422 if code.as_deref() == Some("ERR_MAX_PAYLOAD_LIMIT_EXCEEDED") => (
                ErrorClass::Http,
                format!(
                    "NocoDB refused the request as over its payload limit (HTTP 422){said}; send at most {MAX_ROWS} rows per step"
                ),
            ),
            429 => (
                ErrorClass::Transient,
                format!(
                    "NocoDB's rate limit still answered 429 after waiting up to {} s{said}",
                    MAX_RATE_WAIT.as_secs()
                ),
            ),
            s if s >= 500 => (
                ErrorClass::Transient,
                format!("NocoDB answered HTTP {status}{said}"),
            ),
            _ => (
                ErrorClass::Http,
                format!("NocoDB refused the request (HTTP {status}){said}"),
            ),
        };
        let mut e = self.err(class, text);
        e.status = Some(status);
        e
    }

    /// The step's output from a 2xx answer.
    fn output(&self, resp: &Response) -> Result<Value, StepError> {
        if resp.body.len() > BODY_MAX {
            return Err(self.err(
                ErrorClass::Invalid,
                format_args!("the answer is over {BODY_MAX} bytes; ask for fewer rows or `fields`"),
            ));
        }
        let body: Value = serde_json::from_slice(&resp.body)
            .map_err(|_| self.err(ErrorClass::Transient, "NocoDB's answer was not JSON"))?;
        let count_of = |v: &Value| match v {
            Value::Array(items) => Some(items.len() as u64),
            Value::Number(n) => n.as_u64(),
            Value::Object(m) => m.get("count").and_then(Value::as_u64),
            _ => None,
        };
        let shape = || {
            self.err(
                ErrorClass::Transient,
                "NocoDB's answer has an unexpected shape",
            )
        };
        Ok(match self.op {
            NocoOp::List => {
                let rows = body
                    .get("list")
                    .filter(|l| l.is_array())
                    .ok_or_else(shape)?;
                let page = body.get("pageInfo").cloned().unwrap_or_else(|| json!({}));
                json!({ "rows": rows, "page_info": page })
            }
            NocoOp::Insert => {
                let Value::Array(items) = &body else {
                    return Err(shape());
                };
                let ids: Vec<Value> = items
                    .iter()
                    .map(|i| {
                        i.get("Id")
                            .or_else(|| i.get("id"))
                            .cloned()
                            .unwrap_or(Value::Null)
                    })
                    .collect();
                json!({ "ids": ids, "count": ids.len() })
            }
            NocoOp::Update | NocoOp::Delete => {
                json!({ "count": count_of(&body).ok_or_else(shape)? })
            }
        })
    }

    /// Send `req` under the rate limit, waiting out 429s within [`MAX_RATE_WAIT`].
    async fn send(
        &self,
        ctx: &StepCtx<'_>,
        call: &Call,
        req: Request,
        token: &SecretString,
    ) -> Result<Response, StepError> {
        let mut allowed = vec![call.host.clone()];
        if call.authority.contains(':') {
            allowed.push(call.authority.clone());
        }
        let refs: Vec<&str> = allowed.iter().map(String::as_str).collect();
        let client = self
            .egress
            .client(Caller::Workflow(ctx.workflow.to_owned()), &refs);
        let partition = format!("{}|{}", call.authority, call.credential);
        let mut waited = Duration::ZERO;
        loop {
            let wait = paused_for(&partition);
            if !wait.is_zero() {
                if waited + wait > MAX_RATE_WAIT {
                    let mut e = self.err(
                        ErrorClass::Transient,
                        format_args!(
                            "NocoDB's rate limit asks to wait {} s more, over the step's {} s",
                            wait.as_secs(),
                            MAX_RATE_WAIT.as_secs()
                        ),
                    );
                    e.status = Some(429);
                    return Err(e);
                }
                waited += wait;
                tokio::time::sleep(wait).await;
            }
            let resp = client
                .send(req.clone().partition(partition.clone()))
                .await
                .map_err(|e| self.egress_error(&e))?;
            if resp.status.as_u16() != 429 {
                return Ok(resp);
            }
            let after = retry_after(&resp);
            pause(&partition, after);
            if waited + after > MAX_RATE_WAIT {
                return Err(self.refusal(&resp, &call.credential, token));
            }
        }
    }

    fn egress_error(&self, e: &EgressError) -> StepError {
        let class = match e {
            EgressError::Blocked { .. } => ErrorClass::Permission,
            EgressError::Timeout => ErrorClass::Timeout,
            EgressError::Connect(_)
            | EgressError::CircuitOpen { .. }
            | EgressError::Store(_)
            | EgressError::Contained(_) => ErrorClass::Transient,
            _ => ErrorClass::Invalid,
        };
        self.err(class, e)
    }
}

impl StepHandler for NocoDb {
    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            // Rows and filters are sent out: buyer data needs the step's reviewed
            // allow_pii (all four kinds are PII sinks in the step table, as for lint).
            let value = params
                .for_sink(ctx.allow_pii)
                .map_err(|e| self.err(ErrorClass::Permission, e.0))?;
            let call = self.call(ctx, value)?;
            if let Some(Value::Array(items)) = &call.body
                && items.is_empty()
            {
                let output = match self.op {
                    NocoOp::Insert => json!({ "ids": [], "count": 0 }),
                    _ => json!({ "count": 0 }),
                };
                return Ok(StepDone {
                    output,
                    changes: vec![],
                });
            }
            let token = self.token(ctx, &call.credential, &call.host).await?;
            let mut req = Request::new(
                self.op.method(),
                call.url.clone(),
                "/api/v2/tables/{tableId}/records",
                OPERATION,
            )
            .header("idempotency-key", ctx.idempotency_key)
            .secret_header_named("xc-token", &token)
            .expect_json(true);
            if let Some(body) = &call.body {
                req = req.json(body);
            }
            let resp = self.send(ctx, &call, req, &token).await?;
            if !resp.status.is_success() {
                return Err(self.refusal(&resp, &call.credential, &token));
            }
            Ok(StepDone {
                output: self.output(&resp)?,
                changes: vec![],
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_are_encoded_and_bounded() {
        let q = list_query(&json!({
            "where": "(status,eq,paid)~and(qty,gt,2)",
            "sort": ["-qty", "sku"],
            "fields": "sku,qty",
            "limit": 50,
            "offset": 100
        }))
        .unwrap();
        assert_eq!(
            q,
            "?where=%28status%2Ceq%2Cpaid%29~and%28qty%2Cgt%2C2%29&sort=-qty%2Csku&fields=sku%2Cqty&limit=50&offset=100"
        );
        assert_eq!(list_query(&json!({})).unwrap(), "");
        assert!(list_query(&json!({"limit": 1001})).is_err());
        assert!(list_query(&json!({"where": 3})).is_err());
    }

    #[test]
    fn write_bodies_are_checked_and_capped() {
        let rows: Vec<Value> = (0..101).map(|i| json!({"n": i})).collect();
        let e = write_body(NocoOp::Insert, &json!({ "rows": rows })).unwrap_err();
        assert!(e.contains("101 rows") && e.contains("for_each"), "{e}");
        assert!(write_body(NocoOp::Update, &json!({"rows": [{"n": 1}]})).is_err());
        assert_eq!(
            write_body(NocoOp::Delete, &json!({"ids": [1, "2"]})).unwrap(),
            json!([{"Id": 1}, {"Id": "2"}])
        );
        assert!(write_body(NocoOp::Delete, &json!({"ids": [null]})).is_err());
    }

    #[test]
    fn error_bodies_lose_the_token() {
        let token = SecretString::from("abc123tokenvalue".to_owned());
        let (code, msg) = error_body(
            br#"{"error":"ERR_AUTHENTICATION_REQUIRED","message":"bad abc123tokenvalue"}"#,
            &token,
        );
        assert_eq!(code.as_deref(), Some("ERR_AUTHENTICATION_REQUIRED"));
        assert_eq!(msg, "bad [redacted]");
        let (code, msg) = error_body(br#"{"msg":"Invalid token"}"#, &token);
        assert_eq!((code, msg.as_str()), (None, "Invalid token"));
    }

    #[test]
    fn retry_after_defaults_to_nocodbs_30_seconds() {
        let mut resp = Response {
            status: stockade_egress::StatusCode::TOO_MANY_REQUESTS,
            headers: stockade_egress::HeaderMap::new(),
            body: vec![],
            attempts: 1,
        };
        assert_eq!(retry_after(&resp), DEFAULT_RETRY_AFTER);
        resp.headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&resp), Duration::from_secs(7));
        resp.headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&resp), DEFAULT_RETRY_AFTER);
    }

    #[test]
    fn a_429_pause_is_shared_and_never_shortened() {
        let key = "pause-test.example|cred";
        pause(key, Duration::from_secs(5));
        pause(key, Duration::from_secs(1));
        let left = paused_for(key);
        assert!(left > Duration::from_secs(4) && left <= Duration::from_secs(5));
    }
}
