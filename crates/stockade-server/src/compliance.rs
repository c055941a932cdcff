//! The compliance report's shape: each clause of the company's security policy with a
//! verdict and the live evidence behind it, and the [`ComplianceSource`] that gathers it.
//!
//! The composition root (`stockade_app::compliance`) gathers the evidence — it alone sees
//! both the configuration and the running system — and hands the server a source; the
//! console page (`/compliance`) and `GET /api/v1/compliance` only render what it returns,
//! and the CLI's report reuses the same gathering.
//!
//! Invariants: a report names every clause, each with exactly one [`Verdict`]; a clause
//! this process cannot check says so ([`Verdict::CannotCheck`]) — nothing passes by
//! default. Evidence is a catalogue key (`cf.<key>` in `static/i18n/*.tsv`) with typed
//! arguments, so each reader gets it in their language and times in their zone; it holds
//! counts, settings, dates and hashes, never a secret or personal data.

use std::future::Future;
use std::pin::Pin;

use stockade_core::Environment;

use crate::i18n::{Lang, local_time};

/// A clause's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The evidence shows the clause is enforced.
    Pass,
    /// The evidence shows it is not.
    Fail,
    /// The clause does not apply here (e.g. the four-eyes rule outside prod).
    NotApplicable,
    /// This process cannot check it (a host control, or evidence a later release adds).
    CannotCheck,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::NotApplicable,
        Verdict::CannotCheck,
    ];

    /// The stable code (JSON, CSS class, CLI).
    pub fn code(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NotApplicable => "not_applicable",
            Verdict::CannotCheck => "cannot_check",
        }
    }
}

/// One argument of an evidence sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Text(String),
    Count(i64),
    /// A moment, UTC milliseconds (shown in the reader's time zone).
    Time(i64),
}

impl Arg {
    /// As shown to a reader in `tz`.
    pub fn show(&self, tz: chrono_tz::Tz) -> String {
        match self {
            Arg::Text(s) => s.clone(),
            Arg::Count(n) => n.to_string(),
            Arg::Time(ms) => local_time(tz, *ms),
        }
    }
    /// As written in JSON (times in UTC, RFC 3339).
    pub fn plain(&self) -> String {
        match self {
            Arg::Text(s) => s.clone(),
            Arg::Count(n) => n.to_string(),
            Arg::Time(ms) => stockade_core::time::format_rfc3339_ms(*ms),
        }
    }
}

/// One fact: the catalogue key `cf.<key>` and its arguments (`{1}`, `{2}`, … in the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub key: &'static str,
    pub args: Vec<Arg>,
}

impl Evidence {
    pub fn new(key: &'static str, args: Vec<Arg>) -> Evidence {
        Evidence { key, args }
    }
    /// The sentence in `lang`, times in `tz`.
    pub fn text(&self, lang: Lang, tz: chrono_tz::Tz) -> String {
        fill(
            lang.t(&format!("cf.{}", self.key)),
            self.args.iter().map(|a| a.show(tz)),
        )
    }
    /// The sentence in `lang`, times in UTC (JSON).
    pub fn plain_text(&self, lang: Lang) -> String {
        fill(
            lang.t(&format!("cf.{}", self.key)),
            self.args.iter().map(Arg::plain),
        )
    }
}

/// `template` with `{1}`, `{2}`, … replaced by the arguments in turn.
pub fn fill(template: &str, args: impl Iterator<Item = String>) -> String {
    let mut out = template.to_owned();
    for (i, a) in args.enumerate() {
        out = out.replace(&format!("{{{}}}", i + 1), &a);
    }
    out
}

/// One clause of the policy and what the system shows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Stable id; the clause's name is the catalogue key `cp.<id>`.
    pub id: &'static str,
    /// Where the clause is in the policy documents (`000 §4`, `002 §II`), as written.
    pub policy: &'static str,
    pub verdict: Verdict,
    pub evidence: Vec<Evidence>,
}

impl Check {
    pub fn title(&self, lang: Lang) -> &'static str {
        lang.t(&format!("cp.{}", self.id))
    }
}

/// The whole report, taken at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub generated_at_ms: i64,
    pub environment: Environment,
    pub checks: Vec<Check>,
}

impl Report {
    /// How many clauses have each verdict, in [`Verdict::ALL`] order.
    pub fn summary(&self) -> [usize; 4] {
        Verdict::ALL.map(|v| self.checks.iter().filter(|c| c.verdict == v).count())
    }
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// Gathers a fresh [`Report`] (the composition root implements it).
pub trait ComplianceSource: Send + Sync {
    fn report(&self) -> Pin<Box<dyn Future<Output = Result<Report, String>> + Send + '_>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_fills_its_arguments_in_the_language_and_zone() {
        let e = Evidence::new("mfa_users", vec![Arg::Count(2), Arg::Count(3)]);
        assert!(e.text(Lang::En, chrono_tz::UTC).contains('2'));
        assert!(!e.text(Lang::Zh, chrono_tz::UTC).contains("{1}"));
        assert_eq!(
            fill("{1} of {2}", ["a".into(), "b".into()].into_iter()),
            "a of b"
        );
        let t = Arg::Time(0);
        assert_eq!(t.show(chrono_tz::Asia::Shanghai), "1970-01-01 08:00:00 CST");
        assert_eq!(t.plain(), "1970-01-01T00:00:00.000Z");
    }
}
