//! One n8n workflow converted: the walk over its nodes in the planned order, what each
//! node's steps read ([`Items`]), where each step goes (its branch context), and the
//! assembly of the nested step lists, permissions and trigger into YAML.
//!
//! Invariants: every node ends up in the report exactly once; a value is translated
//! only when exact (otherwise a `script` step computes it from the original JavaScript
//! and the node is marked for review); review reasons are also written into the
//! workflow's description after [`REVIEW_MARKER`], which the linter reports
//! (`needs-review`), so nothing reaches a running workflow unreviewed; no parameter
//! value reaches the report; a node run once per item has all of its steps (its
//! generated expression script too) inside the same `for_each`, so `item` is its item.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::expr::{self, Items, Scope};
use crate::graph::{self, Ctx, Plan};
use crate::model::{Node, Workflow};
use crate::nodes;
use crate::report::{Converted, CredentialNote, NodeReport, Status};
use crate::yaml::Y;

pub use stockade_workflows::lint::REVIEW_MARKER;

/// What the whole import knows while converting one workflow.
#[derive(Debug, Default)]
pub struct Env {
    /// n8n workflow id → Stockade name, for `settings.errorWorkflow` and Execute Workflow.
    pub by_id: BTreeMap<String, String>,
    /// Ids of workflows started by an Execute Workflow Trigger (they take `inputs.items`).
    pub subworkflows: BTreeSet<String>,
    /// Ids of workflows that are error workflows (an Error Trigger).
    pub error_workflows: BTreeSet<String>,
    pub nocodb_url: Option<String>,
}

/// A step being built, before its branches are filled in.
#[derive(Debug, Clone)]
pub struct Draft {
    pub entries: Vec<(String, Y)>,
    pub branches: Vec<Branch>,
    /// The n8n node whose outputs the branches are (set with `branches`).
    pub owner: Option<usize>,
    /// Run once per item of this list (`for_each` around the step).
    pub wrap: Option<(String, String)>,
    /// Steps of the same node that run before it inside that `for_each` (its generated
    /// expression script reads the loop's `item`, so it must be inside too).
    pub pre: Vec<Draft>,
}

/// Where the nodes hanging under a branch output go.
#[derive(Debug, Clone)]
pub enum Branch {
    Then(usize),
    Else(usize),
    Case(String, usize),
    Default(Option<usize>),
    Body(usize),
}

/// Workflow-level results accumulated from the nodes.
#[derive(Debug, Default)]
pub struct Acc {
    pub trigger: Option<Y>,
    pub inputs: Option<Y>,
    pub respond_result: bool,
    pub hosts: BTreeSet<String>,
    pub credentials: Vec<CredentialNote>,
    pub events: BTreeSet<String>,
    pub channels: BTreeSet<String>,
    pub notes: Vec<String>,
    pub used_ids: BTreeSet<String>,
}

impl Acc {
    /// A step id not used yet, from `base`.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut id = base.to_owned();
        let mut i = 2;
        while self.used_ids.contains(&id) {
            id = format!("{base}_{i}");
            i += 1;
        }
        self.used_ids.insert(id.clone());
        id
    }
}

/// Converting one node.
pub struct Cx<'a> {
    pub w: &'a Workflow,
    pub node: &'a Node,
    /// The node's index in the workflow (branch contexts name it).
    pub index: usize,
    pub wf_name: &'a str,
    pub id: String,
    pub input: Items,
    /// Predecessors: (input index, node name, their items).
    pub preds: Vec<(usize, String, Items)>,
    pub visible: &'a dyn Fn(&str) -> Option<Items>,
    pub acc: &'a mut Acc,
    pub env: &'a Env,
    pub out: Items,
    pub notes: Vec<String>,
    pub review: Vec<String>,
    pending: Vec<(String, String)>,
}

impl std::fmt::Debug for Cx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cx")
            .field("node", &self.node.name)
            .finish_non_exhaustive()
    }
}

