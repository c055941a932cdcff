//! A small simulator of NocoDB's v2 records API (`/api/v2/tables/{tableId}/records`),
//! served over HTTPS on an ephemeral 127.0.0.1 port behind its own test CA, for the
//! `nocodb.*` workflow steps' tests; and [`TlsProxy`], a loopback TLS terminator that
//! puts the same kind of test certificate in front of a plain-HTTP server (a real NocoDB
//! in the integration test).
//!
//! What it answers like NocoDB 0.301.3 (see `tools/nocodb/README.md`): the `xc-token`
//! check (401 `ERR_AUTHENTICATION_REQUIRED`), unknown tables (404
//! `ERR_TABLE_NOT_FOUND`), more than 100 rows in one write (422
//! `ERR_MAX_PAYLOAD_LIMIT_EXCEEDED`), list with `where` (`(col,op,value)` joined by
//! `~and`; ops eq, neq, gt, ge, gte, lt, le, lte, like), `sort` (`-col` descending),
//! `fields`, `limit` (default 25, max 1000) and `offset` → `{list, pageInfo}` (a `where`
//! that does not parse: 422 `{"msg": "Invalid filter format."}`), bulk
//! insert → `[{Id}]`, bulk update and delete by `Id` → `[{Id}]` (404
//! `ERR_RECORD_NOT_FOUND` for a missing `Id`). [`NocoSim::throttle`] makes the next
//! requests answer 429 like NocoDB's limiter, with or without `Retry-After`. Every request
//! is recorded ([`NocoSim::requests`]) without its token.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::SandboxError;

/// NocoDB's payload limit (`NC_DATA_PAYLOAD_LIMIT`).
pub const NOCO_MAX_ROWS: usize = 100;

/// One request the simulator received (never its token).
#[derive(Debug, Clone)]
pub struct NocoRequest {
    pub method: String,
    pub table: String,
    /// The raw query string.
    pub query: String,
    /// Rows (or ids) in the body.
    pub rows: usize,
    pub idempotency_key: Option<String>,
    /// Whether `xc-token` was the right token.
    pub token_ok: bool,
    pub status: u16,
    pub at: Instant,
}

#[derive(Default)]
pub(crate) struct Table {
    next_id: u64,
    pub(crate) rows: BTreeMap<u64, Map<String, Value>>,
    /// The title and (title, uidt) columns the meta API shows (see `nocodb_meta`).
    pub(crate) title: String,
    pub(crate) columns: Vec<(String, String)>,
}

#[derive(Default)]
pub(crate) struct NocoState {
    pub(crate) tables: BTreeMap<String, Table>,
    pub(crate) requests: Vec<NocoRequest>,
    /// Requests still to answer 429, and the `Retry-After` seconds to send (if any).
    throttle: u32,
    retry_after: Option<u64>,
}

