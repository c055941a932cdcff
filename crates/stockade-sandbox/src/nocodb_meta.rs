//! The NocoDB simulator's meta API v2, the part the audit mirror uses: one base
//! ([`SIM_BASE_ID`], titled [`SIM_BASE_TITLE`]) listed by `GET /api/v2/meta/bases`, its
//! tables (`GET|POST /api/v2/meta/bases/{baseId}/tables`) and a table's columns
//! (`GET /api/v2/meta/tables/{tableId}`), answered like NocoDB 0.301.3: the `xc-token`
//! check, 429s while throttled, 404 for an unknown base or table; system columns (`Id`,
//! `CreatedAt`, …) are listed as NocoDB adds them. Plus test hooks to change a table by
//! hand ([`NocoSim::drop_column`], [`NocoSim::delete_where`], [`NocoSim::edit_where`]).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::nocodb::{NocoRequest, NocoSim, NocoState, Shared, nocodb_error, throttled};

/// The simulator's one base.
pub const SIM_BASE_ID: &str = "psimbase0001";
pub const SIM_BASE_TITLE: &str = "audit";

const SYSTEM_COLUMNS: [(&str, &str); 3] = [
    ("Id", "ID"),
    ("CreatedAt", "CreatedTime"),
    ("UpdatedAt", "LastModifiedTime"),
];

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v2/meta/bases", get(bases))
        .route("/api/v2/meta/bases/{base}/tables", get(tables).post(tables))
        .route("/api/v2/meta/tables/{table}", get(table))
}

/// The token and throttle checks, and the request's record. `None`: go on.
fn gate(
    st: &mut NocoState,
    shared: &Shared,
    method: &Method,
    what: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    let token_ok =
        headers.get("xc-token").and_then(|v| v.to_str().ok()) == Some(shared.token.as_str());
    let refusal = throttled(st).or_else(|| {
        (!token_ok).then(|| {
            nocodb_error(
                StatusCode::UNAUTHORIZED,
                "ERR_AUTHENTICATION_REQUIRED",
                "Authentication required - Invalid token",
            )
        })
    });
    st.requests.push(NocoRequest {
        method: method.to_string(),
        table: what.to_owned(),
        query: String::new(),
        rows: 0,
        idempotency_key: None,
        token_ok,
        status: refusal.as_ref().map_or(200, |r| r.status().as_u16()),
        at: Instant::now(),
    });
    refusal
}

async fn bases(State(shared): State<Arc<Shared>>, method: Method, headers: HeaderMap) -> Response {
    let mut st = shared.lock();
    if let Some(r) = gate(&mut st, &shared, &method, "meta:bases", &headers) {
        return r;
    }
    axum::Json(json!({ "list": [{ "id": SIM_BASE_ID, "title": SIM_BASE_TITLE }], "pageInfo": {} }))
        .into_response()
}

fn columns_json(cols: &[(String, String)]) -> Vec<Value> {
    SYSTEM_COLUMNS
        .iter()
        .map(|(t, u)| json!({ "title": t, "column_name": t, "uidt": u, "system": true }))
        .chain(
            cols.iter()
                .map(|(t, u)| json!({ "title": t, "column_name": t, "uidt": u })),
        )
        .collect()
}

async fn tables(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(base): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = shared.lock();
    if let Some(r) = gate(&mut st, &shared, &method, "meta:tables", &headers) {
        return r;
    }
    if base != SIM_BASE_ID {
        return nocodb_error(
            StatusCode::NOT_FOUND,
            "ERR_BASE_NOT_FOUND",
            &format!("Base '{base}' not found"),
        );
    }
    if method == Method::GET {
        let list: Vec<Value> = st
            .tables
            .iter()
            .map(|(id, t)| json!({ "id": id, "title": t.title, "table_name": t.title }))
            .collect();
        return axum::Json(json!({ "list": list, "pageInfo": {} })).into_response();
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let title = parsed
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if title.is_empty() || st.tables.values().any(|t| t.title == title) {
        return nocodb_error(
            StatusCode::BAD_REQUEST,
            "ERR_DUPLICATE_IN_ALIAS",
            "Duplicate table alias",
        );
    }
    let cols: Vec<(String, String)> = parsed
        .get("columns")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    Some((
                        c.get("title")?.as_str()?.to_owned(),
                        c.get("uidt")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    drop(st);
    let sim_id = NocoSim::add_table_to(&shared, &title);
    let mut st = shared.lock();
    if let Some(t) = st.tables.get_mut(&sim_id) {
        t.columns = cols.clone();
    }
    axum::Json(json!({ "id": sim_id, "title": title, "table_name": title, "columns": columns_json(&cols) })).into_response()
}

async fn table(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(table): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut st = shared.lock();
    if let Some(r) = gate(&mut st, &shared, &method, "meta:table", &headers) {
        return r;
    }
    match st.tables.get(&table) {
        None => nocodb_error(
            StatusCode::NOT_FOUND,
            "ERR_TABLE_NOT_FOUND",
            &format!("Table '{table}' not found"),
        ),
        Some(t) => axum::Json(
            json!({ "id": table, "title": t.title, "columns": columns_json(&t.columns) }),
        )
        .into_response(),
    }
}

impl NocoSim {
    /// The id of the table titled `title`.
    pub fn table_id(&self, title: &str) -> Option<String> {
        let st = self.shared.lock();
        st.tables
            .iter()
            .find(|(_, t)| t.title == title)
            .map(|(id, _)| id.clone())
    }

    /// Delete a column from a table's meta (its cells stay in the rows, as data).
    pub fn drop_column(&self, table: &str, title: &str) {
        let mut st = self.shared.lock();
        if let Some(t) = st.tables.get_mut(table) {
            t.columns.retain(|(c, _)| c != title);
        }
    }

    /// Delete the rows whose `col` equals `value` (a hand edit in NocoDB's grid).
    pub fn delete_where(&self, table: &str, col: &str, value: &Value) -> usize {
        let mut st = self.shared.lock();
        let Some(t) = st.tables.get_mut(table) else {
            return 0;
        };
        let before = t.rows.len();
        t.rows.retain(|_, r| r.get(col) != Some(value));
        before - t.rows.len()
    }

    /// Set `set` to `to` in the rows whose `col` equals `value`.
    pub fn edit_where(&self, table: &str, (col, value): (&str, &Value), (set, to): (&str, Value)) {
        let mut st = self.shared.lock();
        if let Some(t) = st.tables.get_mut(table) {
            for r in t.rows.values_mut().filter(|r| r.get(col) == Some(value)) {
                r.insert(set.to_owned(), to.clone());
            }
        }
    }
}
