//! The linter: every problem a reviewer should see before a workflow is applied, as
//! `line:col rule message`.
//!
//! [`lint_document`] checks one file on its own; [`lint_set`] checks files together,
//! adding the checks that need several workflows (`on_error` and `workflow.call`
//! cycles). A file that does not parse yields its parse error and nothing else. Problem
//! messages name keys, step ids and rules, never the value of a suspected secret.

mod import;
mod refs;
mod script;
mod steps;

pub use import::REVIEW_MARKER;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use stockade_core::Environment;

use crate::definition::{BUILTIN_ERROR_WORKFLOW, Trigger, WebhookAuth, Workflow};
use crate::schedule::CronSchedule;
use crate::steps::is_event_kind;
use crate::yaml::{self, Located, Node, Pos};

/// A lint rule. Its name is what `stockade workflow lint` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    Schema,
    UnknownStep,
    UndeclaredConnection,
    UndeclaredCredential,
    UndeclaredHost,
    UndeclaredEvent,
    UnknownReference,
    Expression,
    SecretLiteral,
    PiiFlow,
    OnErrorCycle,
    CallCycle,
    Schedule,
    MissingOnError,
    Script,
    UnsupportedNode,
    NeedsReview,
}

impl Rule {
    pub const ALL: [Rule; 17] = [
        Rule::Schema,
        Rule::UnknownStep,
        Rule::UndeclaredConnection,
        Rule::UndeclaredCredential,
        Rule::UndeclaredHost,
        Rule::UndeclaredEvent,
        Rule::UnknownReference,
        Rule::Expression,
        Rule::SecretLiteral,
        Rule::PiiFlow,
        Rule::OnErrorCycle,
        Rule::CallCycle,
        Rule::Schedule,
        Rule::MissingOnError,
        Rule::Script,
        Rule::UnsupportedNode,
        Rule::NeedsReview,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Schema => "schema",
            Rule::UnknownStep => "unknown-step",
            Rule::UndeclaredConnection => "undeclared-connection",
            Rule::UndeclaredCredential => "undeclared-credential",
            Rule::UndeclaredHost => "undeclared-host",
            Rule::UndeclaredEvent => "undeclared-event",
            Rule::UnknownReference => "unknown-reference",
            Rule::Expression => "expression",
            Rule::SecretLiteral => "secret-literal",
            Rule::PiiFlow => "pii-flow",
            Rule::OnErrorCycle => "on-error-cycle",
            Rule::CallCycle => "call-cycle",
            Rule::Schedule => "schedule",
            Rule::MissingOnError => "missing-on-error",
            Rule::Script => "script",
            Rule::UnsupportedNode => "unsupported-node",
            Rule::NeedsReview => "needs-review",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub pos: Pos,
    pub rule: Rule,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.pos, self.rule, self.message)
    }
}

/// What the linter is told about where the workflows will run.
#[derive(Debug, Clone)]
pub struct LintOptions {
    /// The target environment; `prod` requires an explicit `on_error`.
    pub env: Option<Environment>,
    /// "Now", for the check that a schedule fires at all.
    pub now: DateTime<Utc>,
    /// The `script` limits' maxima (`[workflows.script]`).
    pub script: crate::exec::ScriptSettings,
}

impl Default for LintOptions {
    fn default() -> Self {
        LintOptions {
            env: None,
            now: DateTime::<Utc>::from(std::time::SystemTime::now()),
            script: crate::exec::ScriptSettings::default(),
        }
    }
}

/// Collects problems.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn add(&mut self, pos: Pos, rule: Rule, message: impl Into<String>) {
        self.problems.push(Problem {
            pos,
            rule,
            message: message.into(),
        });
    }
}

/// One file's result: the workflow if it parsed, and its problems in file order.
#[derive(Debug)]
pub struct Linted {
    pub workflow: Option<Workflow>,
    pub problems: Vec<Problem>,
}