pub(crate) struct Shared {
    pub(crate) token: String,
    state: Mutex<NocoState>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, NocoState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running NocoDB simulator.
pub struct NocoSim {
    /// PEM of the test CA that signed the server's certificate (trust it in clients).
    pub ca_pem: String,
    /// `https://127.0.0.1:PORT`, NocoDB's base URL.
    pub base_url: String,
    pub addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for NocoSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NocoSim")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

fn bind() -> Result<(std::net::TcpListener, SocketAddr), SandboxError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| SandboxError::Bind(e.to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| SandboxError::Bind(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| SandboxError::Bind(e.to_string()))?;
    Ok((listener, addr))
}

impl NocoSim {
    /// Start the simulator accepting `token` as `xc-token` (needs a tokio runtime).
    pub async fn start(token: &str) -> Result<NocoSim, SandboxError> {
        let material = crate::tls::generate()?;
        let (listener, addr) = bind()?;
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            state: Mutex::new(NocoState::default()),
        });
        let app = Router::new()
            .route(
                "/api/v2/tables/{table}/records",
                get(records).post(records).patch(records).delete(records),
            )
            .merge(crate::nocodb_meta::routes())
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"msg": "Not Found"})),
                )
            })
            .with_state(shared.clone());
        let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
            axum_server::tls_rustls::RustlsConfig::from_config(material.server_config),
        );
        let server = axum_server::from_tcp(listener)
            .map_err(|e| SandboxError::Bind(e.to_string()))?
            .acceptor(acceptor)
            .handle(handle.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::warn!("NocoDB simulator stopped: {e}");
            }
        });
        Ok(NocoSim {
            ca_pem: material.ca_pem,
            base_url: format!("https://{addr}"),
            addr,
            shared,
            handle,
            task,
        })
    }

    /// Create an empty table; its id (`m` + 9 characters, like NocoDB's).
    pub fn add_table(&self, title: &str) -> String {
        NocoSim::add_table_to(&self.shared, title)
    }

    pub(crate) fn add_table_to(shared: &Shared, title: &str) -> String {
        let mut st = shared.lock();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in title.bytes().chain((st.tables.len() as u64).to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        let id = format!("m{:09x}", h & 0xf_ffff_ffff);
        st.tables.insert(
            id.clone(),
            Table {
                title: title.to_owned(),
                ..Table::default()
            },
        );
        id
    }

    /// The rows of `table`, by `Id`.
    pub fn rows(&self, table: &str) -> Vec<Value> {
        let st = self.shared.lock();
        st.tables.get(table).map_or_else(Vec::new, |t| {
            t.rows.values().map(|r| Value::Object(r.clone())).collect()
        })
    }

    /// Answer the next `n` requests with 429 (`Retry-After: secs` when given).
    pub fn throttle(&self, n: u32, retry_after_secs: Option<u64>) {
        let mut st = self.shared.lock();
        st.throttle = n;
        st.retry_after = retry_after_secs;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<NocoRequest> {
        self.shared.lock().requests.clone()
    }

    /// Stop the server.
    pub async fn shutdown(self) {
        self.handle.shutdown();
        self.task.abort();
        let _ = self.task.await;
    }
}

pub(crate) fn nocodb_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": code, "message": message })),
    )
        .into_response()
}

async fn records(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(table): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let token_ok = header("xc-token") == Some(shared.token.as_str());
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let rows = match &parsed {
        Value::Array(a) => a.len(),
        Value::Object(_) => 1,
        _ => 0,
    };
    let mut st = shared.lock();
    let resp = answer(&mut st, token_ok, &method, &table, &query, parsed);
    st.requests.push(NocoRequest {
        method: method.to_string(),
        table: table.clone(),
        query: query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&"),
        rows,
        idempotency_key: header("idempotency-key").map(str::to_owned),
        token_ok,
        status: resp.status().as_u16(),
        at: Instant::now(),
    });
    resp
}

/// A 429 while [`NocoSim::throttle`] says so.
pub(crate) fn throttled(st: &mut NocoState) -> Option<Response> {
    if st.throttle == 0 {
        return None;
    }
    st.throttle -= 1;
    let mut resp = nocodb_error(
        StatusCode::TOO_MANY_REQUESTS,
        "ERR_TOO_MANY_REQUESTS",
        "Too many requests. Please wait 30 seconds",
    );
    if let Some(secs) = st.retry_after
        && let Ok(v) = secs.to_string().parse()
    {
        resp.headers_mut().insert("retry-after", v);
    }
    Some(resp)
}

fn answer(
    st: &mut NocoState,
    token_ok: bool,
    method: &Method,
    table: &str,
    query: &BTreeMap<String, String>,
    body: Value,
) -> Response {
    if let Some(resp) = throttled(st) {
        return resp;
    }
    if !token_ok {
        return nocodb_error(
            StatusCode::UNAUTHORIZED,
            "ERR_AUTHENTICATION_REQUIRED",
            "Authentication required - Invalid token",
        );
    }
    let Some(t) = st.tables.get_mut(table) else {
        return nocodb_error(
            StatusCode::NOT_FOUND,
            "ERR_TABLE_NOT_FOUND",
            &format!("Table '{table}' not found"),
        );
    };
    if *method == Method::GET {
        return list(t, query);
    }
    let items = match body {
        Value::Array(a) => a,
        v @ Value::Object(_) => vec![v],
        _ => {
            return nocodb_error(
                StatusCode::BAD_REQUEST,
                "ERR_INVALID_REQUEST_BODY",
                "Invalid request body",
            );
        }
    };
    if items.len() > NOCO_MAX_ROWS {
        return nocodb_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ERR_MAX_PAYLOAD_LIMIT_EXCEEDED",
            "Maximum 100 entities are allowed per request",
        );
    }
    write(t, method, items)
}

