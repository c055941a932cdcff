//! Every lint rule, each with a workflow that breaks it, and a clean one that passes.

use stockade_core::Environment;
use stockade_workflows::{LintOptions, Problem, Rule, lint_document, lint_set};

fn lint(text: &str) -> Vec<Problem> {
    lint_document(text, &LintOptions::default()).problems
}

/// The (rule, line) pairs of the problems found.
fn found(text: &str) -> Vec<(Rule, u64)> {
    lint(text).iter().map(|p| (p.rule, p.pos.line)).collect()
}

const CLEAN: &str = "\
name: clean
trigger: { event: { kind: order.created } }
permissions:
  connections: [shop-a]
  credentials: [partner-key]
  hosts: [api.partner.example.com]
  events: [order.created]
on_error: builtin.alert
steps:
  - id: order
    uses: order.get
    with: { order: \"{{ trigger.event.order }}\", connection: shop-a }
  - id: push
    uses: http.request
    with:
      url: https://api.partner.example.com/orders
      method: POST
      credential: partner-key
      body: { id: \"{{ steps.order.output.id }}\" }
  - id: note
    if: steps.push.output.status == 200
    uses: audit.note
    with: { message: \"sent {{ steps.order.output.id }}\" }
";

#[test]
fn a_good_workflow_lints_clean_even_for_prod() {
    assert_eq!(lint(CLEAN), vec![]);
    let prod = LintOptions {
        env: Some(Environment::Prod),
        ..LintOptions::default()
    };
    assert_eq!(lint_document(CLEAN, &prod).problems, vec![]);
}

#[test]
fn schema_malformed_yaml_and_wrong_shapes() {
    let p = lint("name: x\ntrigger: manual\nsteps:\n  - id: a\n    uses: fail\n   with: {}\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].rule, Rule::Schema);
    assert!(p[0].pos.line >= 5, "{p:?}");
    assert_eq!(
        found("name: x\ntrigger: manual\nsteps:\n  - id: a\n    uses: fail\n    retry: 3\n")[0],
        (Rule::Schema, 6)
    );
    // A missing required parameter, an unknown one, a duplicate id, a bad name.
    let text = "name: Bad Name\ntrigger: manual\nsteps:\n  - id: a\n    uses: stock.get\n    with: { sku_code: x }\n  - id: a\n    uses: fail\n    with: { message: m }\n";
    let f = found(text);
    assert!(f.contains(&(Rule::Schema, 1)), "{f:?}");
    assert!(f.contains(&(Rule::Schema, 5)), "{f:?}");
    assert!(f.contains(&(Rule::Schema, 6)), "{f:?}");
    assert!(f.contains(&(Rule::Schema, 7)), "{f:?}");
    // A one-word choice written as a mapping gets a message that says what to write.
    let p = lint(
        "name: x\ntrigger:\n  manual: {}\nsteps:\n  - id: a\n    uses: fail\n    with: { message: m }\n",
    );
    assert_eq!((p[0].rule, p[0].pos.line), (Rule::Schema, 3), "{p:?}");
    assert!(p[0].message.contains("`trigger: manual`"), "{p:?}");
    // Control fields on the wrong kind.
    let text = "name: x\ntrigger: manual\nsteps:\n  - id: a\n    uses: fail\n    with: { message: m }\n    then: []\n";
    assert_eq!(found(text), vec![(Rule::Schema, 5)]);
}

#[test]
fn unknown_step() {
    let text = "name: x\ntrigger: manual\nsteps:\n  - id: a\n    uses: shell.exec\n    with: { cmd: ls }\n";
    let p = lint(text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        (p[0].rule, p[0].pos.line, p[0].pos.col),
        (Rule::UnknownStep, 5, 11)
    );
    assert!(
        p[0].to_string()
            .starts_with("5:11 unknown-step unknown step kind `shell.exec`"),
        "{}",
        p[0]
    );
}

#[test]
fn undeclared_connection_credential_host_and_event() {
    let text = "\
name: x
trigger: { webhook: { path: in, auth: { hmac: hook-key } } }
steps:
  - id: a
    uses: marketplace.set_stock
    with: { connection: shop-b, sku: A, quantity: 1 }
  - id: b
    uses: http.request
    with: { url: \"https://evil.example.net/x\", credential: other-key }
  - id: c
    uses: wait
    with: { event: stock.low }
  - id: d
    uses: http.request
    with: { url: \"https://{{ trigger.body.host }}/x\" }
  - id: e
    uses: http.request
    with: { url: \"http://api.partner.example.com/x\" }
";
    let f = found(text);
    for expected in [
        (Rule::UndeclaredCredential, 2),
        (Rule::UndeclaredConnection, 6),
        (Rule::UndeclaredHost, 9),
        (Rule::UndeclaredCredential, 9),
        (Rule::UndeclaredEvent, 12),
        (Rule::UndeclaredHost, 15),
        (Rule::UndeclaredHost, 18),
    ] {
        assert!(f.contains(&expected), "{expected:?} not in {f:?}");
    }
    let trigger = "name: x\ntrigger: { event: { kind: oversell } }\nsteps: [{ id: a, uses: fail, with: { message: m } }]\n";
    assert_eq!(found(trigger), vec![(Rule::UndeclaredEvent, 2)]);
}

#[test]
fn references_to_step_outputs_that_do_not_exist_or_come_later() {
    let text = "\
name: x
trigger: manual
inputs: { sku: { type: string } }
steps:
  - id: a
    uses: stock.get
    with: { sku: \"{{ steps.b.output.sku }}\" }
  - id: b
    uses: stock.get
    with: { sku: \"{{ inputs.sku }}\" }
  - id: c
    uses: audit.note
    with: { message: \"{{ steps.zzz.output }} {{ inputs.nope }} {{ trigger.body }} {{ item }} {{ steps.b.result }}\" }
  - id: d
    if: steps.a.output.available > secret_var
    uses: fail
    with: { message: m }
";
    let p = lint(text);
    let on = |line: u64| {
        p.iter()
            .filter(|x| x.rule == Rule::UnknownReference && x.pos.line == line)
            .count()
    };
    assert_eq!(on(7), 1, "{p:?}");
    assert!(p.iter().any(|x| x.message.contains("has not run")), "{p:?}");
    assert_eq!(on(13), 5, "{p:?}");
    assert_eq!(on(15), 1, "{p:?}");
    assert_eq!(p.len(), 7, "{p:?}");
}

#[test]
fn a_step_in_a_branch_is_not_visible_after_it() {
    let text = "\
name: x
trigger: manual
steps:
  - id: maybe
    uses: if
    with: { condition: \"1 > 0\" }
    then:
      - id: inner
        uses: stock.get
        with: { sku: A }
  - id: after
    uses: audit.note
    with: { message: \"{{ steps.inner.output.available }}\" }
";
    assert_eq!(found(text), vec![(Rule::UnknownReference, 13)]);
}

#[test]
fn expressions_that_do_not_compile() {
    let text = "name: x\ntrigger: manual\nsteps:\n  - id: a\n    uses: fail\n    with: { message: \"{{ 1 + }}\" }\n  - id: b\n    uses: fail\n    with: { message: \"{% for x in y %}{% endfor %}\" }\n";
    assert_eq!(
        found(text),
        vec![(Rule::Expression, 6), (Rule::Expression, 9)]
    );
}

#[test]
fn literals_that_look_like_secrets() {
    let text = "\
name: x
trigger: manual
steps:
  - id: a
    uses: http.request
    with:
      url: https://api.example.com/x
      headers: { Authorization: \"Bearer sk_live_51HqX2bC3d4e5F6g7H8\" }
  - id: b
    uses: audit.note
    with: { message: \"key AKIAIOSFODNN7EXAMPLE and q8Zr2LmX0vT7pK4nB9wE1yH6cJ3sF5dA\" }
description: \"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWJ5dGVz\"
";
    let p = lint(text);
    let secrets: Vec<u64> = p
        .iter()
        .filter(|x| x.rule == Rule::SecretLiteral)
        .map(|x| x.pos.line)
        .collect();
    assert_eq!(secrets, vec![8, 11, 12], "{p:?}");
    assert!(
        !p.iter().any(|x| x.message.contains("sk_live_51")),
        "the secret is never echoed"
    );
}

const PII: &str = "\
name: x
trigger: { event: { kind: order.created } }
permissions: { events: [order.created], buyer_fields: true, hosts: [crm.example.com] }
steps:
  - id: order
    uses: order.get
    with: { order: \"{{ trigger.event.order }}\" }
  - id: tell
    uses: alert.send
    with: { message: \"New order for {{ steps.order.output.buyer.name }}\" }
  - id: copy
    uses: stock.get
    with: { sku: \"{{ steps.order.output.shipping_address.city }}\" }
  - id: crm
    uses: http.request
    with: { url: https://crm.example.com/c, body: \"{{ steps.copy.output }}\" }
  - id: fine
    uses: audit.note
    with: { message: \"order {{ steps.order.output.id }}\" }
  - id: loop
    uses: for_each
    with: { items: \"{{ [steps.order.output.buyer] }}\" }
    steps:
      - id: each
        uses: audit.note
        with: { message: \"{{ item.email }}\" }
";

#[test]
fn buyer_data_into_alert_http_or_audit_needs_allow_pii() {
    let f = found(PII);
    assert_eq!(
        f,
        vec![
            (Rule::PiiFlow, 10),
            (Rule::PiiFlow, 16),
            (Rule::PiiFlow, 26)
        ],
        "{f:?}"
    );
    // Without the permission, order.get masks buyer fields: nothing to flag.
    let masked = PII.replace("buyer_fields: true, ", "");
    assert_eq!(found(&masked), vec![]);
    // A reviewed exception with a reason clears one step; an empty reason does not.
    let allowed = PII.replace(
        "    uses: alert.send\n",
        "    uses: alert.send\n    allow_pii: { reason: \"the packer needs the name on the slip\" }\n",
    );
    assert_eq!(
        found(&allowed),
        vec![(Rule::PiiFlow, 17), (Rule::PiiFlow, 27)]
    );
    let lazy = PII.replace(
        "    uses: alert.send\n",
        "    uses: alert.send\n    allow_pii: { reason: ok }\n",
    );
    assert!(found(&lazy).contains(&(Rule::PiiFlow, 10)));
}

#[test]
fn crons_that_never_fire_and_zones_that_do_not_exist() {
    let sched = |cron: &str, tz: &str| {
        format!(
            "name: x\ntrigger:\n  schedule:\n    cron: \"{cron}\"\n    tz: {tz}\nsteps: [{{ id: a, uses: fail, with: {{ message: m }} }}]\n"
        )
    };
    assert_eq!(
        found(&sched("0 0 31 2 *", "UTC")),
        vec![(Rule::Schedule, 4)]
    );
    assert!(
        lint(&sched("0 0 31 2 *", "UTC"))[0]
            .message
            .contains("never fires")
    );
    assert_eq!(
        found(&sched("0 0 30 2 *", "Asia/Shanghai")),
        vec![(Rule::Schedule, 4)]
    );
    assert_eq!(
        found(&sched("61 * * * *", "UTC")),
        vec![(Rule::Schedule, 4)]
    );
    assert_eq!(
        found(&sched("0 9 * * 1", "Mars/Olympus")),
        vec![(Rule::Schedule, 5)]
    );
    assert_eq!(
        found(&sched("0 9 * * 1", "asia/shanghai")),
        vec![(Rule::Schedule, 5)]
    );
    assert_eq!(
        found(&sched("0 0 29 2 *", "America/New_York")),
        vec![],
        "leap days do fire"
    );
}

#[test]
fn missing_on_error_only_in_prod() {
    let text = "name: x\ntrigger: manual\nsteps: [{ id: a, uses: fail, with: { message: m } }]\n";
    assert_eq!(found(text), vec![]);
    let prod = LintOptions {
        env: Some(Environment::Prod),
        ..LintOptions::default()
    };
    let p = lint_document(text, &prod).problems;
    assert_eq!(
        p.iter().map(|x| (x.rule, x.pos.line)).collect::<Vec<_>>(),
        vec![(Rule::MissingOnError, 1)]
    );
}

fn set(files: &[(&str, &str)]) -> Vec<(String, Vec<(Rule, u64)>)> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(a, b)| ((*a).into(), (*b).into()))
        .collect();
    lint_set(&files, &LintOptions::default())
        .into_iter()
        .map(|(f, p)| (f, p.iter().map(|x| (x.rule, x.pos.line)).collect()))
        .collect()
}

#[test]
fn on_error_cycles_across_files() {
    let a = "name: a\ntrigger: manual\non_error: b\nsteps: [{ id: s, uses: fail, with: { message: m } }]\n";
    let b = "name: b\ntrigger: { event: { kind: workflow.failed } }\npermissions: { events: [workflow.failed] }\non_error: a\nsteps: [{ id: s, uses: fail, with: { message: m } }]\n";
    let r = set(&[("a.yaml", a), ("b.yaml", b)]);
    assert_eq!(r[0].1, vec![(Rule::OnErrorCycle, 3)]);
    assert_eq!(r[1].1, vec![(Rule::OnErrorCycle, 4)]);
    let self_loop = "name: a\ntrigger: manual\non_error: a\nsteps: [{ id: s, uses: fail, with: { message: m } }]\n";
    assert_eq!(found(self_loop), vec![(Rule::OnErrorCycle, 3)]);
    let fixed = b.replace("on_error: a", "on_error: builtin.alert");
    let r = set(&[("a.yaml", a), ("b.yaml", &fixed)]);
    assert!(r.iter().all(|(_, p)| p.is_empty()), "{r:?}");
}

#[test]
fn workflow_call_cycles_across_files() {
    let call = |name: &str, target: &str| {
        format!(
            "name: {name}\ntrigger: manual\nsteps:\n  - id: c\n    uses: workflow.call\n    with: {{ workflow: {target} }}\n"
        )
    };
    let (a, b, c) = (call("a", "b"), call("b", "c"), call("c", "a"));
    let r = set(&[("a.yaml", &a), ("b.yaml", &b), ("c.yaml", &c)]);
    for (file, problems) in &r {
        assert_eq!(problems, &vec![(Rule::CallCycle, 6)], "{file}");
    }
    let msg = lint_set(
        &[
            ("a.yaml".into(), a.clone()),
            ("b.yaml".into(), b),
            ("c.yaml".into(), c),
        ],
        &LintOptions::default(),
    );
    assert!(
        msg[0].1[0].message.contains("a → b → c → a"),
        "{:?}",
        msg[0].1
    );
    let r = set(&[("a.yaml", &call("a", "a"))]);
    assert_eq!(r[0].1, vec![(Rule::CallCycle, 6)]);
    let r = set(&[("a.yaml", &a), ("b.yaml", &call("b", "elsewhere"))]);
    assert!(r.iter().all(|(_, p)| p.is_empty()), "{r:?}");
}

#[test]
fn every_rule_has_a_name_and_a_test_here() {
    let names: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(names.len(), 17);
    let docs = include_str!("../../../../docs/workflows.md");
    for n in names {
        assert!(
            docs.contains(&format!("`{n}`")),
            "docs/workflows.md does not describe rule {n}"
        );
    }
}

#[test]
fn filters_functions_and_loop_variables_are_not_mistaken_for_references() {
    let text = "\
name: x
trigger: manual
inputs: { skus: { type: array } }
steps:
  - id: each
    uses: for_each
    with: { items: \"{{ inputs.skus | map('upper') | list }}\", parallelism: 4 }
    steps:
      - id: level
        uses: stock.get
        with: { sku: \"{{ item }}\" }
      - id: note
        if: index < 3 and steps.level.output.available is defined
        uses: audit.note
        with: { message: \"{{ range(3) | join(',') }} {{ dict(a=1).a }} {{ item ~ '!' }}\" }
  - id: pick
    uses: switch
    with: { value: \"{{ inputs.skus | length }}\" }
    cases:
      \"0\": [{ id: none, uses: fail, with: { message: empty } }]
    default: [{ id: some, uses: audit.note, with: { message: \"{{ steps.each.output }}\" } }]
";
    assert_eq!(lint(text), vec![]);
}

#[test]
fn bounds_on_retries_concurrency_loops_and_webhook_paths() {
    let text = "\
name: x
trigger: { webhook: { path: Supplier Stock, auth: api_key } }
concurrency: { limit: 0 }
retry: { attempts: 100, initial: PT5M, max: PT1M }
steps:
  - id: each
    uses: for_each
    with: { items: \"{{ trigger.body }}\", max_items: 1000000, parallelism: 64 }
    steps: [{ id: a, uses: fail, with: { message: m }, retry: { attempts: 0 } }]
";
    let f = found(text);
    for line in [2, 3, 4, 8, 9] {
        assert!(f.contains(&(Rule::Schema, line)), "line {line}: {f:?}");
    }
    assert_eq!(f.iter().filter(|(_, l)| *l == 4).count(), 2, "{f:?}");
    assert_eq!(f.iter().filter(|(_, l)| *l == 8).count(), 2, "{f:?}");
}

#[test]
fn two_files_with_one_name_and_unhelpful_files() {
    let a = "name: same\ntrigger: manual\nsteps: [{ id: s, uses: fail, with: { message: m } }]\n";
    let r = set(&[("a.yaml", a), ("b.yaml", a)]);
    assert_eq!(r[0].1, vec![]);
    assert_eq!(r[1].1, vec![(Rule::Schema, 1)]);
    for (text, says) in [
        ("", "empty"),
        ("- a\n- list\n", "mapping"),
        ("name: x\nname: y\n", "duplicate"),
    ] {
        let p = lint(text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains(says), "{p:?}");
        assert!(!p[0].message.contains("DuplicateKeyPolicy"), "{p:?}");
    }
}

#[test]
fn literal_choices_durations_and_input_defaults() {
    let text = "\
name: x
trigger: manual
inputs:
  n: { type: integer, default: ten }
  s: { type: string, required: true, default: a }
permissions: { hosts: [api.example.com] }
steps:
  - id: a
    uses: http.request
    with: { url: https://api.example.com/x, method: FETCH }
  - id: b
    uses: alert.send
    with: { message: m, severity: \"{{ inputs.s }}\" }
  - id: c
    uses: alert.send
    with: { message: m, severity: loud }
  - id: d
    uses: wait
    with: { duration: 5 minutes }
";
    assert_eq!(
        found(text),
        vec![
            (Rule::Schema, 4),
            (Rule::Schema, 5),
            (Rule::Schema, 10),
            (Rule::Schema, 16),
            (Rule::Schema, 19)
        ]
    );
}

#[test]
fn a_secret_in_a_misplaced_value_is_not_echoed_by_the_parse_error() {
    let text = "name: x\ntrigger: sk_live_51HqX2bC3d4e5F6g7H8\nsteps: []\n";
    let p = lint(text);
    assert!(
        p.iter()
            .any(|x| x.rule == Rule::SecretLiteral && x.pos.line == 2),
        "{p:?}"
    );
    assert!(p.iter().any(|x| x.rule == Rule::Schema), "{p:?}");
    assert!(!p.iter().any(|x| x.message.contains("sk_live_51")), "{p:?}");
}

#[test]
fn webhook_paths_must_be_well_formed_and_unique() {
    let hook = |name: &str, path: &str| {
        format!(
            "name: {name}\ntrigger:\n  webhook:\n    path: \"{path}\"\n    auth: api_key\nsteps: [{{ id: s, uses: fail, with: {{ message: m }} }}]\n"
        )
    };
    for bad in [
        "supplier//stock",
        "supplier/",
        "/supplier",
        "a/../b",
        "Supplier",
        "",
    ] {
        assert_eq!(
            found(&hook("x", bad)),
            vec![(Rule::Schema, 4)],
            "path {bad:?}"
        );
    }
    assert!(found(&hook("x", "supplier/stock-2")).is_empty());
    // Two workflows with one path: the later file is told which file has it.
    let (a, b, c) = (
        hook("a", "supplier/stock"),
        hook("b", "supplier/stock"),
        hook("c", "supplier/orders"),
    );
    let r = set(&[("a.yaml", &a), ("b.yaml", &b), ("c.yaml", &c)]);
    assert!(r[0].1.is_empty(), "{r:?}");
    assert_eq!(r[1].1, vec![(Rule::Schema, 4)]);
    assert!(r[2].1.is_empty(), "{r:?}");
    let files: Vec<(String, String)> = vec![("a.yaml".into(), a), ("b.yaml".into(), b)];
    let problems = &lint_set(&files, &LintOptions::default())[1].1;
    assert!(
        problems[0].message.contains("also used by a.yaml"),
        "{}",
        problems[0].message
    );
    assert!(stockade_workflows::lint::valid_webhook_path("orders/new"));
}

#[test]
fn unsupported_node_names_the_node_and_its_type() {
    let text = "\
name: imported
trigger: manual
steps:
  - id: sheets
    uses: unsupported
    with: { node: Google Sheets, type: n8n-nodes-base.googleSheets, reason: no equivalent }
";
    let problems = lint(text);
    assert_eq!(found(text), vec![(Rule::UnsupportedNode, 5)]);
    let message = &problems[0].message;
    assert!(
        message.contains("\"Google Sheets\"") && message.contains("n8n-nodes-base.googleSheets"),
        "{message}"
    );
    assert_eq!(Rule::UnsupportedNode.as_str(), "unsupported-node");
}

#[test]
fn needs_review_reports_each_marked_string_until_the_line_is_deleted() {
    let marked = "\
name: imported
description: |-
  Imported.
  NEEDS REVIEW (import-n8n): node \"Webhook\": the sender must now send an API key
trigger: manual
steps:
  - id: note
    uses: audit.note
    with: { message: hi }
";
    assert_eq!(found(marked), vec![(Rule::NeedsReview, 3)]);
    assert_eq!(Rule::NeedsReview.as_str(), "needs-review");
    let reviewed: String = marked
        .lines()
        .filter(|l| !l.contains("NEEDS REVIEW"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(lint(&reviewed).is_empty());
}