/// Lint one document on its own.
pub fn lint_document(text: &str, options: &LintOptions) -> Linted {
    let mut report = Report::default();
    let tree: Located<Node> = match yaml::parse(text) {
        Ok(t) => t,
        Err(e) => return parse_failure(e),
    };
    scan_secrets(&tree, &mut report);
    let workflow = match Workflow::parse(text) {
        Ok(w) => w,
        Err(e) => {
            report.add(e.pos, Rule::Schema, e.message);
            report.problems.sort();
            return Linted {
                workflow: None,
                problems: report.problems,
            };
        }
    };
    check_header(&workflow, options, &mut report);
    steps::check(&workflow, &mut report);
    script::check(&workflow, text, options, &mut report);
    import::check(&workflow, &tree, &mut report);
    report.problems.sort();
    report.problems.dedup();
    Linted {
        workflow: Some(workflow),
        problems: report.problems,
    }
}

fn parse_failure(e: yaml::ParseError) -> Linted {
    Linted {
        workflow: None,
        problems: vec![Problem {
            pos: e.pos,
            rule: Rule::Schema,
            message: e.message,
        }],
    }
}

fn scan_secrets(tree: &Located<Node>, report: &mut Report) {
    let mut strings = Vec::new();
    tree.value.strings(tree.pos, &mut strings);
    for (s, pos) in strings {
        if let Some(why) = crate::secrets::looks_like_secret(s) {
            report.add(
                pos,
                Rule::SecretLiteral,
                format!("this literal looks like {why}: keep secrets in the credential store and name them in permissions.credentials"),
            );
        }
    }
}

fn declared(list: &[Located<String>], name: &str) -> bool {
    list.iter().any(|l| l.value == name)
}

/// Name, trigger, permissions and `on_error`.
/// Numbers that must stay within bounds, wherever they are written.
fn check_bounds(w: &Workflow, report: &mut Report) {
    if let Some(c) = &w.concurrency
        && !(1..=1000).contains(&c.limit.value)
    {
        report.add(
            c.limit.pos,
            Rule::Schema,
            "concurrency.limit is between 1 and 1000",
        );
    }
    let retries = w
        .retry
        .iter()
        .chain(w.all_steps().into_iter().filter_map(|s| s.retry.as_ref()));
    for r in retries {
        if !(1..=20).contains(&r.attempts.value) {
            report.add(
                r.attempts.pos,
                Rule::Schema,
                "retry.attempts is between 1 and 20 (the first try included)",
            );
        }
        if let (Some(initial), Some(max)) = (&r.initial, &r.max)
            && initial.duration > max.duration
        {
            report.add(
                initial.pos,
                Rule::Schema,
                "retry.initial is longer than retry.max",
            );
        }
    }
    if let Trigger::Webhook(h) = &w.trigger.value {
        let p = &h.path;
        if !valid_webhook_path(p) {
            report.add(
                p.pos,
                Rule::Schema,
                "a webhook path is 1 to 128 lower-case letters, digits, `-`, `_` and `/`, starting with a letter or digit, with no empty segment (`//`, a trailing `/`); it is served at /hooks/workflows/PATH",
            );
        }
    }
}

/// Whether `path` is a well-formed webhook path (served at `/hooks/workflows/PATH`): 1 to
/// 128 of `[a-z0-9/_-]`, starting with a letter or digit, with no empty segment.
pub fn valid_webhook_path(path: &str) -> bool {
    path.len() <= 128
        && path
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && path.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'/')
        })
        && path.split('/').all(|seg| !seg.is_empty())
}

/// An input's default matches its type; a required input has none.
fn check_inputs(w: &Workflow, report: &mut Report) {
    use crate::definition::InputType as T;
    use serde_json::Value as J;
    for (name, spec) in &w.inputs {
        let Some(default) = &spec.default else {
            continue;
        };
        let pos = default.pos;
        let default = &default.value;
        let fits = match spec.kind {
            T::String => default.is_string(),
            T::Integer => default.is_i64() || default.is_u64(),
            T::Number => default.is_number(),
            T::Boolean => default.is_boolean(),
            T::Object => matches!(default, J::Object(_)),
            T::Array => default.is_array(),
        };
        if !fits {
            report.add(
                pos,
                Rule::Schema,
                format!("input `{name}`: the default does not match its type"),
            );
        }
        if spec.required {
            report.add(
                pos,
                Rule::Schema,
                format!("input `{name}` is required and has a default: choose one"),
            );
        }
    }
}

