//! The NocoDB client of the mirror: the meta API v2 (bases, tables, columns, create a
//! table) and the records API v2 (highest `seq`, bulk insert, pages by `seq`), through the
//! egress gateway with the API token of a stored credential sent as `xc-token`.
//!
//! Invariants:
//! - Every request takes a token from the gateway's [`OPERATION`] bucket partitioned by
//!   (NocoDB authority, credential): `requests_per_second`, no burst, so the mirror, its
//!   CLI commands and the bench never exceed NocoDB's per-user limit together.
//! - A 429 the gateway's own retries did not absorb becomes [`NocoError::RateLimited`]
//!   with the wait NocoDB asked for (`Retry-After`, else 30 s); callers wait it out.
//! - Errors name the fix and never hold the token (NocoDB's message is cut and has the
//!   token replaced, should NocoDB ever echo it).
//! - Numbers are validated on our side (NocoDB does not validate `Number` on SQLite).

use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use stockade_core::SecretString;
use stockade_egress::{Caller, Egress, EgressError, Gateway, Method, Request, Response};
use stockade_vault::Vault;

use crate::DEFAULT_RETRY_AFTER;
use crate::columns::{self, ColumnProblem};
use crate::config::NocoSinkConfig;

/// The gateway operation (and rate bucket) of every mirror request to NocoDB.
pub const OPERATION: &str = "audit.mirror.nocodb";
/// The largest page NocoDB returns (`DB_QUERY_LIMIT_MAX`).
pub const PAGE_MAX: usize = 1000;
const MESSAGE_KEEP: usize = 200;
/// The most one call waits in total for NocoDB's rate limit before returning the 429.
pub const MAX_RATE_WAIT: Duration = Duration::from_secs(60);

/// What went wrong talking to NocoDB, each with its fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NocoError {
    #[error(
        "no credential named {0}: store the NocoDB API token with `stockade credential set {0} --workflow audit-mirror --host HOST --secret-stdin`"
    )]
    NoCredential(String),
    #[error(
        "credential {name} may not be sent to {host}: store it again with `--host {host}` (its host scope)"
    )]
    CredentialScope { name: String, host: String },
    #[error(
        "NocoDB refused the API token in credential {credential} (HTTP {status}){said}: create an API token of a user with editor (write) access to the base in NocoDB (Team & Settings → API Tokens) and store it with `stockade credential set {credential}`"
    )]
    Auth {
        credential: String,
        status: u16,
        said: String,
    },
    #[error(
        "NocoDB has no base {0:?} the token can see: check audit.mirror.nocodb.base (a base id p… or its title)"
    )]
    UnknownBase(String),
    #[error("NocoDB base {base:?} has no table {table:?}: run `stockade audit mirror init`")]
    UnknownTable { base: String, table: String },
    #[error("the NocoDB table does not match the audit fields ({}): run `stockade audit mirror init` to see what to fix", list(.0))]
    Columns(Vec<ColumnProblem>),
    #[error("NocoDB's rate limit answered 429; waiting {} s as it asked", .0.as_secs())]
    RateLimited(Duration),
    #[error("NocoDB is unreachable ({0}); the mirror retries and catches up")]
    Down(String),
    #[error("NocoDB answered HTTP {status}{said}")]
    Refused { status: u16, said: String },
    #[error("NocoDB's answer had an unexpected shape ({0})")]
    Shape(&'static str),
    #[error("{0}")]
    Local(String),
}

fn list(p: &[ColumnProblem]) -> String {
    p.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl NocoError {
    /// Whether waiting and trying again can fix it (else an operator must act).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            NocoError::RateLimited(_)
                | NocoError::Down(_)
                | NocoError::Shape(_)
                | NocoError::Local(_)
        ) || matches!(self, NocoError::Refused { status, .. } if *status >= 500 || *status == 408)
    }
}

/// A connected client: the table is resolved by [`Noco::open_table`].
#[derive(Debug, Clone)]
pub struct Noco {
    client: Egress,
    cfg: NocoSinkConfig,
    token: SecretString,
    partition: String,
}

