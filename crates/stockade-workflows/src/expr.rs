//! The expression language: minijinja expressions, data only.
//!
//! Strings in a step's `with` may contain `{{ expression }}` parts; a string that is a
//! single `{{ expression }}` evaluates to the expression's value (a list stays a list),
//! any other string is rendered to text. `if:` and `with.condition` hold a bare
//! expression (a `{{ … }}` wrapper is accepted) that must evaluate to a boolean.
//!
//! Invariants:
//! - Strict: reading a missing value (`steps.x.output.nope`) is an error, never a null
//!   or an empty string (n8n #35559).
//! - Bounded: fuel per evaluation, a recursion limit, a size limit on the source and on
//!   the result. No statements (`{% %}`), no template loading, no function that reaches
//!   the host: the environment holds minijinja's pure filters and tests only.
//! - Buyer data stays marked: every result says whether it was derived from a value
//!   marked as PII in its [`Scope`], by the variables the expression reads.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use stockade_core::Pii;

/// Largest expression source accepted, in bytes.
pub const MAX_SOURCE: usize = 8 * 1024;
/// Largest evaluated result, in bytes of JSON.
pub const MAX_RESULT: usize = 1024 * 1024;
/// Work allowed per evaluation (minijinja fuel: roughly one unit per instruction).
pub const FUEL: u64 = 50_000;

/// The variables every expression may start from.
pub const ROOTS: &[&str] = &["inputs", "trigger", "steps", "item", "index", "execution"];

/// An expression that does not compile or does not evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExprError(pub String);

impl From<minijinja::Error> for ExprError {
    fn from(e: minijinja::Error) -> Self {
        // The kind and minijinja's own detail: never the values in the context.
        let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
        ExprError(format!("{}{detail}", e.kind()))
    }
}

/// The environment every workflow expression runs in.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    // `debug()` prints the whole context without naming a variable, which would let
    // buyer data out unmarked; `namespace()` is mutable state. Neither is offered.
    env.remove_global("debug");
    env.remove_global("namespace");
    env
}

/// Whether a string holds an expression at all.
pub fn has_expression(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// The expression of a string that is exactly one `{{ … }}`, else `None`.
pub fn whole_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim())
}

/// The expression of a condition (`if:`), with an optional `{{ }}` wrapper removed.
pub fn condition_source(text: &str) -> &str {
    whole_expression(text).unwrap_or(text.trim())
}

fn check_source(text: &str) -> Result<(), ExprError> {
    if text.len() > MAX_SOURCE {
        return Err(ExprError(format!(
            "expression longer than {MAX_SOURCE} bytes"
        )));
    }
    if text.contains("{%") || text.contains("{#") {
        return Err(ExprError(
            "only {{ expressions }} are allowed: no {% statements %} or {# comments #}".into(),
        ));
    }
    Ok(())
}

/// The variables a string value reads, as dotted paths (`steps.fetch.output.low`).
pub fn template_references(
    env: &Environment<'_>,
    text: &str,
) -> Result<BTreeSet<String>, ExprError> {
    check_source(text)?;
    if let Some(inner) = whole_expression(text) {
        return expression_references(env, inner);
    }
    let t = env.template_from_str(text)?;
    Ok(variables(env, t.undeclared_variables(true)))
}

/// The variables a bare expression reads.
pub fn expression_references(
    env: &Environment<'_>,
    expr: &str,
) -> Result<BTreeSet<String>, ExprError> {
    check_source(expr)?;
    let e = env.compile_expression(expr)?;
    Ok(variables(env, e.undeclared_variables(true)))
}

/// The names read from the context, without the environment's functions (`range`).
fn variables(env: &Environment<'_>, names: std::collections::HashSet<String>) -> BTreeSet<String> {
    names
        .into_iter()
        .filter(|n| {
            let root = n.split('.').next().unwrap_or("");
            !env.globals().any(|(g, _)| g == root)
        })
        .collect()
}

