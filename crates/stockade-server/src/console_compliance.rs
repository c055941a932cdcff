//! The Compliance page (`/compliance`) and `GET /api/v1/compliance`: each clause of the
//! company's security policy with its verdict and live evidence, for administrators and
//! auditors (the audit permission).
//!
//! Invariants: both only render the [`Report`] the process's [`ComplianceSource`] gathers
//! at request time (no evidence is computed here, so the CLI's report says the same); a
//! process without a source answers 503, never an empty or passing report. Texts come
//! from the catalogue in the caller's language; times are shown in the console's zone on
//! the page and in UTC (RFC 3339) in JSON.

use askama::Template;
use axum::Extension;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api_types::ErrorBody;
use crate::compliance::{Check, Report, Verdict};
use crate::console::Chrome;
use crate::error::{AppError, render};
use crate::extract::Caller;
use crate::i18n::Lang;
use crate::state::AppState;

async fn gather(state: &AppState) -> Result<Report, AppError> {
    let Some(source) = &state.compliance else {
        return Err(AppError::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this process gathers no compliance evidence; ask the server that serves the console",
        ));
    };
    source.report().await.map_err(AppError::internal)
}

/// How long the page shows the same evidence (its time is on the page; "Check again now"
/// gathers it at once). The evidence walks the whole audit chain and scans every order's
/// buyer fields — seconds with a million orders — so views share it; the API always
/// gathers it fresh.
const PAGE_EVIDENCE_MS: i64 = 5 * 60 * 1000;

/// The page's last report (per server).
#[derive(Debug, Default)]
pub struct PageEvidence(tokio::sync::Mutex<Option<Report>>);

#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    /// `1`: gather the evidence now instead of showing the last (at most 5 minutes old).
    #[serde(default)]
    fresh: String,
}

async fn page_report(state: &AppState, fresh: bool) -> Result<Report, AppError> {
    let mut last = state.compliance_page.0.lock().await;
    let now = stockade_core::time::now_ms();
    if let Some(r) = &*last
        && !fresh
        && (0..PAGE_EVIDENCE_MS).contains(&(now - r.generated_at_ms))
    {
        return Ok(r.clone());
    }
    let r = gather(state).await?;
    *last = Some(r.clone());
    Ok(r)
}

#[derive(Template)]
#[template(path = "compliance.html")]
struct CompliancePage {
    c: Chrome,
    report: Report,
    summary: [usize; 4],
}

impl CompliancePage {
    fn verdict_text(&self, v: &Verdict) -> &'static str {
        self.c.t(&format!("cp.v.{}", v.code()))
    }
    fn evidence(&self, check: &Check) -> Vec<String> {
        check
            .evidence
            .iter()
            .map(|e| e.text(self.c.lang, self.c.tz))
            .collect()
    }
    fn title(&self, check: &Check) -> &'static str {
        check.title(self.c.lang)
    }
    fn count(&self, i: usize) -> usize {
        self.summary.get(i).copied().unwrap_or(0)
    }
    /// The tables: the company's policy clauses, then the Amazon DPP rows (id, heading,
    /// introduction, rows); a section without rows is left out.
    #[allow(clippy::type_complexity)]
    fn sections(&self) -> Vec<(&'static str, &'static str, &'static str, Vec<&Check>)> {
        use crate::compliance_render::Section;
        [
            (Section::Policy, "clauses", "cp.clauses", ""),
            (
                Section::AmazonDpp,
                "dpp-clauses",
                "cp.dpp_section",
                "cp.dpp_intro",
            ),
        ]
        .into_iter()
        .map(|(s, id, heading, intro)| {
            let rows: Vec<&Check> = self
                .report
                .checks
                .iter()
                .filter(|c| Section::of(c) == s)
                .collect();
            let intro = if intro.is_empty() {
                ""
            } else {
                self.c.t(intro)
            };
            (id, self.c.t(heading), intro, rows)
        })
        .filter(|(_, _, _, rows)| !rows.is_empty())
        .collect()
    }
}

/// The Compliance page.
pub async fn page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Response, AppError> {
    let c = Chrome::new(
        &state,
        &caller,
        &headers,
        "compliance",
        "/compliance".into(),
    );
    let report = page_report(&state, q.fresh == "1").await?;
    let summary = report.summary();
    Ok(render(
        StatusCode::OK,
        &CompliancePage { c, report, summary },
    ))
}

/// A clause's verdict.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictCode {
    Pass,
    Fail,
    NotApplicable,
    CannotCheck,
}

impl From<Verdict> for VerdictCode {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Pass => VerdictCode::Pass,
            Verdict::Fail => VerdictCode::Fail,
            Verdict::NotApplicable => VerdictCode::NotApplicable,
            Verdict::CannotCheck => VerdictCode::CannotCheck,
        }
    }
}

/// One fact behind a verdict.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplianceEvidence {
    /// Stable key of the sentence (`mfa_users`, `tls_cert`, …).
    pub key: String,
    /// The sentence's values (counts, settings, times in UTC RFC 3339).
    pub args: Vec<String>,
    /// The sentence in the caller's language.
    pub text: String,
}

/// One clause of the policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplianceClause {
    /// Stable id (`mfa`, `password`, `tls`, …).
    pub id: String,
    /// Where the clause is in the policy documents, e.g. `002 §II`.
    pub policy: String,
    /// The clause's name in the caller's language.
    pub title: String,
    pub verdict: VerdictCode,
    pub evidence: Vec<ComplianceEvidence>,
}

/// Clauses per verdict.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplianceSummary {
    pub pass: usize,
    pub fail: usize,
    pub not_applicable: usize,
    pub cannot_check: usize,
}

/// The compliance report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplianceAnswer {
    /// When the evidence was taken (UTC, RFC 3339).
    pub generated_at: String,
    pub environment: String,
    /// The language of `title` and `text` (`en` or `zh`).
    pub language: String,
    pub summary: ComplianceSummary,
    pub clauses: Vec<ComplianceClause>,
}

/// The report as the API answers it, in `lang`.
pub fn answer(report: &Report, lang: Lang) -> ComplianceAnswer {
    let [pass, fail, not_applicable, cannot_check] = report.summary();
    ComplianceAnswer {
        generated_at: stockade_core::time::format_rfc3339_ms(report.generated_at_ms),
        environment: report.environment.as_str().to_owned(),
        language: lang.code().to_owned(),
        summary: ComplianceSummary {
            pass,
            fail,
            not_applicable,
            cannot_check,
        },
        clauses: report
            .checks
            .iter()
            .map(|c| ComplianceClause {
                id: c.id.to_owned(),
                policy: c.policy.to_owned(),
                title: c.title(lang).to_owned(),
                verdict: c.verdict.into(),
                evidence: c
                    .evidence
                    .iter()
                    .map(|e| ComplianceEvidence {
                        key: e.key.to_owned(),
                        args: e.args.iter().map(|a| a.plain()).collect(),
                        text: e.plain_text(lang),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Each clause of the security policy with its verdict (pass, fail, not applicable,
/// cannot check here) and the live evidence behind it. Texts follow `Accept-Language`
/// (or the signed-in user's stored language).
#[utoipa::path(get, path = "/api/v1/compliance", tag = "compliance",
    responses(
        (status = 200, description = "The report, gathered now", body = ComplianceAnswer),
        (status = 503, description = "This process gathers no compliance evidence", body = ErrorBody),
    ))]
pub async fn api(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let report = gather(&state).await?;
    let lang = Lang::for_caller(&caller, &headers);
    Ok(Json(answer(&report, lang)).into_response())
}