impl Noco {
    /// Read the token and set the gateway's bucket. Nothing is sent yet.
    pub async fn connect(
        gateway: &Gateway,
        vault: &Vault,
        cfg: &NocoSinkConfig,
    ) -> Result<Noco, NocoError> {
        let name = &cfg.credential;
        let info = vault
            .list_credentials()
            .await
            .map_err(|e| NocoError::Local(format!("cannot read the credential store: {e}")))?
            .into_iter()
            .find(|c| &c.name == name)
            .ok_or_else(|| NocoError::NoCredential(name.clone()))?;
        let host = cfg.host();
        if !info
            .scopes
            .hosts
            .iter()
            .any(|h| h == "*" || h.eq_ignore_ascii_case(&host))
        {
            return Err(NocoError::CredentialScope {
                name: name.clone(),
                host,
            });
        }
        let token = vault
            .reveal_credential(name)
            .await
            .map_err(|_| NocoError::Local(format!("credential {name} could not be decrypted")))?;
        gateway.define_limit(OPERATION, cfg.requests_per_second, 1);
        let authority = cfg.authority();
        let mut hosts = vec![authority.clone()];
        if !authority.contains(':') {
            hosts.push(format!("{authority}:443"));
        }
        let refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
        Ok(Noco {
            client: gateway.client(Caller::System("audit-mirror"), &refs),
            partition: format!("{authority}|{name}"),
            cfg: cfg.clone(),
            token,
        })
    }

    pub fn config(&self) -> &NocoSinkConfig {
        &self.cfg
    }

    fn request(&self, method: Method, path: String, template: &'static str) -> Request {
        Request::new(
            method,
            format!("{}{path}", self.cfg.base_url),
            template,
            OPERATION,
        )
        .secret_header_named("xc-token", &self.token)
        .partition(self.partition.clone())
        .expect_json(true)
    }

    /// Send and turn a non-2xx answer into its error; the JSON body of a 2xx. A 429 is
    /// waited out (the time NocoDB asks) while the waits total at most [`MAX_RATE_WAIT`].
    async fn send(&self, req: Request) -> Result<Value, NocoError> {
        let mut waited = Duration::ZERO;
        loop {
            let resp = self
                .client
                .send(req.clone())
                .await
                .map_err(|e| egress_error(&e))?;
            if resp.status.is_success() {
                return serde_json::from_slice(&resp.body)
                    .map_err(|_| NocoError::Shape("not JSON"));
            }
            match self.refusal(&resp) {
                NocoError::RateLimited(d) if waited + d <= MAX_RATE_WAIT => {
                    waited += d;
                    tokio::time::sleep(d).await;
                }
                e => return Err(e),
            }
        }
    }

    fn refusal(&self, resp: &Response) -> NocoError {
        let status = resp.status.as_u16();
        let said = said(&resp.body, &self.token);
        match status {
            401 | 403 => NocoError::Auth {
                credential: self.cfg.credential.clone(),
                status,
                said,
            },
            429 => NocoError::RateLimited(retry_after(resp)),
            _ => NocoError::Refused { status, said },
        }
    }

    /// The base's id: `cfg.base` is an id (`p…`) or a title.
    pub async fn base_id(&self) -> Result<String, NocoError> {
        let req = self.request(
            Method::GET,
            "/api/v2/meta/bases".into(),
            "/api/v2/meta/bases",
        );
        let body = self.send(req).await?;
        let want = &self.cfg.base;
        items(&body)?
            .iter()
            .find(|b| str_of(b, "id") == Some(want))
            .or_else(|| {
                items(&body)
                    .ok()?
                    .iter()
                    .find(|b| str_of(b, "title") == Some(want))
            })
            .and_then(|b| str_of(b, "id").map(str::to_owned))
            .ok_or_else(|| NocoError::UnknownBase(want.clone()))
    }

    /// The id of the table titled `cfg.table` in base `base_id`, if there is one.
    pub async fn find_table(&self, base_id: &str) -> Result<Option<String>, NocoError> {
        let req = self.request(
            Method::GET,
            format!("/api/v2/meta/bases/{}/tables", enc(base_id)),
            "/api/v2/meta/bases/{baseId}/tables",
        );
        let body = self.send(req).await?;
        Ok(items(&body)?
            .iter()
            .find(|t| str_of(t, "title") == Some(self.cfg.table.as_str()))
            .and_then(|t| str_of(t, "id").map(str::to_owned)))
    }

    /// A table's columns as (title, uidt).
    pub async fn columns(&self, table_id: &str) -> Result<Vec<(String, String)>, NocoError> {
        let req = self.request(
            Method::GET,
            format!("/api/v2/meta/tables/{}", enc(table_id)),
            "/api/v2/meta/tables/{tableId}",
        );
        let body = self.send(req).await?;
        let cols = body
            .get("columns")
            .and_then(Value::as_array)
            .ok_or(NocoError::Shape("no columns"))?;
        Ok(cols
            .iter()
            .filter_map(|c| {
                Some((
                    str_of(c, "title")?.to_owned(),
                    str_of(c, "uidt")?.to_owned(),
                ))
            })
            .collect())
    }