/// Whether two dotted paths overlap: one is the other or lies inside it.
pub fn overlaps(a: &str, b: &str) -> bool {
    let inside =
        |x: &str, y: &str| x.len() > y.len() && x.starts_with(y) && x.as_bytes()[y.len()] == b'.';
    a == b || inside(a, b) || inside(b, a)
}

/// The values an expression can read, and which of them are buyer data. Its `Debug`
/// shows the variable names and marked paths, never the values.
#[derive(Clone, Default)]
pub struct Scope {
    /// `{"inputs": …, "trigger": …, "steps": {"id": {"output": …}}, …}`.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Dotted paths holding PII (`steps.order.output.buyer`, `item`).
    pub pii: Vec<String>,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("variables", &self.data.keys().collect::<Vec<_>>())
            .field("pii", &self.pii)
            .finish()
    }
}

impl Scope {
    pub fn set(&mut self, root: &str, value: serde_json::Value) {
        self.data.insert(root.to_owned(), value);
    }

    /// Record a step's output; `pii_outputs` are the paths under it holding buyer data.
    pub fn set_step_output(&mut self, id: &str, output: serde_json::Value, pii_outputs: &[&str]) {
        let steps = self
            .data
            .entry("steps")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let serde_json::Value::Object(m) = steps {
            m.insert(id.to_owned(), serde_json::json!({ "output": output }));
        }
        for p in pii_outputs {
            self.pii.push(format!("steps.{id}.output.{p}"));
        }
    }

    /// Mark a path (and everything under it) as PII.
    pub fn mark_pii(&mut self, path: &str) {
        self.pii.push(path.to_owned());
    }

    fn is_pii(&self, refs: &BTreeSet<String>) -> bool {
        refs.iter().any(|r| self.pii.iter().any(|p| overlaps(r, p)))
    }
}

/// An evaluated value and whether it was derived from buyer data. Its `Debug` prints
/// `[redacted]` for a marked value.
#[derive(Clone, PartialEq)]
pub struct Evaluated {
    pub value: serde_json::Value,
    pub pii: bool,
}

impl std::fmt::Debug for Evaluated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluated")
            .field("value", &self.for_log())
            .field("pii", &self.pii)
            .finish()
    }
}

/// A result in the core's terms: buyer data held as [`Pii`] (its JSON text), which never
/// prints or serialises its contents.
#[derive(Debug, Clone, PartialEq)]
pub enum Marked {
    Plain(serde_json::Value),
    Pii(Pii<String>),
}

impl Evaluated {
    /// The value as [`Marked`].
    pub fn into_marked(self) -> Marked {
        if self.pii {
            Marked::Pii(Pii::new(self.value.to_string()))
        } else {
            Marked::Plain(self.value)
        }
    }

    /// The value for a step that sends data out: refused when it carries buyer data and
    /// the step has no `allow_pii`.
    pub fn for_sink(&self, allow_pii: bool) -> Result<&serde_json::Value, ExprError> {
        if self.pii && !allow_pii {
            return Err(ExprError(
                "this value is derived from buyer data and the step has no allow_pii".into(),
            ));
        }
        Ok(&self.value)
    }

    /// The value as it may be logged or persisted in clear: `[redacted]` when PII.
    pub fn for_log(&self) -> serde_json::Value {
        if self.pii {
            serde_json::Value::String(stockade_core::pii::REDACTED.into())
        } else {
            self.value.clone()
        }
    }
}

fn context(scope: &Scope) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(&scope.data))
}

/// Strict mode raises on most uses of a missing value, but an expression can still
/// yield one (`steps.x.output.nope`, `[steps.x.output.nope]`): refused here.
fn check_defined(v: &minijinja::Value, depth: usize) -> Result<(), ExprError> {
    if v.is_undefined() {
        return Err(ExprError(
            "undefined value: the expression reads something that does not exist".into(),
        ));
    }
    if depth > 64 {
        return Err(ExprError("result nested too deeply".into()));
    }
    use minijinja::value::ValueKind;
    let container = matches!(
        v.kind(),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable
    );
    if container && let Ok(items) = v.try_iter() {
        for item in items {
            if v.kind() == ValueKind::Map {
                check_defined(&v.get_item(&item).unwrap_or_default(), depth + 1)?;
            } else {
                check_defined(&item, depth + 1)?;
            }
        }
    }
    Ok(())
}

