//! The compliance report as a document (`stockade compliance report --format md|json|html`):
//! Markdown tables per section, stable JSON, or a standalone HTML page (inline styles, no
//! external asset, every text escaped). The same [`Report`] the console's page renders.
//!
//! Invariants: every clause of the report appears, in order, in its section (the
//! company's policy clauses, then the Amazon DPP rows: ids starting `dpp_`); verdict words
//! and evidence come from the catalogue in the chosen language; times are in UTC.

use askama::Template;
use serde::Serialize;

use crate::compliance::{Check, Report, Verdict};
use crate::console_compliance::{ComplianceAnswer, answer};
use crate::i18n::Lang;

/// A report document's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Md,
    Json,
    Html,
}

impl Format {
    pub const NAMES: &'static str = "md, json, html";

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "md" | "markdown" => Some(Format::Md),
            "json" => Some(Format::Json),
            "html" => Some(Format::Html),
            _ => None,
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Format::Md => "md",
            Format::Json => "json",
            Format::Html => "html",
        }
    }
}

/// The report's two sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The company's own policy documents.
    Policy,
    /// Amazon's Data Protection Policy items.
    AmazonDpp,
}

impl Section {
    pub fn of(check: &Check) -> Section {
        if check.id.starts_with("dpp_") {
            Section::AmazonDpp
        } else {
            Section::Policy
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Section::Policy => "policy",
            Section::AmazonDpp => "amazon_dpp",
        }
    }
    fn title_key(self) -> &'static str {
        match self {
            Section::Policy => "cp.clauses",
            Section::AmazonDpp => "cp.dpp_section",
        }
    }
}

const SECTIONS: [Section; 2] = [Section::Policy, Section::AmazonDpp];

fn verdict_word(lang: Lang, v: Verdict) -> &'static str {
    lang.t(&format!("cp.v.{}", v.code()))
}

/// The document in `format` and `lang`.
pub fn render(report: &Report, format: Format, lang: Lang) -> String {
    match format {
        Format::Md => markdown(report, lang),
        Format::Json => json(report, lang),
        Format::Html => html(report, lang),
    }
}

fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn markdown(report: &Report, lang: Lang) -> String {
    let mut out = String::new();
    let [pass, fail, na, cannot] = report.summary();
    out.push_str(&format!("# {}\n\n", lang.t("cp.report_title")));
    out.push_str(&format!(
        "- {}: {}\n- {} {}\n- {}: {pass} · {}: {fail} · {}: {na} · {}: {cannot}\n",
        lang.t("cp.environment"),
        report.environment.as_str(),
        lang.t("cp.generated"),
        stockade_core::time::format_rfc3339_ms(report.generated_at_ms),
        verdict_word(lang, Verdict::Pass),
        verdict_word(lang, Verdict::Fail),
        verdict_word(lang, Verdict::NotApplicable),
        verdict_word(lang, Verdict::CannotCheck),
    ));
    for section in SECTIONS {
        let checks: Vec<&Check> = report
            .checks
            .iter()
            .filter(|c| Section::of(c) == section)
            .collect();
        if checks.is_empty() {
            continue;
        }
        out.push_str(&format!("\n## {}\n\n", lang.t(section.title_key())));
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n|---|---|---|---|\n",
            lang.t("cp.clause"),
            lang.t("cp.policy").trim_end_matches([':', '：']),
            lang.t("cp.verdict"),
            lang.t("cp.evidence"),
        ));
        for c in checks {
            let evidence = c
                .evidence
                .iter()
                .map(|e| cell(&e.plain_text(lang)))
                .collect::<Vec<_>>()
                .join("<br>");
            out.push_str(&format!(
                "| {} (`{}`) | {} | **{}** | {} |\n",
                cell(c.title(lang)),
                c.id,
                cell(c.policy),
                verdict_word(lang, c.verdict),
                evidence
            ));
        }
    }
    out
}

/// The JSON document: the API's answer with each clause's section.
#[derive(Debug, Serialize)]
struct Document {
    #[serde(flatten)]
    answer: ComplianceAnswer,
    /// `policy` or `amazon_dpp`, per clause id.
    sections: Vec<SectionEntry>,
}