impl Cx<'_> {
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            input: &self.input,
            node: self.visible,
        }
    }

    pub fn review(&mut self, why: impl Into<String>) {
        let why = why.into();
        if !self.review.contains(&why) {
            self.review.push(why);
        }
    }

    pub fn note(&mut self, what: impl Into<String>) {
        self.notes.push(what.into());
    }

    /// A parameter value translated; when not exact, read from a generated script that
    /// evaluates the original expression.
    pub fn value(&mut self, what: &str, v: &Value) -> Y {
        match expr::value(v, &self.scope()) {
            Ok(t) => Y::from_json(&t),
            Err(why) => self.computed(what, v, why),
        }
    }

    /// `v` computed by the node's generated script (reason recorded for review).
    pub fn computed(&mut self, what: &str, v: &Value, why: String) -> Y {
        self.review(format!(
            "`{what}`: {why}; computed by a script step from the original expression"
        ));
        let key = format!("v{}", self.pending.len());
        self.pending.push((key.clone(), expr::js_value(v)));
        Y::s(format!(
            "{{{{ steps.{}_expr.output.items[0].{key} }}}}",
            self.id
        ))
    }

    /// The `{{ … }}` reading a list of items, or a one-item list.
    pub fn items_expr(items: &Items) -> Option<String> {
        match items {
            Items::Webhook => Some("{{ trigger }}".into()),
            Items::Single(p) => Some(format!("{{{{ {p} }}}}")),
            Items::Many(l) => Some(format!("{{{{ {l} }}}}")),
            Items::Unknown => None,
        }
    }

    /// A step of this node: id, uses, with, and the node's retry / on-error settings.
    pub fn step(&self, uses: &str, with: Vec<(&str, Y)>) -> Draft {
        let mut entries = vec![
            ("id".to_owned(), Y::s(&self.id)),
            ("uses".to_owned(), Y::s(uses)),
        ];
        if !with.is_empty() {
            entries.push(("with".into(), Y::map(with)));
        }
        if let Some((tries, wait_ms)) = self.node.retry {
            let d = Y::s(crate::nodes::iso_ms(wait_ms.max(1)));
            entries.push((
                "retry".into(),
                Y::map(vec![
                    ("attempts", Y::Int(i64::from(tries))),
                    ("initial", d.clone()),
                    ("max", d),
                    ("jitter", Y::Bool(false)),
                    ("on", Y::s("always")),
                ]),
            ));
        }
        if matches!(
            self.node.on_error.as_deref(),
            Some("continueRegularOutput" | "continueErrorOutput")
        ) {
            entries.push(("continue_on_error".into(), Y::Bool(true)));
        }
        Draft {
            entries,
            branches: Vec::new(),
            owner: None,
            wrap: None,
            pre: Vec::new(),
        }
    }

    /// A credential reference: a safe name in permissions.credentials, noted for creation.
    pub fn credential(
        &mut self,
        n8n_name: &str,
        slot: &str,
        host: Option<&str>,
        why: &str,
    ) -> String {
        let mut name = crate::slug(n8n_name, '-');
        if n8n_name.is_empty() || stockade_workflows::secrets::looks_like_secret(n8n_name).is_some()
        {
            if !n8n_name.is_empty() {
                self.review(format!("the n8n credential name of `{slot}` looks like it holds a secret: not used; named by the workflow instead (rotate that secret)"));
            }
            name = String::new();
        }
        if name.is_empty() || stockade_workflows::secrets::looks_like_secret(&name).is_some() {
            name = crate::slug(&format!("{}-{}", self.wf_name, slot), '-');
        }
        if !self.acc.credentials.iter().any(|c| c.name == name) {
            self.acc.credentials.push(CredentialNote {
                name: name.clone(),
                node: self.node.name.clone(),
                host: host.map(str::to_owned),
                why: why.to_owned(),
            });
        }
        name
    }

    /// The generated script computing untranslatable values, if any (comes first).
    fn expr_script(&mut self) -> Option<Draft> {
        if self.pending.is_empty() {
            return None;
        }
        let mut code = format!(
            "// {REVIEW_MARKER}: n8n expressions of node {:?}, kept verbatim; check them, then remove this line.\nconst $json = ($input.first() || {{ json: {{}} }}).json;\nreturn [{{ json: {{\n",
            self.node.name
        );
        for (k, js) in &self.pending {
            code.push_str(&format!("  {k}: {js},\n"));
        }
        code.push_str("} }];\n");
        let mut with = vec![("code", Y::s(code))];
        if let Some(input) = Self::items_expr(&self.input) {
            with.push(("input", Y::s(input)));
        }
        let js: String = self
            .pending
            .iter()
            .map(|(_, j)| j.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        if let Some(map) = nodes::code::nodes_map(self, &js) {
            with.push(("nodes", map));
        }
        let id = self.acc.fresh(&format!("{}_expr", self.id));
        let mut d = Draft {
            entries: Vec::new(),
            branches: Vec::new(),
            owner: None,
            wrap: None,
            pre: Vec::new(),
        };
        d.entries.push(("id".into(), Y::s(id)));
        d.entries.push(("uses".into(), Y::s("script")));
        d.entries.push(("with".into(), Y::map(with)));
        Some(d)
    }
}