fn check_header(w: &Workflow, options: &LintOptions, report: &mut Report) {
    check_bounds(w, report);
    check_inputs(w, report);
    let name = &w.name;
    if !valid_name(name) {
        report.add(
            name.pos,
            Rule::Schema,
            "a workflow name is 1-64 lower-case letters, digits, `-`, `_` or `.`, starting with a letter or digit",
        );
    }
    for e in &w.permissions.events {
        if !is_event_kind(e) {
            report.add(
                e.pos,
                Rule::Schema,
                format!("unknown event kind `{}`", e.value),
            );
        }
    }
    match &w.trigger.value {
        Trigger::Schedule(s) => {
            let tz = s.tz.as_ref().map(|t| t.value.as_str());
            if let Err(e) = CronSchedule::parse(&s.cron, tz, options.now) {
                let pos = match (&e, &s.tz) {
                    (crate::schedule::ScheduleError::Zone(_), Some(t)) => t.pos,
                    _ => s.cron.pos,
                };
                report.add(pos, Rule::Schedule, e.to_string());
            }
        }
        Trigger::Webhook(h) => {
            if let WebhookAuth::Hmac(cred) = &h.auth.value
                && !declared(&w.permissions.credentials, cred)
            {
                report.add(
                    cred.pos,
                    Rule::UndeclaredCredential,
                    format!(
                        "credential `{}` is not in permissions.credentials",
                        cred.value
                    ),
                );
            }
        }
        Trigger::Event(e) => {
            if !is_event_kind(&e.kind) {
                report.add(
                    e.kind.pos,
                    Rule::Schema,
                    format!("unknown event kind `{}`", e.kind.value),
                );
            } else if !declared(&w.permissions.events, &e.kind) {
                report.add(
                    e.kind.pos,
                    Rule::UndeclaredEvent,
                    format!("event `{}` is not in permissions.events", e.kind.value),
                );
            }
        }
        Trigger::Manual => {}
    }
    if let Some(on_error) = &w.on_error {
        if on_error.value == w.name.value {
            report.add(
                on_error.pos,
                Rule::OnErrorCycle,
                format!("on_error cycle: {0} → {0}", w.name.value),
            );
        }
    } else if options.env == Some(Environment::Prod) {
        report.add(
            w.name.pos,
            Rule::MissingOnError,
            format!("a prod workflow names its error workflow: add `on_error: {BUILTIN_ERROR_WORKFLOW}` or another"),
        );
    }
}

/// Whether `name` is a valid workflow name.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        })
}