fn to_json(v: minijinja::Value) -> Result<serde_json::Value, ExprError> {
    check_defined(&v, 0)?;
    let json =
        serde_json::to_value(&v).map_err(|e| ExprError(format!("result is not data: {e}")))?;
    let size = serde_json::to_vec(&json)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if size > MAX_RESULT {
        return Err(ExprError(format!("result larger than {MAX_RESULT} bytes")));
    }
    Ok(json)
}

/// Evaluate a string value of `with`: a whole `{{ expression }}` gives its value, any
/// other string its rendered text, a string without expressions itself.
pub fn eval_string(
    env: &Environment<'_>,
    text: &str,
    scope: &Scope,
) -> Result<Evaluated, ExprError> {
    eval_string_in(env, text, scope, &mut None)
}

/// [`eval_string`] with the scope as the template engine's value, made on first use and
/// kept for the next strings of one `with` (making it copies the whole scope).
fn eval_string_in(
    env: &Environment<'_>,
    text: &str,
    scope: &Scope,
    ctx: &mut Option<minijinja::Value>,
) -> Result<Evaluated, ExprError> {
    check_source(text)?;
    if !has_expression(text) {
        return Ok(Evaluated {
            value: serde_json::Value::String(text.to_owned()),
            pii: false,
        });
    }
    // What it reads matters only when something in the scope is buyer data.
    let pii = !scope.pii.is_empty() && scope.is_pii(&template_references(env, text)?);
    let ctx = ctx.get_or_insert_with(|| context(scope)).clone();
    let value = match whole_expression(text) {
        Some(inner) => to_json(env.compile_expression(inner)?.eval(ctx)?)?,
        None => {
            let rendered = env.template_from_str(text)?.render(ctx)?;
            if rendered.len() > MAX_RESULT {
                return Err(ExprError(format!("result larger than {MAX_RESULT} bytes")));
            }
            serde_json::Value::String(rendered)
        }
    };
    Ok(Evaluated { value, pii })
}

/// Evaluate a condition; anything but a boolean is an error.
pub fn eval_condition(env: &Environment<'_>, text: &str, scope: &Scope) -> Result<bool, ExprError> {
    let src = condition_source(text);
    check_source(src)?;
    let v = env.compile_expression(src)?.eval(context(scope))?;
    check_defined(&v, 0)?;
    if v.kind() != minijinja::value::ValueKind::Bool {
        return Err(ExprError(
            "a condition must evaluate to true or false".into(),
        ));
    }
    Ok(v.is_true())
}

/// Evaluate a step's `with` (or any YAML value): every string as [`eval_string`],
/// everything else as written. The result is marked PII when any part of it is.
pub fn eval_node(
    env: &Environment<'_>,
    node: &crate::yaml::Node,
    scope: &Scope,
) -> Result<Evaluated, ExprError> {
    eval_node_in(env, node, scope, &mut None)
}

fn eval_node_in(
    env: &Environment<'_>,
    node: &crate::yaml::Node,
    scope: &Scope,
    ctx: &mut Option<minijinja::Value>,
) -> Result<Evaluated, ExprError> {
    use crate::yaml::Node;
    use serde_json::Value as J;
    let mut pii = false;
    let value = match node {
        Node::Str(s) => {
            let e = eval_string_in(env, s, scope, ctx)?;
            pii = e.pii;
            e.value
        }
        Node::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let e = eval_node_in(env, &item.value, scope, ctx)?;
                pii |= e.pii;
                out.push(e.value);
            }
            J::Array(out)
        }
        Node::Map(entries) => {
            let mut out = serde_json::Map::new();
            for (k, v) in entries {
                let e = eval_node_in(env, &v.value, scope, ctx)
                    .map_err(|err| ExprError(format!("{}: {}", k.value, err.0)))?;
                pii |= e.pii;
                out.insert(k.value.clone(), e.value);
            }
            J::Object(out)
        }
        other => other.to_json(),
    };
    Ok(Evaluated { value, pii })
}
