//! Parsing: positions, refusals of malformed input, the typed shape.

use stockade_workflows::Workflow;
use stockade_workflows::definition::{Missed, OnLimit, RetryOn, Trigger, WebhookAuth};
use stockade_workflows::yaml::Node;

const SMALL: &str = "\
name: demo
trigger:
  schedule: { cron: \"0 * * * *\", tz: Asia/Shanghai, missed: run_once }
concurrency: { limit: 2, on_limit: fail }
retry: { attempts: 3, initial: PT1S, max: PT1M, on: always }
steps:
  - id: level
    uses: stock.get
    with: { sku: A-1 }
";

#[test]
fn a_workflow_parses_into_typed_values_with_positions() {
    let w = Workflow::parse(SMALL).unwrap();
    assert_eq!(w.name.value, "demo");
    assert_eq!((w.name.pos.line, w.name.pos.col), (1, 7));
    let Trigger::Schedule(s) = &w.trigger.value else {
        panic!("not a schedule")
    };
    assert_eq!(s.cron.value, "0 * * * *");
    assert_eq!(s.cron.pos.line, 3);
    assert_eq!(s.missed, Missed::RunOnce);
    assert_eq!(w.concurrency.as_ref().unwrap().on_limit, OnLimit::Fail);
    let retry = w.retry.as_ref().unwrap();
    assert_eq!(retry.on, RetryOn::Always);
    assert!(retry.jitter, "jitter defaults to on");
    assert_eq!(retry.max.as_ref().unwrap().duration.as_secs(), 60);
    assert_eq!(w.steps[0].uses.value, "stock.get");
    assert_eq!((w.steps[0].uses.pos.line, w.steps[0].uses.pos.col), (8, 11));
    assert_eq!(w.on_error_name(), "builtin.alert");
}

#[test]
fn webhook_auth_and_manual_triggers_parse() {
    let w = Workflow::parse(
        "name: h\ntrigger: { webhook: { path: in, auth: { hmac: key-a } } }\nsteps: [{ id: f, uses: fail, with: { message: x } }]\n",
    )
    .unwrap();
    let Trigger::Webhook(h) = &w.trigger.value else {
        panic!("not a webhook")
    };
    assert!(matches!(&h.auth.value, WebhookAuth::Hmac(c) if c.value == "key-a"));
    let w = Workflow::parse("name: m\ntrigger: manual\nsteps: [{ id: f, uses: fail }]\n").unwrap();
    assert!(matches!(w.trigger.value, Trigger::Manual));
    let w = Workflow::parse(
        "name: m\ntrigger: { webhook: { path: p, auth: api_key, respond: result } }\nsteps: []\n",
    )
    .unwrap();
    assert!(matches!(&w.trigger.value, Trigger::Webhook(h) if h.auth.value == WebhookAuth::ApiKey));
}

#[test]
fn malformed_yaml_is_refused_with_its_line_and_column() {
    let e = Workflow::parse("name: x\ntrigger: manual\nsteps:\n  - id: [unclosed\n").unwrap_err();
    assert!(e.pos.line >= 4, "{e}");
    assert!(e.pos.col > 0, "{e}");
}

#[test]
fn unknown_fields_duplicate_keys_and_bad_durations_are_refused() {
    let e = Workflow::parse("name: x\ntrigger: manual\nstepz: []\nsteps: []\n").unwrap_err();
    assert_eq!(e.pos.line, 3, "{e}");
    assert!(e.message.contains("stepz"), "{e}");
    let e = Workflow::parse("name: x\nname: y\ntrigger: manual\nsteps: []\n").unwrap_err();
    assert_eq!(e.pos.line, 2, "{e}");
    let e = Workflow::parse("name: x\ntrigger: manual\ntimeout: 5m\nsteps: []\n").unwrap_err();
    assert_eq!(e.pos.line, 3, "{e}");
    assert!(e.message.contains("ISO-8601"), "{e}");
    let e = Workflow::parse(
        "name: x\ntrigger: manual\nsteps:\n  - id: a\n    uses: fail\n    with: { message: a, message: b }\n",
    )
    .unwrap_err();
    assert_eq!(e.pos.line, 6, "{e}");
}

#[test]
fn budgets_bound_what_a_file_can_cost() {
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    let e = stockade_workflows::yaml::parse::<Node>(bomb).unwrap_err();
    assert!(
        e.message.contains("budget") || e.message.contains("alias"),
        "{e}"
    );
    let huge = format!(
        "name: x\ndescription: \"{}\"\n",
        "a".repeat(2 * 1024 * 1024)
    );
    assert!(Workflow::parse(&huge).is_err());
}