fn id_of(item: &Value) -> Option<u64> {
    match item.get("Id")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn write(t: &mut Table, method: &Method, items: Vec<Value>) -> Response {
    let mut ids = Vec::with_capacity(items.len());
    if *method != Method::POST {
        // All or nothing, as NocoDB's bulk update and delete run in one transaction.
        for item in &items {
            match id_of(item) {
                Some(id) if t.rows.contains_key(&id) => ids.push(id),
                _ => {
                    let shown = item.get("Id").map(Value::to_string).unwrap_or_default();
                    return nocodb_error(
                        StatusCode::NOT_FOUND,
                        "ERR_RECORD_NOT_FOUND",
                        &format!("Record '{shown}' not found"),
                    );
                }
            }
        }
    }
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut fields) = item else {
            continue;
        };
        match *method {
            Method::POST => {
                t.next_id += 1;
                let id = t.next_id;
                fields.insert("Id".into(), json!(id));
                t.rows.insert(id, fields);
                ids.push(id);
            }
            Method::PATCH => {
                if let Some(row) = ids.get(i).and_then(|id| t.rows.get_mut(id)) {
                    for (k, v) in fields {
                        if k != "Id" {
                            row.insert(k, v);
                        }
                    }
                }
            }
            _ => {
                if let Some(id) = ids.get(i) {
                    t.rows.remove(id);
                }
            }
        }
    }
    let out: Vec<Value> = ids.iter().map(|id| json!({ "Id": id })).collect();
    (StatusCode::OK, axum::Json(Value::Array(out))).into_response()
}

/// Whether `row` passes one `(col,op,value)` condition.
fn passes(row: &Map<String, Value>, cond: &str) -> bool {
    let inner = cond.trim().trim_start_matches('(').trim_end_matches(')');
    let mut parts = inner.splitn(3, ',');
    let (Some(col), Some(op), value) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let value = value.unwrap_or("");
    let cell = row.get(col.trim()).unwrap_or(&Value::Null);
    let as_text = match cell {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let ord = match (cell.as_f64(), value.parse::<f64>()) {
        (Some(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(as_text.as_str().cmp(value)),
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op.trim() {
        "eq" => ord == Some(Equal),
        "neq" => ord != Some(Equal),
        "gt" => ord == Some(Greater),
        "ge" | "gte" => matches!(ord, Some(Greater | Equal)),
        "lt" => ord == Some(Less),
        "le" | "lte" => matches!(ord, Some(Less | Equal)),
        "like" => as_text
            .to_lowercase()
            .contains(&value.trim_matches('%').to_lowercase()),
        _ => false,
    }
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn list(t: &Table, query: &BTreeMap<String, String>) -> Response {
    let conds: Vec<&str> = query
        .get("where")
        .map(|w| w.split("~and").collect())
        .unwrap_or_default();
    let well_formed = |c: &str| {
        let c = c.trim();
        c.starts_with('(') && c.ends_with(')') && c.matches(',').count() >= 1
    };
    if !conds.iter().all(|c| well_formed(c)) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({ "msg": "Invalid filter format." })),
        )
            .into_response();
    }
    let mut rows: Vec<&Map<String, Value>> = t
        .rows
        .values()
        .filter(|r| conds.iter().all(|c| passes(r, c)))
        .collect();
    if let Some(sort) = query.get("sort") {
        for key in sort.split(',').rev() {
            let (desc, col) = match key.trim().strip_prefix('-') {
                Some(c) => (true, c),
                None => (false, key.trim()),
            };
            rows.sort_by(|a, b| {
                let o = compare(
                    a.get(col).unwrap_or(&Value::Null),
                    b.get(col).unwrap_or(&Value::Null),
                );
                if desc { o.reverse() } else { o }
            });
        }
    }
    let parse = |k: &str, d: usize| query.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let limit = parse("limit", 25).clamp(1, 1000);
    let offset = parse("offset", 0);
    let fields: Option<Vec<&str>> = query
        .get("fields")
        .map(|f| f.split(',').map(str::trim).collect());
    let total = rows.len();
    let page: Vec<Value> = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| match &fields {
            Some(keep) => Value::Object(
                r.iter()
                    .filter(|(k, _)| keep.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            None => Value::Object(r.clone()),
        })
        .collect();
    let body = json!({
        "list": page,
        "pageInfo": {
            "totalRows": total,
            "page": offset / limit + 1,
            "pageSize": limit,
            "isFirstPage": offset == 0,
            "isLastPage": offset + limit >= total,
        }
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