/// The result of converting one workflow.
pub fn workflow(w: &Workflow, name: &str, env: &Env) -> Converted {
    let plan = graph::plan(w);
    let mut acc = Acc::default();
    let ids: Vec<String> = w
        .nodes
        .iter()
        .map(|n| acc.fresh(&step_id(&n.name)))
        .collect();
    let mut outs: Vec<Option<Items>> = vec![None; w.nodes.len()];
    let mut containers: BTreeMap<Ctx, Vec<Draft>> = BTreeMap::new();
    let mut reports: Vec<NodeReport> = Vec::new();
    let mut review_lines: Vec<String> = Vec::new();
    let mut trigger_seen = false;
    for &n in &plan.order {
        let node = &w.nodes[n];
        let (input, preds) = inputs(w, &plan, &outs, n);
        let mut report = NodeReport {
            node: node.name.clone(),
            kind: node.kind.clone(),
            step: None,
            status: Status::Converted,
            notes: Vec::new(),
        };
        if let Some(why) = left_out(node, &plan, n) {
            outs[n] = Some(input);
            report.status = Status::LeftOut;
            report.notes.push(why);
            reports.push(report);
            continue;
        }
        let visible = |target: &str| -> Option<Items> {
            let m = w.index(target)?;
            let prefix = plan.ctx[n].starts_with(&plan.ctx[m]);
            if prefix { outs[m].clone() } else { None }
        };
        let (wrap, input) = per_item(node, input);
        let mut cx = Cx {
            w,
            node,
            index: n,
            wf_name: name,
            id: ids[n].clone(),
            input,
            preds,
            visible: &visible,
            acc: &mut acc,
            env,
            out: Items::Unknown,
            notes: Vec::new(),
            review: Vec::new(),
            pending: Vec::new(),
        };
        if plan.joins.contains(&n) {
            cx.note(
                "fed from several branches: runs once after them (n8n runs it per arriving branch)",
            );
        }
        if w.pinned.contains(&node.name) {
            cx.review("has pinned data in n8n (used only in manual test runs there): the step runs for real");
        }
        let result = dispatch(&mut cx, &plan, n, &mut trigger_seen);
        let mut drafts = match result {
            Ok(d) => d,
            Err(why) => {
                report.status = Status::Unsupported;
                cx.out = Items::Unknown;
                vec![nodes::unsupported(&cx, &why)]
            }
        };
        if report.status != Status::Unsupported {
            if let Some(s) = cx.expr_script() {
                drafts.insert(0, s);
            }
            if !cx.review.is_empty() {
                report.status = Status::Review;
            }
        }
        if let Some((items, each)) = wrap
            && let Some(mut last) = drafts.pop()
        {
            last.wrap = Some((cx.acc.fresh(&each), items));
            last.pre = std::mem::take(&mut drafts);
            if last.owner.is_none() {
                cx.out = Items::Unknown;
            }
            cx.note("n8n ran it once per item: it runs in a for_each over the items");
            drafts.push(last);
        }
        report.step = drafts
            .last()
            .and_then(|d| d.entries.first())
            .and_then(|(_, v)| match v {
                Y::Str(s) => Some(s.clone()),
                _ => None,
            });
        report.notes.append(&mut cx.notes);
        for r in &cx.review {
            review_lines.push(format!("node {:?}: {r}", node.name));
            report.notes.push(format!("review: {r}"));
        }
        if report.status == Status::Unsupported
            && let Some(reason) = drafts.first().and_then(unsupported_reason)
        {
            report.notes.push(reason);
        }
        outs[n] = Some(cx.out.clone());
        containers
            .entry(plan.ctx[n].clone())
            .or_default()
            .extend(drafts);
        reports.push(report);
    }
    finish(w, name, env, acc, &plan, &containers, reports, review_lines)
}

