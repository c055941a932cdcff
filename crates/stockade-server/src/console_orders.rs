//! The console's Orders pages: the list (search by order number, marketplace id or SKU;
//! filter by channel, status and local dates; newest first; paged by cursor), one order
//! (lines, status history, the stock movements it caused, its channel and times) with
//! its buyer fields masked, and the audited reveal of those fields for one answer.
//!
//! Invariants: data comes only from [`crate::orders_data`]. Buyer fields are shown
//! only in the answer to `POST /orders/{id}/reveal` (permission `RevealBuyer`, route
//! table), after its audit row is committed, with `Cache-Control: no-store`; the reveal
//! form is rendered only for roles that hold the permission. A refused reason is shown
//! inline on the order's page (422) and writes nothing. An order whose data key was
//! destroyed or whose buyer data was removed says so; it is never an error.

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use stockade_access::Permission;

use crate::console::{Chrome, day_start, encode};
use crate::error::{AppError, render};
use crate::extract::Caller;
use crate::orders_data::{
    self as data, ChannelChoice, OrderDetail, OrderFilter, OrderRow, RevealOutcome, RevealRefusal,
    make_cursor, parse_cursor,
};
use crate::state::AppState;

type PageResult = Result<Response, AppError>;

/// Orders per page.
pub const PAGE_SIZE: i64 = 50;

#[derive(Debug, Deserialize, Default)]
pub struct OrdersQuery {
    #[serde(default)]
    q: String,
    /// A connection id ("" or 0: every channel).
    #[serde(default)]
    channel: String,
    #[serde(default)]
    status: String,
    /// Local dates (YYYY-MM-DD) in the console's time zone.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    cursor: String,
}

impl OrdersQuery {
    fn filter(&self, tz: chrono_tz::Tz) -> OrderFilter {
        let status = if data::STATUSES.contains(&self.status.as_str()) {
            self.status.clone()
        } else {
            String::new()
        };
        OrderFilter {
            q: self.q.chars().take(200).collect(),
            connection: self.channel.trim().parse().unwrap_or(0).max(0),
            status,
            from_ms: day_start(tz, &self.from, 0).unwrap_or(0),
            to_ms: day_start(tz, &self.to, 1).unwrap_or(i64::MAX),
        }
    }
    fn encoded(&self) -> String {
        format!(
            "q={}&channel={}&status={}&from={}&to={}",
            encode(&self.q),
            encode(&self.channel),
            encode(&self.status),
            encode(&self.from),
            encode(&self.to)
        )
    }
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    c: Chrome,
    q: OrdersQuery,
    channels: Vec<ChannelChoice>,
    channel: i64,
    orders: Vec<OrderRow>,
    first: String,
    next: Option<String>,
    paged: bool,
}

impl OrdersPage {
    fn statuses(&self) -> &'static [&'static str] {
        &data::STATUSES
    }
}

/// A status's words in the page's language.
fn status_key(status: &str) -> String {
    format!("ord.st.{status}")
}

impl Chrome {
    /// An order status in the page's language (an unknown one as it is stored).
    pub fn status_text(&self, status: &str) -> String {
        if data::STATUSES.contains(&status) {
            self.t(&status_key(status)).to_owned()
        } else {
            status.to_owned()
        }
    }
    pub fn can_reveal(&self) -> bool {
        self.role.can(Permission::RevealBuyer)
    }
}

