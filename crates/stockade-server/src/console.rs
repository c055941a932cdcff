//! The console pages: Overview (live through an htmx fragment), Inventory (with stock
//! adjustment for those who may manage sync), Audit log (with CSV export), the language
//! switch and the vendored htmx file. Every page extends `layout.html` through
//! [`Chrome`]: navigation to the pages the caller's role may open, the environment
//! banner, the user and sign-out, in the request's language ([`crate::i18n`]) with times
//! in the console's time zone.
//!
//! Invariants: data comes only from [`crate::console_data`] and stockade-sync's stock
//! functions (and, for the overview's push lag and rate-limit state, the running
//! process through [`crate::channel_live`]); the adjustment is
//! [`crate::api_stock::adjust_checked`] (`stockade_sync::stock::adjust_change` committed
//! by the caller: the same rules and audit row as the `stock.adjust` step, refusals in
//! the user's language shown inline); the inventory's import and discovery forms are
//! [`crate::stock_actions`]; permissions are the route table's, the navigation and the
//! forms only mirror them.

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use stockade_access::{Permission, Role};
use stockade_core::Environment;

use crate::console_data::{self as data, AuditFilter, ChannelRow, SkuRow, StockFilter};
use crate::error::{AppError, render};
use crate::extract::Caller;
use crate::i18n::{Lang, lang_cookie, local_time};
use crate::state::AppState;

type PageResult = Result<Response, AppError>;

/// The vendored htmx 2.0.11 (0BSD; `npm pack htmx.org@2.0.11`, licence line prepended).
pub const HTMX: &str = include_str!("../static/htmx.min.js");

pub async fn htmx() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        HTMX,
    )
        .into_response()
}

/// The environment banner's words and class, for the layout and the sign-in page.
pub fn env_key(env: Environment) -> (&'static str, &'static str) {
    match env {
        Environment::Prod => ("env.prod", "env env-prod"),
        Environment::Staging => ("env.staging", "env env-staging"),
        Environment::Dev => ("env.dev", "env env-dev"),
    }
}

/// What every console page shows around its content.
pub struct Chrome {
    pub lang: Lang,
    pub env_text: &'static str,
    pub env_class: &'static str,
    pub who: String,
    pub csrf: String,
    pub role: Role,
    pub tz: chrono_tz::Tz,
    /// The page's own path (the language switch comes back to it).
    pub here: String,
    pub current: &'static str,
}

impl Chrome {
    pub fn new(
        state: &AppState,
        caller: &Caller,
        headers: &HeaderMap,
        current: &'static str,
        here: String,
    ) -> Chrome {
        let lang = Lang::for_caller(caller, headers);
        let (key, class) = env_key(state.access.environment());
        let (who, csrf) = match caller {
            Caller::Session(s) => (
                format!("{} ({})", s.user.email, s.user.role),
                s.csrf.clone(),
            ),
            Caller::Key(k) => (format!("API key {} ({})", k.name, k.role), String::new()),
        };
        Chrome {
            lang,
            env_text: lang.t(key),
            env_class: class,
            who,
            csrf,
            role: caller.role(),
            tz: state.console.timezone,
            here,
            current,
        }
    }
    pub fn t(&self, key: &str) -> &'static str {
        self.lang.t(key)
    }
    pub fn time(&self, ms: &i64) -> String {
        local_time(self.tz, *ms)
    }
    pub fn opt_time(&self, ms: &Option<i64>) -> String {
        ms.map_or_else(
            || self.t("common.never").to_owned(),
            |ms| local_time(self.tz, ms),
        )
    }
    pub fn tz_name(&self) -> &'static str {
        self.tz.name()
    }
    pub fn can_adjust(&self) -> bool {
        self.role.can(Permission::ManageSync)
    }
    pub fn can_audit(&self) -> bool {
        self.role.can(Permission::ViewAudit)
    }
    pub fn can_stock(&self) -> bool {
        self.role.can(Permission::ViewStock)
    }
    pub fn can_workflows(&self) -> bool {
        self.role.can(Permission::ViewWorkflows)
    }
    /// The compliance page (admin, auditor: the audit permission).
    pub fn can_compliance(&self) -> bool {
        self.role.can(Permission::ViewAudit)
    }
    /// The other language: its code and its own name.
    pub fn other_lang(&self) -> (&'static str, &'static str) {
        match self.lang {
            Lang::En => ("zh", "中文"),
            Lang::Zh => ("en", "English"),
        }
    }
    /// `here`, percent-encoded for the language switch's `back` parameter.
    pub fn here_encoded(&self) -> String {
        encode(&self.here)
    }
    pub fn nav_class(&self, page: &str) -> &'static str {
        if page == self.current { "current" } else { "" }
    }
}

