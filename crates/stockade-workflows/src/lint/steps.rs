//! Per-step checks: ids, kinds, parameters, permissions, expressions and references,
//! and buyer data reaching a step that sends it out.
//!
//! Steps are walked in execution order with what is [`Visible`] at each point: a step
//! sees the steps before it in its own list and in the lists around it, never a step
//! in a branch it is not in, nor a later one.

use std::collections::BTreeMap;

use minijinja::Environment;

use super::refs::{self, Visible};
use super::{Report, Rule, declared};
use crate::definition::{Step, Workflow};
use crate::expr;
use crate::steps::{Control, Role, StepKind, find};
use crate::yaml::{Located, Node, Pos};

struct Walk<'a> {
    w: &'a Workflow,
    env: Environment<'static>,
    report: &'a mut Report,
    ids: BTreeMap<String, Pos>,
}

/// Check every step of `w`.
pub(crate) fn check(w: &Workflow, report: &mut Report) {
    let all: Vec<String> = w.all_steps().iter().map(|s| s.id.value.clone()).collect();
    let mut walk = Walk {
        w,
        env: expr::environment(),
        report,
        ids: BTreeMap::new(),
    };
    let visible = Visible {
        elsewhere: all,
        ..Visible::default()
    };
    if let Some(key) = w.concurrency.as_ref().and_then(|c| c.key.as_ref()) {
        walk.expressions(key.pos, &key.value, &visible, false);
    }
    if w.steps.is_empty() {
        walk.report
            .add(w.name.pos, Rule::Schema, "a workflow has at least one step");
    }
    walk.list(&w.steps, visible);
}

/// The `workflow.call` targets of `w` written literally, with their positions.
pub(crate) fn calls(w: &Workflow) -> Vec<(String, Pos)> {
    w.all_steps()
        .into_iter()
        .filter(|s| s.uses.value == "workflow.call")
        .filter_map(|s| s.param("workflow"))
        .filter_map(|p| p.value.as_str().map(|t| (t.to_owned(), p.pos)))
        .collect()
}

