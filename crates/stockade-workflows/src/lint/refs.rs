//! Checking the variables an expression reads against what exists at that point: the
//! declared inputs, the fields of the trigger, the steps that have run before, and
//! `item`/`index` inside a `for_each`.

use crate::definition::{Trigger, Workflow};
use crate::expr::{ROOTS, overlaps};

/// What is readable at one point of the workflow.
#[derive(Debug, Clone, Default)]
pub(crate) struct Visible {
    /// Ids of the steps certain to have run before this point.
    pub steps: Vec<String>,
    /// Ids of steps that exist but may not have run here (later, or in another branch).
    pub elsewhere: Vec<String>,
    /// Paths holding buyer data.
    pub pii: Vec<String>,
    /// Inside a `for_each` body.
    pub in_loop: bool,
}

impl Visible {
    pub fn is_pii(&self, path: &str) -> bool {
        self.pii.iter().any(|p| overlaps(path, p))
    }
}

/// The fields of `trigger` for a trigger kind.
pub(crate) fn trigger_fields(t: &Trigger) -> &'static [&'static str] {
    match t {
        Trigger::Schedule(_) => &[
            "at",
            "kind",
            "scheduled_at",
            "previous_fire",
            "tick_ms",
            "missed",
            "catch_up",
        ],
        Trigger::Webhook(_) => &["at", "kind", "body", "headers", "query", "path"],
        Trigger::Event(_) => &["at", "kind", "event", "event_id", "event_kind", "status"],
        Trigger::Manual => &["at", "kind", "user"],
    }
}

const EXECUTION_FIELDS: &[&str] = &["id", "workflow", "version", "started_at", "attempt"];
const STEP_FIELDS: &[&str] = &["output", "status"];

/// Why `path` cannot be read here, or `None` when it can.
pub(crate) fn check(w: &Workflow, v: &Visible, path: &str) -> Option<String> {
    let mut parts = path.split('.');
    let root = parts.next().unwrap_or("");
    let first = parts.next();
    let second = parts.next();
    if !ROOTS.contains(&root) {
        return Some(format!(
            "`{root}` is not a variable: expressions read {}",
            ROOTS.join(", ")
        ));
    }
    match (root, first) {
        ("inputs", Some(name)) if !w.inputs.contains_key(name) => {
            Some(format!("input `{name}` is not declared in inputs"))
        }
        ("trigger", Some(field)) if !trigger_fields(&w.trigger).contains(&field) => Some(format!(
            "this trigger has no field `{field}` (it has {})",
            trigger_fields(&w.trigger).join(", ")
        )),
        ("execution", Some(field)) if !EXECUTION_FIELDS.contains(&field) => Some(format!(
            "execution has no field `{field}` (it has {})",
            EXECUTION_FIELDS.join(", ")
        )),
        ("item" | "index", _) if !v.in_loop => Some(format!(
            "`{root}` exists only inside a for_each step's steps"
        )),
        ("steps", None) => Some("read one step's output: steps.ID.output".into()),
        ("steps", Some(id)) => step_ref(v, id, second),
        _ => None,
    }
}

fn step_ref(v: &Visible, id: &str, field: Option<&str>) -> Option<String> {
    if !v.steps.iter().any(|s| s == id) {
        return Some(if v.elsewhere.iter().any(|s| s == id) {
            format!(
                "step `{id}` has not run at this point (it comes later or is in another branch)"
            )
        } else {
            format!("there is no step `{id}`")
        });
    }
    match field {
        Some(f) if !STEP_FIELDS.contains(&f) => Some(format!(
            "a step has {}; `steps.{id}.{f}` does not exist",
            STEP_FIELDS.join(" and ")
        )),
        _ => None,
    }
}