/// The node's drafts: the trigger (the first one, at top level), or its conversion, or
/// why it cannot be converted.
fn dispatch(
    cx: &mut Cx<'_>,
    plan: &Plan,
    n: usize,
    trigger_seen: &mut bool,
) -> Result<Vec<Draft>, String> {
    let is_trigger = nodes::trigger::is_trigger(cx.node);
    if is_trigger && !*trigger_seen && plan.ctx[n].is_empty() {
        *trigger_seen = true;
        nodes::trigger::convert(cx).map(|()| Vec::new())
    } else if is_trigger {
        Err("a second trigger: a Stockade workflow has one; make this its own workflow".to_owned())
    } else if plan.on_error_output.contains(&n) && !plan.edges.iter().any(|e| e.to == n) {
        Err("runs on the error output of another node: Stockade has no error branch; use continue_on_error or on_error".to_owned())
    } else if plan.error_only.contains(&n) {
        Err("runs only after a node on the error output of another node: Stockade has no error branch; use continue_on_error or on_error".to_owned())
    } else {
        nodes::convert(cx)
    }
}

fn unsupported_reason(d: &Draft) -> Option<String> {
    let with = d.entries.iter().find(|(k, _)| k == "with")?;
    let Y::Map(e) = &with.1 else { return None };
    e.iter()
        .find(|(k, _)| k == "reason")
        .and_then(|(_, v)| match v {
            Y::Str(s) => Some(s.clone()),
            _ => None,
        })
}

/// Why a node becomes no step at all, if it does not.
fn left_out(node: &Node, plan: &Plan, n: usize) -> Option<String> {
    if graph::is_sticky(node) {
        return Some("a sticky note: not a step".into());
    }
    if node.disabled {
        return Some("disabled in n8n: left out (its items pass through, as in n8n)".into());
    }
    let fed = plan.edges.iter().any(|e| e.to == n);
    if !fed && !nodes::trigger::is_trigger(node) && !plan.on_error_output.contains(&n) {
        return Some("not connected to a trigger: n8n never runs it".into());
    }
    None
}

/// A node's input items and its predecessors.
fn inputs(
    w: &Workflow,
    plan: &Plan,
    outs: &[Option<Items>],
    n: usize,
) -> (Items, Vec<(usize, String, Items)>) {
    let mut preds: Vec<(usize, String, Items)> = Vec::new();
    for e in plan.edges.iter().filter(|e| e.to == n) {
        let from = &w.nodes[e.from];
        let items = match graph::branch_outputs(from) {
            graph::Branching::Loop { body, .. } if e.output == body => Items::Single("item".into()),
            _ => outs[e.from].clone().unwrap_or(Items::Unknown),
        };
        preds.push((e.input, from.name.clone(), items));
    }
    preds.sort_by_key(|p| p.0);
    let input = match preds.as_slice() {
        [] => Items::Unknown,
        [(_, _, one)] => one.clone(),
        many if many.iter().all(|p| p.2 == many[0].2) => many[0].2.clone(),
        _ => Items::Unknown,
    };
    (input, preds)
}