impl Walk<'_> {
    fn list(&mut self, steps: &[Step], mut visible: Visible) {
        for step in steps {
            self.step(step, &visible);
            visible.steps.push(step.id.value.clone());
            let kind = find(&step.uses);
            let buyer = self.w.permissions.buyer_fields;
            for p in kind.map_or(&[][..], |k| k.pii_outputs) {
                if buyer {
                    visible
                        .pii
                        .push(format!("steps.{}.output.{p}", step.id.value));
                }
            }
            // Taint: a step fed with buyer data yields buyer data.
            if self.reads_pii(step, &visible) && !kind.is_some_and(|k| k.pii_sink) {
                visible.pii.push(format!("steps.{}.output", step.id.value));
            }
        }
    }

    fn step(&mut self, step: &Step, visible: &Visible) {
        let id = &step.id;
        if !valid_id(id) {
            self.report.add(
                id.pos,
                Rule::Schema,
                "a step id is lower-case letters, digits and `_`, starting with a letter",
            );
        }
        if let Some(first) = self.ids.insert(id.value.clone(), id.pos) {
            self.report.add(
                id.pos,
                Rule::Schema,
                format!("step id `{}` is already used at {first}", id.value),
            );
        }
        let kind = find(&step.uses);
        if kind.is_none() {
            self.report.add(
                step.uses.pos,
                Rule::UnknownStep,
                format!(
                    "unknown step kind `{}` (docs/workflows.md lists them)",
                    step.uses.value
                ),
            );
        }
        if let Some(cond) = &step.condition {
            self.expressions(cond.pos, &cond.value, visible, true);
        }
        if let Some(k) = kind {
            self.params(step, k);
            self.children(step, k, visible);
        }
        self.with_values(step, kind, visible);
        if let Some(allow) = &step.allow_pii
            && allow.reason.value.trim().len() < 10
        {
            self.report.add(
                allow.reason.pos,
                Rule::PiiFlow,
                "allow_pii needs a reason a reviewer can judge (10 characters or more)",
            );
        }
    }

    fn params(&mut self, step: &Step, k: &StepKind) {
        let with = step.with.as_ref();
        let entries: &[(Located<String>, Located<Node>)] = match with.map(|w| &w.value) {
            None | Some(Node::Null) => &[],
            Some(Node::Map(e)) => e,
            Some(_) => {
                let pos = with.map_or(step.uses.pos, |w| w.pos);
                self.report
                    .add(pos, Rule::Schema, "`with` is a mapping of parameters");
                return;
            }
        };
        for (key, value) in entries {
            match k.params.iter().find(|p| p.name == key.value) {
                None => self.report.add(
                    key.pos,
                    Rule::Schema,
                    format!(
                        "{} has no parameter `{}` (it takes {})",
                        k.name,
                        key.value,
                        k.params
                            .iter()
                            .map(|p| p.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                Some(p) => {
                    self.role(p.role, value);
                    self.literal(k.name, p.name, value);
                }
            }
        }
        for p in k.params.iter().filter(|p| p.required) {
            if !entries.iter().any(|(key, _)| key.value == p.name) {
                self.report.add(
                    step.uses.pos,
                    Rule::Schema,
                    format!("{} needs `with.{}`", k.name, p.name),
                );
            }
        }
        if k.control == Control::ForEach {
            self.loop_bounds(entries);
        }
        if k.name == "wait" {
            let n = ["duration", "until", "event"]
                .iter()
                .filter(|n| entries.iter().any(|(key, _)| key.value == **n))
                .count();
            if n != 1 {
                self.report.add(
                    step.uses.pos,
                    Rule::Schema,
                    "wait takes exactly one of `duration`, `until` or `event`",
                );
            }
        }
    }

    /// A literal value checked against its parameter's choices or format.
    fn literal(&mut self, kind: &str, param: &str, value: &Located<Node>) {
        let Some(text) = value.value.as_str().filter(|t| !expr::has_expression(t)) else {
            return;
        };
        let choices = crate::steps::CHOICES
            .iter()
            .find(|(k, p, _)| *k == kind && *p == param);
        if let Some((_, _, allowed)) = choices
            && !allowed.contains(&text)
        {
            let message = format!("{kind} {param} is one of {}", allowed.join(", "));
            self.report.add(value.pos, Rule::Schema, message);
        }
        let is_duration = crate::steps::DURATIONS.contains(&(kind, param));
        if is_duration && let Err(e) = crate::duration::parse(text) {
            self.report.add(value.pos, Rule::Schema, e);
        }
    }

    /// `for_each` runs a bounded number of items with bounded parallelism.
    fn loop_bounds(&mut self, entries: &[(Located<String>, Located<Node>)]) {
        for (key, value) in entries {
            let (max, what) = match key.value.as_str() {
                "max_items" => (10_000, "max_items is between 1 and 10000"),
                "parallelism" => (16, "parallelism is between 1 and 16"),
                _ => continue,
            };
            match &value.value {
                Node::Int(n) if (1..=max).contains(n) => {}
                _ => self.report.add(value.pos, Rule::Schema, what),
            }
        }
    }

    /// Permission checks of a parameter that names something.
    fn role(&mut self, role: Role, value: &Located<Node>) {
        let text = value.value.as_str();
        let literal = text.filter(|t| !expr::has_expression(t));
        let perms = &self.w.permissions;
        match role {
            Role::Data => {}
            Role::Connection => {
                if let Some(c) = literal.filter(|c| !declared(&perms.connections, c)) {
                    self.report.add(
                        value.pos,
                        Rule::UndeclaredConnection,
                        format!("connection `{c}` is not in permissions.connections"),
                    );
                }
            }
            Role::Credential => match literal {
                None => self.report.add(
                    value.pos,
                    Rule::UndeclaredCredential,
                    "a credential is named literally, never computed",
                ),
                Some(c) if !declared(&perms.credentials, c) => {
                    self.report.add(
                        value.pos,
                        Rule::UndeclaredCredential,
                        format!("credential `{c}` is not in permissions.credentials"),
                    );
                }
                Some(_) => {}
            },
            Role::Event => match literal {
                Some(e) if !crate::steps::is_event_kind(e) => {
                    self.report
                        .add(value.pos, Rule::Schema, format!("unknown event kind `{e}`"));
                }
                Some(e) if !declared(&perms.events, e) => {
                    self.report.add(
                        value.pos,
                        Rule::UndeclaredEvent,
                        format!("event `{e}` is not in permissions.events"),
                    );
                }
                Some(_) => {}
                None => self.report.add(
                    value.pos,
                    Rule::UndeclaredEvent,
                    "an event kind is named literally",
                ),
            },
            Role::Url => self.url(value.pos, text),
            Role::Code => {
                if text.is_none() {
                    self.report.add(
                        value.pos,
                        Rule::Schema,
                        "`code` is the script's text, written literally",
                    );
                }
            }
            Role::Channel => {
                if literal.is_none() {
                    self.report.add(
                        value.pos,
                        Rule::Schema,
                        "an alert channel is named literally",
                    );
                }
            }
            Role::Workflow => {
                if literal.is_none() {
                    self.report.add(
                        value.pos,
                        Rule::Schema,
                        "workflow.call names its workflow literally",
                    );
                }
            }
        }
    }

    fn url(&mut self, pos: Pos, text: Option<&str>) {
        let Some(url) = text else {
            self.report.add(pos, Rule::Schema, "a URL is a string");
            return;
        };
        let Some(rest) = url.strip_prefix("https://") else {
            self.report.add(
                pos,
                Rule::UndeclaredHost,
                "requests go out over https:// only, to a host written literally",
            );
            return;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        if host.is_empty() || expr::has_expression(host) || host.contains('}') {
            self.report.add(
                pos,
                Rule::UndeclaredHost,
                "the host of a URL is written literally so it can be declared",
            );
        } else if !declared(&self.w.permissions.hosts, host) {
            self.report.add(
                pos,
                Rule::UndeclaredHost,
                format!("host `{host}` is not in permissions.hosts"),
            );
        }
    }

    fn children(&mut self, step: &Step, k: &StepKind, visible: &Visible) {
        let allowed: &[&str] = match k.control {
            Control::None => &[],
            Control::If => &["then", "else"],
            Control::Switch => &["cases", "default"],
            Control::ForEach => &["steps"],
        };
        let present = [
            ("then", step.then.is_some()),
            ("else", step.otherwise.is_some()),
            ("cases", step.cases.is_some()),
            ("default", step.default.is_some()),
            ("steps", step.steps.is_some()),
        ];
        for (name, is) in present {
            if is && !allowed.contains(&name) {
                self.report.add(
                    step.uses.pos,
                    Rule::Schema,
                    format!("{} takes no `{name}`", k.name),
                );
            }
        }
        if let Some(first) = allowed
            .first()
            .filter(|f| !present.iter().any(|(n, is)| n == *f && *is))
        {
            self.report.add(
                step.uses.pos,
                Rule::Schema,
                format!("{} needs `{first}`", k.name),
            );
        }
        let mut inner = visible.clone();
        if k.control == Control::ForEach {
            inner.in_loop = true;
            let items_pii = step
                .param("items")
                .and_then(|i| i.value.as_str())
                .is_some_and(|t| self.refs_of(t, false).iter().any(|r| visible.is_pii(r)));
            if items_pii {
                inner.pii.push("item".into());
            }
        }
        for list in step.children() {
            self.list(list, inner.clone());
        }
    }

    /// Expressions in `with`: syntax, references, and buyer data into a sink.
    fn with_values(&mut self, step: &Step, kind: Option<&StepKind>, visible: &Visible) {
        let Some(with) = &step.with else { return };
        let mut strings = Vec::new();
        with.value.strings(with.pos, &mut strings);
        strings.retain(|(_, pos)| !is_code(step, kind, *pos));
        let condition_param = kind.is_some_and(|k| k.control == Control::If);
        for (text, pos) in strings {
            let is_condition =
                condition_param && step.param("condition").is_some_and(|c| c.pos == pos);
            let pii = self.expressions(pos, text, visible, is_condition);
            if pii && kind.is_some_and(|k| k.pii_sink) && step.allow_pii.is_none() {
                self.report.add(
                    pos,
                    Rule::PiiFlow,
                    format!("buyer data reaches {} here: remove it, or add `allow_pii: {{reason: …}}` for review", step.uses.value),
                );
            }
        }
    }

    /// Check one string's expressions; returns whether it reads buyer data.
    fn expressions(&mut self, pos: Pos, text: &str, visible: &Visible, condition: bool) -> bool {
        if !condition && !expr::has_expression(text) {
            return false;
        }
        let refs = match self.compile(text, condition) {
            Ok(r) => r,
            Err(e) => {
                self.report.add(pos, Rule::Expression, e.0);
                return false;
            }
        };
        for r in &refs {
            if let Some(why) = refs::check(self.w, visible, r) {
                self.report
                    .add(pos, Rule::UnknownReference, format!("`{r}`: {why}"));
            }
        }
        refs.iter().any(|r| visible.is_pii(r))
    }

    fn compile(&self, text: &str, condition: bool) -> Result<Vec<String>, expr::ExprError> {
        let refs = if condition {
            expr::expression_references(&self.env, expr::condition_source(text))?
        } else {
            expr::template_references(&self.env, text)?
        };
        Ok(refs.into_iter().collect())
    }

    fn refs_of(&self, text: &str, condition: bool) -> Vec<String> {
        self.compile(text, condition).unwrap_or_default()
    }

    fn reads_pii(&self, step: &Step, visible: &Visible) -> bool {
        let mut strings = Vec::new();
        if let Some(with) = &step.with {
            with.value.strings(with.pos, &mut strings);
        }
        strings.retain(|(_, pos)| !is_code(step, find(&step.uses), *pos));
        strings
            .iter()
            .any(|(t, _)| self.refs_of(t, false).iter().any(|r| visible.is_pii(r)))
    }
}

/// Whether `pos` is a [`Role::Code`] parameter of `step` (literal text, no expressions).
fn is_code(step: &Step, kind: Option<&StepKind>, pos: Pos) -> bool {
    kind.is_some_and(|k| {
        k.params
            .iter()
            .filter(|p| p.role == Role::Code)
            .filter_map(|p| step.param(p.name))
            .any(|v| v.pos == pos)
    })
}

fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}