/// Lint files together: each on its own, then `on_error` and `workflow.call` cycles
/// among them. Returns the problems per file, in the order given.
pub fn lint_set(files: &[(String, String)], options: &LintOptions) -> Vec<(String, Vec<Problem>)> {
    let mut linted: Vec<(String, Linted)> = files
        .iter()
        .map(|(path, text)| (path.clone(), lint_document(text, options)))
        .collect();
    // The first file with a name owns it; later ones are reported.
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (_, l)) in linted.iter().enumerate() {
        if let Some(w) = &l.workflow {
            by_name.entry(w.name.value.clone()).or_insert(i);
        }
    }
    let mut extra: Vec<(usize, Problem)> = Vec::new();
    for (i, (_, l)) in linted.iter().enumerate() {
        let Some(w) = &l.workflow else { continue };
        if let Some(&first) = by_name.get(&w.name.value).filter(|&&f| f != i) {
            let other = linted.get(first).map_or("", |(p, _)| p.as_str());
            let message = format!("workflow name `{}` is also used by {other}", w.name.value);
            extra.push((
                i,
                Problem {
                    pos: w.name.pos,
                    rule: Rule::Schema,
                    message,
                },
            ));
        }
    }
    webhook_collisions(&linted, &mut extra);
    for (i, (_, l)) in linted.iter().enumerate() {
        let Some(w) = &l.workflow else { continue };
        let on_error = |w: &Workflow| w.on_error.iter().map(|o| o.value.clone()).collect();
        if let Some(o) = w.on_error.as_ref().filter(|o| o.value != w.name.value)
            && let Some(path) = path_between(&o.value, &w.name, &by_name, &linted, on_error)
        {
            let cycle: Vec<String> = std::iter::once(w.name.value.clone()).chain(path).collect();
            extra.push((
                i,
                cycle_problem(o.pos, Rule::OnErrorCycle, "on_error", &cycle),
            ));
        }
        let calls = |w: &Workflow| steps::calls(w).into_iter().map(|(t, _)| t).collect();
        for (target, pos) in steps::calls(w) {
            let path = if target == w.name.value {
                Some(vec![target])
            } else {
                path_between(&target, &w.name, &by_name, &linted, calls)
            };
            if let Some(path) = path {
                let cycle: Vec<String> =
                    std::iter::once(w.name.value.clone()).chain(path).collect();
                extra.push((
                    i,
                    cycle_problem(pos, Rule::CallCycle, "workflow.call", &cycle),
                ));
            }
        }
    }
    for (i, p) in extra {
        if let Some((_, l)) = linted.get_mut(i) {
            l.problems.push(p);
            l.problems.sort();
            l.problems.dedup();
        }
    }
    linted
        .into_iter()
        .map(|(path, l)| (path, l.problems))
        .collect()
}

/// Two workflows linted together with the same webhook path: the later one is reported
/// (one URL can start only one workflow).
fn webhook_collisions(linted: &[(String, Linted)], extra: &mut Vec<(usize, Problem)>) {
    let mut by_path: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (_, l)) in linted.iter().enumerate() {
        let Some(w) = &l.workflow else { continue };
        let Trigger::Webhook(h) = &w.trigger.value else {
            continue;
        };
        match by_path.get(h.path.value.as_str()) {
            Some(&first) => {
                let other = linted.get(first).map_or("", |(p, _)| p.as_str());
                let message = format!(
                    "webhook path `{}` is also used by {other}: /hooks/workflows/{} can start only one workflow",
                    h.path.value, h.path.value
                );
                extra.push((
                    i,
                    Problem {
                        pos: h.path.pos,
                        rule: Rule::Schema,
                        message,
                    },
                ));
            }
            None => {
                by_path.insert(h.path.value.as_str(), i);
            }
        }
    }
}

fn cycle_problem(pos: Pos, rule: Rule, what: &str, cycle: &[String]) -> Problem {
    Problem {
        pos,
        rule,
        message: format!("{what} cycle: {}", cycle.join(" → ")),
    }
}

/// A path `from` … `to` along `edges` among the workflows linted together, if any.
fn path_between(
    from: &str,
    to: &str,
    by_name: &BTreeMap<String, usize>,
    linted: &[(String, Linted)],
    edges: impl Fn(&Workflow) -> Vec<String>,
) -> Option<Vec<String>> {
    let workflow = |name: &str| {
        by_name
            .get(name)
            .and_then(|&i| linted.get(i))
            .and_then(|(_, l)| l.workflow.as_ref())
    };
    // Breadth-first over paths; the graph is a handful of files.
    let mut queue: std::collections::VecDeque<Vec<String>> = [vec![from.to_owned()]].into();
    let mut seen: Vec<String> = vec![from.to_owned()];
    while let Some(path) = queue.pop_front() {
        let Some(w) = path.last().and_then(|last| workflow(last)) else {
            continue;
        };
        for next in edges(w) {
            let mut p = path.clone();
            p.push(next.clone());
            if next == to {
                return Some(p);
            }
            if !seen.contains(&next) {
                seen.push(next);
                queue.push_back(p);
            }
        }
    }
    None
}