    /// Create the table with every audit column; its id.
    pub async fn create_table(&self, base_id: &str) -> Result<String, NocoError> {
        let req = self
            .request(
                Method::POST,
                format!("/api/v2/meta/bases/{}/tables", enc(base_id)),
                "/api/v2/meta/bases/{baseId}/tables",
            )
            .json(&columns::create_body(&self.cfg.table));
        let body = self.send(req).await?;
        str_of(&body, "id")
            .map(str::to_owned)
            .ok_or(NocoError::Shape("no table id"))
    }

    /// Resolve the base and table and check its columns: the table id, ready to use.
    pub async fn open_table(&self) -> Result<String, NocoError> {
        let base = self.base_id().await?;
        let table = self
            .find_table(&base)
            .await?
            .ok_or_else(|| NocoError::UnknownTable {
                base: self.cfg.base.clone(),
                table: self.cfg.table.clone(),
            })?;
        let problems = columns::check(&self.columns(&table).await?);
        if !problems.is_empty() {
            return Err(NocoError::Columns(problems));
        }
        Ok(table)
    }

    /// The highest `seq` the table holds (0 when empty).
    pub async fn max_seq(&self, table: &str) -> Result<i64, NocoError> {
        let page = self.records(table, "?sort=-seq&limit=1&fields=seq").await?;
        match page.first() {
            None => Ok(0),
            Some(r) => {
                columns::int_cell(r.get("seq")).ok_or(NocoError::Shape("seq is not a number"))
            }
        }
    }

    /// Up to `limit` records from position `offset` in `seq` order, with the compared
    /// fields (offset paging, so a duplicated `seq` is seen twice).
    pub async fn page(
        &self,
        table: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<serde_json::Map<String, Value>>, NocoError> {
        let q = format!(
            "?sort=seq&limit={}&offset={offset}&fields={}",
            limit.clamp(1, PAGE_MAX),
            enc(&columns::fields()),
        );
        self.records(table, &q).await
    }

    async fn records(
        &self,
        table: &str,
        query: &str,
    ) -> Result<Vec<serde_json::Map<String, Value>>, NocoError> {
        let req = self.request(
            Method::GET,
            format!("/api/v2/tables/{}/records{query}", enc(table)),
            "/api/v2/tables/{tableId}/records",
        );
        let body = self.send(req).await?;
        let list = body
            .get("list")
            .and_then(Value::as_array)
            .ok_or(NocoError::Shape("no list"))?;
        Ok(list.iter().filter_map(|r| r.as_object().cloned()).collect())
    }

    /// Insert `records` (at most 100) in one request.
    pub async fn insert(&self, table: &str, records: &[Value]) -> Result<(), NocoError> {
        let req = self
            .request(
                Method::POST,
                format!("/api/v2/tables/{}/records", enc(table)),
                "/api/v2/tables/{tableId}/records",
            )
            .json(&records);
        let body = self.send(req).await?;
        match body.as_array() {
            Some(ids) if ids.len() == records.len() => Ok(()),
            _ => Err(NocoError::Shape("the insert did not answer one id per row")),
        }
    }
}

fn enc(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn items(body: &Value) -> Result<&Vec<Value>, NocoError> {
    body.get("list")
        .and_then(Value::as_array)
        .ok_or(NocoError::Shape("no list"))
}

fn egress_error(e: &EgressError) -> NocoError {
    match e {
        EgressError::Blocked { .. } | EgressError::NotHttps | EgressError::InvalidUrl => {
            NocoError::Local(e.to_string())
        }
        _ => NocoError::Down(e.to_string()),
    }
}

/// `Retry-After` in seconds (NocoDB sends delta-seconds), else the documented 30 s.
pub fn retry_after(resp: &Response) -> Duration {
    resp.headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_RETRY_AFTER, |s| Duration::from_secs(s.min(3600)))
}

/// ` (CODE: message)` from NocoDB's `{error, message}` / `{msg}`, cut, token replaced.
fn said(body: &[u8], token: &SecretString) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = str_of(&v, "error")
        .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
    let msg = str_of(&v, "message")
        .or_else(|| str_of(&v, "msg"))
        .unwrap_or("");
    let secret = token.expose_secret();
    let msg = if secret.is_empty() {
        msg.to_owned()
    } else {
        msg.replace(secret, "[redacted]")
    };
    let msg: String = msg
        .chars()
        .filter(|c| !c.is_control())
        .take(MESSAGE_KEEP)
        .collect();
    match (code, msg.is_empty()) {
        (Some(c), false) => format!(" ({c}: {msg})"),
        (Some(c), true) => format!(" ({c})"),
        (None, false) => format!(" ({msg})"),
        (None, true) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_text_loses_the_token() {
        let t = SecretString::from("tok123456".to_owned());
        assert_eq!(
            said(br#"{"error":"ERR_X","message":"bad tok123456"}"#, &t),
            " (ERR_X: bad [redacted])"
        );
        assert_eq!(said(b"not json", &t), "");
    }
}