/// Whether the node runs per item on a list: then it is wrapped in a `for_each`.
fn per_item(node: &Node, input: Items) -> (Option<(String, String)>, Items) {
    let per_item = match node.short_kind() {
        "httpRequest" | "if" | "filter" | "switch" | "executeWorkflow" | "functionItem"
        | "wait" => true,
        "code" => node.str_param("mode") == Some("runOnceForEachItem"),
        "nocoDb" => node.str_param("dataToSend") != Some("autoMapInputData"),
        k => nodes::alert::is_message_kind(k),
    };
    match input {
        Items::Many(list) if node.execute_once => (None, Items::Single(format!("{list}[0]"))),
        Items::Many(list) if per_item => {
            let id = format!("each_{}", step_id(&node.name));
            (
                Some((format!("{{{{ {list} }}}}"), id)),
                Items::Single("item".into()),
            )
        }
        other => (None, other),
    }
}

/// A step id from a node name: snake_case, starting with a letter.
pub fn step_id(name: &str) -> String {
    let mut id = crate::slug(name, '_');
    if !id.bytes().next().is_some_and(|b| b.is_ascii_lowercase()) {
        id = format!("n_{id}");
    }
    id.truncate(56);
    id.trim_end_matches('_').to_owned()
}

#[allow(clippy::too_many_arguments)]
fn finish(
    w: &Workflow,
    name: &str,
    env: &Env,
    mut acc: Acc,
    plan: &Plan,
    containers: &BTreeMap<Ctx, Vec<Draft>>,
    reports: Vec<NodeReport>,
    review_lines: Vec<String>,
) -> Converted {
    let mut steps = build(containers, &Vec::new());
    if steps.is_empty() {
        acc.notes
            .push("no node became a step: an audit.note stands in".into());
        steps.push(Y::map(vec![
            ("id", Y::s("imported")),
            ("uses", Y::s("audit.note")),
            (
                "with",
                Y::map(vec![(
                    "message",
                    Y::s(format!("imported n8n workflow {name} has no steps")),
                )]),
            ),
        ]));
    }
    for e in &plan.back_edges {
        if !matches!(
            graph::branch_outputs(&w.nodes[e.to]),
            graph::Branching::Loop { .. }
        ) {
            acc.notes.push(format!(
                "a loop back from {:?} to {:?} is not converted",
                w.nodes[e.from].name, w.nodes[e.to].name
            ));
        }
    }
    acc.notes.extend(w.odd_connections.iter().cloned());
    let mut review_lines = review_lines;
    let on_error = error_workflow(w, env, &mut acc, &mut review_lines);
    let trigger = acc.trigger.take().unwrap_or_else(|| {
        review_lines.push("no trigger node: imported as a manual workflow".into());
        Y::s("manual")
    });
    let trigger = with_respond(trigger, acc.respond_result);
    let mut description = format!(
        "Imported from the n8n workflow {:?} by `stockade workflow import-n8n`.",
        w.name
    );
    for line in &review_lines {
        description.push_str(&format!("\n{REVIEW_MARKER}: {line}"));
    }
    if !review_lines.is_empty() {
        description.push_str("\nWhen each point above is checked, delete its line: `stockade workflow lint` reports them until then.");
    }
    let mut doc = vec![
        ("name", Y::s(name)),
        ("description", Y::s(description)),
        ("trigger", trigger),
    ];
    if let Some(inputs) = acc.inputs.take() {
        doc.push(("inputs", inputs));
    }
    let list = |s: &BTreeSet<String>| Y::Seq(s.iter().map(Y::s).collect());
    let creds: BTreeSet<String> = acc.credentials.iter().map(|c| c.name.clone()).collect();
    let mut perms = Vec::new();
    for (k, s) in [
        ("credentials", &creds),
        ("hosts", &acc.hosts),
        ("events", &acc.events),
    ] {
        if !s.is_empty() {
            perms.push((k, list(s)));
        }
    }
    if !perms.is_empty() {
        doc.push(("permissions", Y::map(perms)));
    }
    if let Some(o) = on_error {
        doc.push(("on_error", Y::s(o)));
    }
    doc.push(("steps", Y::Seq(steps)));
    let yaml = format!(
        "# yaml-language-server: $schema=workflow.schema.json\n# (editor completion: `stockade workflow schema > workflow.schema.json` beside this file)\n# Generated by `stockade workflow import-n8n` from the n8n workflow {:?}.\n{}",
        w.name,
        crate::yaml::to_string(&Y::map(doc))
    );
    Converted {
        name: name.to_owned(),
        n8n_name: w.name.clone(),
        file: format!("{name}.yaml"),
        yaml,
        nodes: reports,
        credentials: acc.credentials,
        hosts: acc.hosts.into_iter().collect(),
        channels: acc.channels.into_iter().collect(),
        notes: acc.notes,
    }
}

