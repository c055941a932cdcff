//! The console's Alerts page: every alert (newest first, paged by cursor) with its time
//! in the console's time zone, severity, title and each channel's delivery (sent,
//! held, retrying, pending; or kept on the dashboard only), the channels' state, and a
//! test-send per configured channel for those who may manage sync.
//!
//! Invariants: the alerts are stockade-alerts' allow-listed, scrubbed entries (the same
//! as `/api/v1/alerts` and `stockade alert list`); in Chinese the titles the system
//! wrote are shown in Chinese ([`stockade_alerts::zh`]), identifiers and third-party
//! text unchanged. The test-send is [`crate::dashboard::send_test`], the same as the API
//! and `stockade alert test`, audited `alert.test` as the caller; its outcome is shown
//! on the page in the user's language.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;
use stockade_access::Permission;
use stockade_alerts::{AlertEntry, ChannelStatus};

use crate::console::{Chrome, encode};
use crate::dashboard::{alert_before, alert_cursor, send_test};
use crate::error::{AppError, render};
use crate::extract::Caller;
use crate::i18n::Lang;
use crate::state::AppState;

type PageResult = Result<Response, AppError>;

/// Alerts per page.
const PAGE_ROWS: i64 = 50;

/// A configured channel (or one the database still knows) and its state.
#[derive(Debug)]
pub struct ChannelLine {
    pub name: String,
    pub kind: String,
    /// Whether it is configured (a test can be sent).
    pub configured: bool,
    pub status: Option<ChannelStatus>,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    c: Chrome,
    channels: Vec<ChannelLine>,
    alerts: Vec<AlertEntry>,
    next: Option<String>,
    /// A test-send's outcome: (ok, text).
    tested: Option<(bool, String)>,
}

impl AlertsPage {
    fn can_test(&self) -> bool {
        self.c.role.can(Permission::ManageSync)
    }
    fn severity(&self, a: &AlertEntry) -> &'static str {
        self.c.t(match a.alert.severity.as_str() {
            "critical" => "al.sev_critical",
            "error" => "al.sev_error",
            "warning" => "al.sev_warning",
            _ => "al.sev_info",
        })
    }
    fn severity_class(&self, a: &AlertEntry) -> &'static str {
        match a.alert.severity.as_str() {
            "critical" | "error" => "bad",
            "warning" => "warn",
            _ => "ok",
        }
    }
    /// The title in the page's language (the system's words; identifiers kept).
    fn title(&self, a: &AlertEntry) -> String {
        match self.c.lang {
            Lang::Zh => stockade_alerts::zh::localize(&a.alert).title,
            Lang::En => a.alert.title.clone(),
        }
    }
    fn delivery(&self, status: &str) -> &'static str {
        self.c.t(match status {
            "sent" => "al.d_sent",
            "held" => "al.d_held",
            "retrying" => "al.d_retrying",
            _ => "al.d_pending",
        })
    }
    fn delivery_class(&self, status: &str) -> &'static str {
        match status {
            "sent" => "ok",
            "held" => "bad",
            _ => "warn",
        }
    }
    fn channel_status(&self, s: &Option<ChannelStatus>) -> &'static str {
        self.c.t(match s.as_ref().map(|s| s.status.as_str()) {
            None => "al.c_not_started",
            Some("ok") => "al.c_ok",
            Some("failing") => "al.c_failing",
            Some("misconfigured") => "al.c_misconfigured",
            Some("rate_limited") => "al.c_rate_limited",
            Some(_) => "common.unknown",
        })
    }
    /// The machine-readable time (UTC, RFC 3339) of a `<time>` element.
    fn iso(&self, ms: &i64) -> String {
        stockade_core::time::format_rfc3339_ms(*ms)
    }
    fn next_link(&self, cursor: &str) -> String {
        format!("/alerts?cursor={}", encode(cursor))
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct AlertsQuery {
    #[serde(default)]
    cursor: String,
}

async fn page(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    cursor: &str,
    tested: Option<(bool, String)>,
) -> Result<AlertsPage, AppError> {
    let store = state.access.store();
    let before = Some(cursor)
        .filter(|c| !c.is_empty())
        .map(alert_before)
        .transpose()?;
    let (alerts, next) = stockade_alerts::alert_page(store, before, PAGE_ROWS).await?;
    let mut statuses = stockade_alerts::channel_statuses(store).await?;
    let configured = state
        .alert_test
        .as_ref()
        .map(|t| t.channels())
        .unwrap_or_default();
    let mut channels: Vec<ChannelLine> = configured
        .into_iter()
        .map(|(name, kind)| {
            let status = statuses
                .iter()
                .position(|s| s.name == name)
                .map(|i| statuses.remove(i));
            ChannelLine {
                name,
                kind,
                configured: true,
                status,
            }
        })
        .collect();
    channels.extend(statuses.into_iter().map(|s| ChannelLine {
        name: s.name.clone(),
        kind: s.kind.clone(),
        configured: false,
        status: Some(s),
    }));
    let here = match cursor {
        "" => "/alerts".to_owned(),
        c => format!("/alerts?cursor={}", encode(c)),
    };
    let c = Chrome::new(state, caller, headers, "alerts", here);
    Ok(AlertsPage {
        c,
        channels,
        alerts,
        next: next.map(alert_cursor),
        tested,
    })
}

/// `/alerts?cursor=`.
pub async fn alerts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<AlertsQuery>,
) -> PageResult {
    let p = page(&state, &caller, &headers, &q.cursor, None).await?;
    Ok(render(StatusCode::OK, &p))
}

#[derive(Debug, Deserialize)]
pub struct TestForm {
    channel: String,
}

/// POST `/alerts/test` (`channel=`): a signed test message now; the page shows what the
/// platform answered.
pub async fn test_send(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<TestForm>,
) -> PageResult {
    let lang = Lang::for_caller(&caller, &headers);
    let (status, tested) = match send_test(&state, &caller, form.channel.trim()).await {
        Ok(o) if o.status == "delivered" => (
            StatusCode::OK,
            (
                true,
                format!("{} {}", lang.t("al.test_ok"), form.channel.trim()),
            ),
        ),
        Ok(o) => {
            let key = match o.status.as_str() {
                "config_error" => "al.test_config",
                "rate_limited" => "al.test_rate",
                _ => "al.test_failed",
            };
            (
                StatusCode::OK,
                (
                    false,
                    format!("{} {}: {}", lang.t(key), form.channel.trim(), o.detail),
                ),
            )
        }
        Err(AppError::Refused { status, .. }) => {
            (status, (false, lang.t("al.test_unknown").to_owned()))
        }
        Err(e) => return Err(e),
    };
    let p = page(&state, &caller, &headers, "", Some(tested)).await?;
    Ok(render(status, &p))
}