#[derive(Debug, Serialize)]
struct SectionEntry {
    id: &'static str,
    section: &'static str,
}

fn json(report: &Report, lang: Lang) -> String {
    let doc = Document {
        answer: answer(report, lang),
        sections: report
            .checks
            .iter()
            .map(|c| SectionEntry {
                id: c.id,
                section: Section::of(c).code(),
            })
            .collect(),
    };
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

#[derive(Template)]
#[template(path = "compliance_report.html")]
struct HtmlReport<'a> {
    lang: Lang,
    report: &'a Report,
    generated: String,
    summary: [usize; 4],
}

/// One section's rows, as the template shows them.
struct HtmlSection {
    title: &'static str,
    rows: Vec<HtmlRow>,
}

struct HtmlRow {
    id: &'static str,
    title: &'static str,
    policy: &'static str,
    verdict_code: &'static str,
    verdict: &'static str,
    evidence: Vec<String>,
}

impl HtmlReport<'_> {
    fn t(&self, key: &str) -> &'static str {
        self.lang.t(key)
    }
    fn count(&self, i: usize) -> usize {
        self.summary.get(i).copied().unwrap_or(0)
    }
    fn sections(&self) -> Vec<HtmlSection> {
        SECTIONS
            .iter()
            .map(|s| HtmlSection {
                title: self.lang.t(s.title_key()),
                rows: self
                    .report
                    .checks
                    .iter()
                    .filter(|c| Section::of(c) == *s)
                    .map(|c| HtmlRow {
                        id: c.id,
                        title: c.title(self.lang),
                        policy: c.policy,
                        verdict_code: c.verdict.code(),
                        verdict: verdict_word(self.lang, c.verdict),
                        evidence: c.evidence.iter().map(|e| e.plain_text(self.lang)).collect(),
                    })
                    .collect(),
            })
            .filter(|s| !s.rows.is_empty())
            .collect()
    }
}

fn html(report: &Report, lang: Lang) -> String {
    let page = HtmlReport {
        lang,
        report,
        generated: stockade_core::time::format_rfc3339_ms(report.generated_at_ms),
        summary: report.summary(),
    };
    let mut s = page
        .render()
        .unwrap_or_else(|e| format!("<!doctype html><p>{e}</p>"));
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::compliance::{Arg, Evidence};

    fn report() -> Report {
        Report {
            generated_at_ms: 0,
            environment: stockade_core::Environment::Dev,
            checks: vec![
                Check {
                    id: "egress",
                    policy: "000 §2",
                    verdict: Verdict::Pass,
                    evidence: vec![Evidence::new(
                        "egress_allow",
                        vec![Arg::Count(1), Arg::Text("<b>a|b</b>".into())],
                    )],
                },
                Check {
                    id: "dpp_transit",
                    policy: "DPP in transit",
                    verdict: Verdict::Fail,
                    evidence: vec![Evidence::new(
                        "dpp_rests_on",
                        vec![Arg::Text("tls (fail)".into())],
                    )],
                },
            ],
        }
    }

    #[test]
    fn every_format_holds_every_clause_in_its_section() {
        let r = report();
        let md = render(&r, Format::Md, Lang::En);
        assert!(
            md.contains("(`egress`)") && md.contains("(`dpp_transit`)"),
            "{md}"
        );
        assert!(md.contains("a\\|b") && md.contains("## Amazon Data Protection Policy"));
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, Format::Json, Lang::En)).unwrap();
        assert_eq!(json["clauses"][1]["verdict"], "fail");
        assert_eq!(json["sections"][1]["section"], "amazon_dpp");
        let html = render(&r, Format::Html, Lang::Zh);
        assert!(
            html.contains("id=\"clause-dpp_transit\"") && html.contains("&#60;b&#62;"),
            "{html}"
        );
        assert!(!html.contains("<b>a") && !html.contains("src=") && !html.contains("href="));
    }
}