fn with_respond(trigger: Y, result: bool) -> Y {
    let Y::Map(mut outer) = trigger else {
        return trigger;
    };
    if let Some((k, Y::Map(h))) = outer.first_mut()
        && k == "webhook"
        && result
    {
        h.push(("respond".into(), Y::s("result")));
    }
    Y::Map(outer)
}

/// `on_error` from `settings.errorWorkflow` (an n8n workflow id).
fn error_workflow(
    w: &Workflow,
    env: &Env,
    acc: &mut Acc,
    review: &mut Vec<String>,
) -> Option<String> {
    let id = w.error_workflow.as_ref()?;
    match env.by_id.get(id) {
        Some(n) => {
            acc.notes.push(format!(
                "n8n's error workflow {id} is `{n}`: on_error names it"
            ));
            Some(n.clone())
        }
        None => {
            review.push(format!(
                "the n8n error workflow {id} is not in this export: on_error left to builtin.alert"
            ));
            None
        }
    }
}

/// The nested step lists under `ctx`.
fn build(containers: &BTreeMap<Ctx, Vec<Draft>>, ctx: &Ctx) -> Vec<Y> {
    let Some(drafts) = containers.get(ctx) else {
        return Vec::new();
    };
    drafts
        .iter()
        .map(|d| draft_yaml(containers, ctx, d))
        .collect()
}

fn draft_yaml(containers: &BTreeMap<Ctx, Vec<Draft>>, ctx: &Ctx, d: &Draft) -> Y {
    let mut entries = d.entries.clone();
    if let Some(owner) = d.owner {
        let sub = |out: usize| {
            let mut c = ctx.clone();
            c.push((owner, out));
            Y::Seq(build(containers, &c))
        };
        let mut cases: Vec<(String, Y)> = Vec::new();
        let mut default = None;
        for b in &d.branches {
            match b {
                Branch::Then(o) => entries.push(("then".into(), sub(*o))),
                Branch::Else(o) => entries.push(("else".into(), sub(*o))),
                Branch::Case(k, o) => cases.push((k.clone(), sub(*o))),
                Branch::Default(o) => default = Some(o.map_or(Y::Seq(Vec::new()), sub)),
                Branch::Body(o) => entries.push(("steps".into(), sub(*o))),
            }
        }
        if d.branches
            .iter()
            .any(|b| matches!(b, Branch::Case(..) | Branch::Default(_)))
        {
            entries.push(("cases".into(), Y::Map(cases)));
            entries.push(("default".into(), default.unwrap_or(Y::Seq(Vec::new()))));
        }
    }
    let step = Y::Map(entries);
    match &d.wrap {
        None => step,
        Some((id, items)) => Y::map(vec![
            ("id", Y::s(id)),
            ("uses", Y::s("for_each")),
            (
                "with",
                Y::map(vec![("items", Y::s(items)), ("max_items", Y::Int(1000))]),
            ),
            (
                "steps",
                Y::Seq(
                    d.pre
                        .iter()
                        .map(|p| draft_yaml(containers, ctx, p))
                        .chain(std::iter::once(step))
                        .collect(),
                ),
            ),
        ]),
    }
}