pub async fn orders(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<OrdersQuery>,
) -> PageResult {
    let store = state.access.store();
    let tz = state.console.timezone;
    let filter = q.filter(tz);
    let before = if q.cursor.is_empty() {
        (i64::MAX, i64::MAX)
    } else {
        parse_cursor(&q.cursor)?
    };
    let mut orders = data::order_page(store, &filter, before, PAGE_SIZE + 1).await?;
    let more = orders.len() as i64 > PAGE_SIZE;
    orders.truncate(PAGE_SIZE as usize);
    let base = format!("/orders?{}", q.encoded());
    let next = more
        .then(|| orders.last())
        .flatten()
        .map(|r| format!("{base}&cursor={}", make_cursor(r)));
    let here = if q.cursor.is_empty() {
        base.clone()
    } else {
        format!("{base}&cursor={}", encode(&q.cursor))
    };
    let c = Chrome::new(&state, &caller, &headers, "orders", here);
    let page = OrdersPage {
        c,
        channels: data::channel_choices(store).await?,
        channel: filter.connection,
        orders,
        first: base,
        next,
        paged: !q.cursor.is_empty(),
        q,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    c: Chrome,
    o: OrderDetail,
    /// The reason typed (kept in the form after a refusal).
    reason: String,
    /// A refusal of the reveal, in the page's language.
    problem: Option<&'static str>,
    /// Set only in the answer to a reveal.
    revealed: Option<Revealed>,
}

/// What the answer to a reveal shows.
struct Revealed {
    fields: Vec<(&'static str, String)>,
    purged: bool,
    unreadable: bool,
    seq: i64,
}

impl OrderPage {
    fn field_label(&self, name: &str) -> &'static str {
        self.c.t(&format!("ord.buyer_{name}"))
    }
    fn buyer_names(&self) -> Vec<&'static str> {
        ["name", "email", "phone", "address"]
            .into_iter()
            .zip(self.o.present)
            .filter(|(_, p)| *p)
            .map(|(n, _)| n)
            .collect()
    }
    fn purged(&self) -> bool {
        self.o.purged() || self.revealed.as_ref().is_some_and(|r| r.purged)
    }
    /// Why the buyer's data cannot be shown: removed by retention, or purged.
    fn purged_text(&self) -> &'static str {
        if self.o.removed_by_retention() {
            self.c.t("ord.removed")
        } else {
            self.c.t("ord.purged")
        }
    }
    fn movement(&self, m: &str) -> String {
        match m {
            "reserve" | "commit" | "release" | "restock" | "adjust" => {
                self.c.t(&format!("ord.mv.{m}")).to_owned()
            }
            other => other.to_owned(),
        }
    }
    fn action(&self, a: &str) -> &'static str {
        if a == "order.reveal_buyer" {
            self.c.t("ord.h_reveal")
        } else {
            self.c.t("ord.h_ingest")
        }
    }
    fn enc(&self, s: &str) -> String {
        encode(s)
    }
    fn signed(&self, n: &i64) -> String {
        if *n > 0 {
            format!("+{n}")
        } else {
            n.to_string()
        }
    }
}

fn parse_id(id: &str) -> Result<i64, AppError> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(not_found)
}

fn not_found() -> AppError {
    AppError::refused(StatusCode::NOT_FOUND, "not_found", "there is no such order")
}

async fn load(state: &AppState, id: &str) -> Result<OrderDetail, AppError> {
    data::order_detail(state.access.store(), parse_id(id)?)
        .await?
        .ok_or_else(not_found)
}

pub async fn order(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let o = load(&state, &id).await?;
    let c = Chrome::new(
        &state,
        &caller,
        &headers,
        "orders",
        format!("/orders/{}", o.row.id),
    );
    let page = OrderPage {
        c,
        o,
        reason: String::new(),
        problem: None,
        revealed: None,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct RevealForm {
    #[serde(default)]
    reason: String,
}

// The reason may hold anything a person typed: never printed.
impl std::fmt::Debug for RevealForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealForm").finish_non_exhaustive()
    }
}

/// Reveal one order's buyer fields: the reason is required and checked, one audit row is
/// written, and the fields are shown in this answer only (`no-store`). A refused reason
/// comes back inline (422) and writes nothing.
pub async fn reveal(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<RevealForm>,
) -> PageResult {
    let o = load(&state, &id).await?;
    let c = Chrome::new(
        &state,
        &caller,
        &headers,
        "orders",
        format!("/orders/{}", o.row.id),
    );
    let store = state.access.store();
    let result = data::reveal(
        state.access.vault(),
        store,
        &caller.actor(),
        &o,
        &form.reason,
    )
    .await;
    let (status, problem, revealed) = match result {
        Ok((outcome, seq)) => {
            let unreadable = matches!(outcome, RevealOutcome::Unreadable);
            let (fields, purged) = match outcome {
                RevealOutcome::Shown(f) => (
                    f.into_iter().map(|(n, v)| (n, v.to_string())).collect(),
                    false,
                ),
                RevealOutcome::Purged | RevealOutcome::Removed => (Vec::new(), true),
                RevealOutcome::Unreadable | RevealOutcome::Nothing => (Vec::new(), false),
            };
            let r = Revealed {
                fields,
                purged,
                unreadable,
                seq,
            };
            (StatusCode::OK, None, Some(r))
        }
        Err(RevealRefusal::Reason(p)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, Some(c.t(p.key())), None)
        }
        Err(RevealRefusal::Failed(e)) => return Err(e),
    };
    // The history shows the reveal just written.
    let o = if revealed.is_some() {
        load(&state, &id).await?
    } else {
        o
    };
    let reason = if problem.is_some() {
        form.reason.chars().take(data::REASON_MAX).collect()
    } else {
        String::new()
    };
    let page = OrderPage {
        c,
        o,
        reason,
        problem,
        revealed,
    };
    let mut res = render(status, &page);
    no_store(&mut res);
    Ok(res)
}

/// The answer holds buyer data (or a typed reason): no cache keeps it.
pub fn no_store(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, private"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