/// Percent-encode a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Deserialize)]
pub struct LangQuery {
    #[serde(default)]
    set: String,
    #[serde(default)]
    back: String,
}

/// `/lang?set=zh&back=/inventory`: keep the language in a cookie and go back (only to a
/// path on this server). A signed-in user's choice is also stored with the user (audited
/// `user.language`), so it follows them to every browser and wins over the browser's
/// `Accept-Language`. The session cookie is `SameSite=Strict`, so another site linking
/// here cannot change a user's stored choice.
pub async fn switch_lang(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let back = if q.back.starts_with('/') && !q.back.starts_with("//") && !q.back.contains('\\') {
        q.back
    } else {
        "/".to_owned()
    };
    let mut res = Redirect::to(&back).into_response();
    let Some(lang) = Lang::parse(&q.set) else {
        return res;
    };
    if let Ok(v) = HeaderValue::from_str(&lang_cookie(lang, !state.plain_http)) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    if let Some(token) = crate::extract::cookie(&headers, crate::extract::SESSION_COOKIE) {
        match state.access.session(token).await {
            Ok(Some(s)) if s.state == stockade_access::SessionState::Active => {
                if let Err(e) = state
                    .access
                    .set_language(&s.user.id, Some(lang.code()))
                    .await
                {
                    tracing::warn!("could not store the user's language: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not read the session for the language switch: {e}"),
        }
    }
    res
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    c: Chrome,
    live: Live,
}

#[derive(Template)]
#[template(path = "_overview_live.html")]
struct LiveFragment {
    c: Chrome,
    live: Live,
}

struct Live {
    channels: Vec<ChannelRow>,
    oversold: i64,
    alerts_24h: usize,
    failed_24h: i64,
    updated: String,
}

impl Live {
    /// A channel's push lag as "p50 / p99", or "—".
    fn lag(&self, c: &ChannelRow) -> String {
        c.lag.map_or_else(
            || "—".to_owned(),
            |l| {
                use crate::channel_live::ms;
                format!("{} / {}", ms(l.p50_ms), ms(l.p99_ms))
            },
        )
    }
    /// A channel's rate-limit state in words (and whether it is a problem).
    fn rate(&self, c: &ChannelRow, lang: &Lang) -> (String, bool) {
        c.rate
            .map_or_else(|| ("—".to_owned(), false), |r| r.describe(*lang))
    }
    /// Orders per minute over the window, one decimal.
    fn per_minute(&self, c: &ChannelRow) -> String {
        format!(
            "{:.1}",
            c.recent_orders as f64 / data::ORDER_WINDOW_MIN as f64
        )
    }
}

/// How long the live fragment's figures are shared by every polling client: one set of
/// queries per second however many consoles are open (each poll still renders its own
/// fragment, in its user's language and time zone).
const LIVE_SHARED_MS: i64 = 1_000;

/// The live fragment's last figures and when they were read (per server).
#[derive(Debug, Default)]
pub struct LiveCache(tokio::sync::Mutex<Option<(i64, LiveFigures)>>);

#[derive(Debug, Clone)]
struct LiveFigures {
    channels: Vec<ChannelRow>,
    oversold: i64,
    alerts_24h: usize,
    failed_24h: i64,
}

/// The live figures for a poll: the shared ones when younger than [`LIVE_SHARED_MS`].
async fn live_shared(state: &AppState, c: &Chrome) -> Result<Live, AppError> {
    let mut cached = state.live_cache.0.lock().await;
    let now = stockade_core::time::now_ms();
    let figures = match &*cached {
        Some((at, f)) if now - at < LIVE_SHARED_MS && now >= *at => (*at, f.clone()),
        _ => {
            let f = live_figures(state, now).await?;
            *cached = Some((now, f.clone()));
            (now, f)
        }
    };
    drop(cached);
    Ok(Live::from_figures(figures.1, c.time(&figures.0)))
}

impl Live {
    fn from_figures(f: LiveFigures, updated: String) -> Live {
        Live {
            channels: f.channels,
            oversold: f.oversold,
            alerts_24h: f.alerts_24h,
            failed_24h: f.failed_24h,
            updated,
        }
    }
}

async fn live(state: &AppState, c: &Chrome) -> Result<Live, AppError> {
    let now = stockade_core::time::now_ms();
    let f = live_figures(state, now).await?;
    Ok(Live::from_figures(f, c.time(&now)))
}

async fn live_figures(state: &AppState, now: i64) -> Result<LiveFigures, AppError> {
    let store = state.access.store();
    let day = now - 86_400_000;
    let mut channels = data::channels(store, now).await?;
    if let Some(live) = &state.channels {
        for ch in &mut channels {
            ch.lag = live.push_lag(&ch.name);
            ch.rate = Some(live.rate_state(&ch.api_host));
        }
    }
    let oversold = stockade_sync::stats::oversold_units(store)
        .await
        .map_err(AppError::internal)?;
    let alerts = crate::dashboard::alert_history(store, 500).await?;
    let alerts_24h = alerts
        .iter()
        .filter(|a| {
            a.get("at_ms")
                .and_then(|v| v.as_i64())
                .is_some_and(|t| t >= day)
        })
        .count();
    let failed_24h = data::failed_jobs(store, day).await?;
    Ok(LiveFigures {
        channels,
        oversold,
        alerts_24h,
        failed_24h,
    })
}

pub async fn overview(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> PageResult {
    let c = Chrome::new(&state, &caller, &headers, "overview", "/overview".into());
    let live = live(&state, &c).await?;
    Ok(render(StatusCode::OK, &OverviewPage { c, live }))
}

/// The overview's live part, polled by htmx every few seconds.
pub async fn overview_live(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> PageResult {
    let c = Chrome::new(&state, &caller, &headers, "overview", "/overview".into());
    let live = live_shared(&state, &c).await?;
    Ok(render(StatusCode::OK, &LiveFragment { c, live }))
}

/// SKUs per inventory page.
pub const PAGE_SIZE: i64 = 50;

#[derive(Debug, Deserialize, Default)]
pub struct InventoryQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    page: Option<i64>,
    /// The SKU just adjusted (a notice).
    #[serde(default)]
    done: String,
}

#[derive(Template)]
#[template(path = "inventory.html")]
struct InventoryPage {
    c: Chrome,
    q: String,
    filter: &'static str,
    skus: Vec<SkuRow>,
    page: i64,
    pages: i64,
    total: i64,
    done: String,
    /// An adjustment's refusal, in the page's language (shown above the table).
    refused: String,
    /// Order lines whose SKU is in no catalogue row (highlighted above the table).
    unmatched: Vec<data::UnmatchedSku>,
    /// The live connections (the discovery form's choices; read only for ManageSync).
    connections: Vec<String>,
}

impl InventoryPage {
    fn csv_link(&self) -> String {
        format!(
            "/inventory.csv?q={}&filter={}",
            encode(&self.q),
            self.filter
        )
    }
    fn link(&self, page: i64) -> String {
        format!(
            "/inventory?q={}&filter={}&page={page}",
            encode(&self.q),
            self.filter
        )
    }
    fn row_class(&self, s: &SkuRow) -> &'static str {
        if s.oversold() {
            "oversold"
        } else if s.drifting() {
            "drift"
        } else if s.low() {
            "low"
        } else {
            ""
        }
    }
}

pub async fn inventory(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<InventoryQuery>,
) -> PageResult {
    let page = inventory_page(&state, &caller, &headers, q, String::new()).await?;
    Ok(render(StatusCode::OK, &page))
}

/// The inventory page for a query, with an adjustment's refusal (or nothing).
async fn inventory_page(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    q: InventoryQuery,
    refused: String,
) -> Result<InventoryPage, AppError> {
    let filter = StockFilter::parse(&q.filter);
    let page = q.page.unwrap_or(1).clamp(1, 1_000_000);
    let store = state.access.store();
    let (skus, total) =
        data::sku_page(store, &q.q, filter, PAGE_SIZE, (page - 1) * PAGE_SIZE).await?;
    let unmatched = data::unmatched(store, 20).await?;
    let here = format!(
        "/inventory?q={}&filter={}&page={page}",
        encode(&q.q),
        filter.code()
    );
    let c = Chrome::new(state, caller, headers, "inventory", here);
    let connections = if c.can_adjust() {
        data::connection_names(store).await?
    } else {
        Vec::new()
    };
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    Ok(InventoryPage {
        c,
        q: q.q,
        filter: filter.code(),
        skus,
        page,
        pages,
        total,
        done: q.done,
        refused,
        unmatched,
        connections,
    })
}

#[derive(Deserialize)]
pub struct AdjustForm {
    sku: String,
    delta: String,
    #[serde(default)]
    reason: String,
}

/// Adjust one SKU's on hand by a signed delta with a reason: the `stock.adjust` rules,
/// one ledger row and one audit row in one commit ([`crate::api_stock::adjust_checked`]);
/// a refusal writes nothing and shows the inventory again with the reason, in the
/// user's language, above the table (422).
pub async fn adjust(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<AdjustForm>,
) -> PageResult {
    let lang = Lang::for_caller(&caller, &headers);
    let sku = form.sku.trim().to_owned();
    let delta = form
        .delta
        .trim()
        .trim_start_matches('+')
        .replace('−', "-")
        .parse::<i64>()
        .unwrap_or(0);
    let done =
        crate::api_stock::adjust_checked(&state, &caller, lang, &sku, delta, &form.reason).await;
    let message = match done {
        Ok(_) => {
            let to = format!("/inventory?q={}&done={}", encode(&sku), encode(&sku));
            return Ok(Redirect::to(&to).into_response());
        }
        Err(AppError::Refused { message, .. }) => message.into_owned(),
        Err(e) => return Err(e),
    };
    let q = InventoryQuery {
        q: sku,
        ..InventoryQuery::default()
    };
    let page = inventory_page(&state, &caller, &headers, q, message).await?;
    Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
}

#[derive(Debug, Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    resource: String,
    /// A local date (YYYY-MM-DD) in the console's time zone.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

impl AuditQuery {
    fn filter(&self, tz: chrono_tz::Tz) -> AuditFilter {
        AuditFilter {
            actor: self.actor.clone(),
            action: self.action.clone(),
            resource: self.resource.clone(),
            from_ms: day_start(tz, &self.from, 0).unwrap_or(0),
            to_ms: day_start(tz, &self.to, 1).unwrap_or(i64::MAX),
            after_seq: 0,
        }
    }
    fn encoded(&self) -> String {
        format!(
            "actor={}&action={}&resource={}&from={}&to={}",
            encode(&self.actor),
            encode(&self.action),
            encode(&self.resource),
            encode(&self.from),
            encode(&self.to)
        )
    }
}

/// The start (UTC ms) of the local day `date` plus `plus_days`, in `tz`.
pub(crate) fn day_start(tz: chrono_tz::Tz, date: &str, plus_days: u64) -> Option<i64> {
    use chrono::TimeZone;
    let d = chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").ok()?;
    let d = d.checked_add_days(chrono::Days::new(plus_days))?;
    let t = tz
        .from_local_datetime(&d.and_hms_opt(0, 0, 0)?)
        .earliest()?;
    Some(t.timestamp_millis())
}

/// Rows on the audit page; the export holds more.
const AUDIT_PAGE_ROWS: i64 = 200;
const AUDIT_EXPORT_ROWS: i64 = 100_000;
/// A text filter without a date range searches the newest this many rows on the page
/// (the filters match any part of the text, which no index serves); a date range or the
/// export searches the whole log.
const AUDIT_SEARCH_WINDOW: i64 = 20_000;

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    c: Chrome,
    q: AuditQuery,
    export: String,
    rows: Vec<data::AuditLine>,
    verified: bool,
    checked: u64,
    head_seq: i64,
    head_hash: String,
    problem: String,
    /// The search covered only the newest [`AUDIT_SEARCH_WINDOW`] rows.
    windowed: bool,
    window: i64,
}

pub async fn audit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> PageResult {
    let store = state.access.store();
    let c = Chrome::new(
        &state,
        &caller,
        &headers,
        "audit",
        format!("/audit?{}", q.encoded()),
    );
    let watched = store.watched_audit().await?;
    let report = watched.report;
    let (head_seq, head_hash) = report
        .head
        .map(|(s, h)| (s, hex::encode(h)))
        .unwrap_or_default();
    let mut filter = q.filter(c.tz);
    let text = [&q.actor, &q.action, &q.resource]
        .iter()
        .any(|f| !f.trim().is_empty());
    let dated = !(q.from.trim().is_empty() && q.to.trim().is_empty());
    let windowed = text && !dated && head_seq > AUDIT_SEARCH_WINDOW;
    if windowed {
        filter.after_seq = head_seq - AUDIT_SEARCH_WINDOW;
    }
    let rows = data::audit_rows(store, &filter, AUDIT_PAGE_ROWS).await?;
    let page = AuditPage {
        export: format!("/audit.csv?{}", q.encoded()),
        c,
        q,
        rows,
        verified: report.problem.is_none(),
        checked: watched.rows_verified,
        head_seq,
        head_hash,
        problem: report.problem.map(|p| p.to_string()).unwrap_or_default(),
        windowed,
        window: AUDIT_SEARCH_WINDOW,
    };
    Ok(render(StatusCode::OK, &page))
}

/// One CSV field, quoted when needed; a leading formula character is neutralised.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The filtered audit rows as CSV (times in UTC, RFC 3339).
pub async fn audit_csv(State(state): State<AppState>, Query(q): Query<AuditQuery>) -> PageResult {
    let rows = data::audit_rows(
        state.access.store(),
        &q.filter(state.console.timezone),
        AUDIT_EXPORT_ROWS,
    )
    .await?;
    let mut out = String::from("seq,time_utc,actor,action,resource,details\n");
    for (seq, ts, actor, action, resource, details) in rows {
        let time = stockade_core::time::format_rfc3339_ms(ts);
        let fields = [actor, action, resource, details].map(|f| csv_field(&f));
        out.push_str(&format!("{seq},{time},{}\n", fields.join(",")));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

// Holds the session's CSRF token: never printed.
impl std::fmt::Debug for Chrome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chrome")
            .field("lang", &self.lang)
            .field("role", &self.role)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

// Holds nothing secret, but forms are never printed whole.
impl std::fmt::Debug for AdjustForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdjustForm")
            .field("sku", &self.sku)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
        assert_eq!(csv_field("plain"), "plain");
    }

    #[test]
    fn local_days_become_utc_bounds() {
        let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        // 1970-01-02 00:00 in Shanghai is 1970-01-01 16:00 UTC.
        assert_eq!(day_start(tz, "1970-01-02", 0), Some(16 * 3_600_000));
        assert_eq!(day_start(tz, "1970-01-01", 1), Some(16 * 3_600_000));
        assert_eq!(day_start(tz, "not a date", 0), None);
    }

    #[test]
    fn encode_keeps_paths_and_escapes_the_rest() {
        assert_eq!(encode("/inventory?q=a b&x"), "/inventory%3Fq%3Da%20b%26x");
    }
}
