//! The expression language: strict, bounded, data only, PII kept marked.

use serde_json::json;
use stockade_workflows::expr::{
    Marked, Scope, environment, eval_condition, eval_string, template_references,
};

fn scope() -> Scope {
    let mut s = Scope::default();
    s.set("inputs", json!({ "sku": "MUG-1", "threshold": 10 }));
    s.set_step_output(
        "level",
        json!({ "available": 3, "low": ["MUG-1", "CUP-2"] }),
        &[],
    );
    s.set_step_output(
        "order",
        json!({ "id": "o-1", "buyer": { "name": "Jane Doe", "email": "jane@example.com" }, "total": 42 }),
        &["buyer"],
    );
    s
}

#[test]
fn a_whole_expression_keeps_its_type_and_text_renders() {
    let env = environment();
    let s = scope();
    let v = eval_string(&env, "{{ steps.level.output.low }}", &s).unwrap();
    assert_eq!(v.value, json!(["MUG-1", "CUP-2"]));
    let v = eval_string(&env, "{{ steps.level.output.available + 1 }}", &s).unwrap();
    assert_eq!(v.value, json!(4));
    let v = eval_string(
        &env,
        "{{ inputs.sku }} has {{ steps.level.output.low | length }}",
        &s,
    )
    .unwrap();
    assert_eq!(v.value, json!("MUG-1 has 2"));
    assert!(eval_condition(&env, "steps.level.output.available < inputs.threshold", &s).unwrap());
    assert!(eval_condition(&env, "{{ steps.level.output.low | length > 0 }}", &s).unwrap());
}

/// n8n #35559: a reference to a missing value resolved to null and surfaced later as a
/// 400 from an external API. Here it is an error where it is read.
#[test]
fn a_missing_value_is_an_error_never_null() {
    let env = environment();
    let s = scope();
    for text in [
        "{{ steps.level.output.nope }}",
        "total: {{ steps.level.output.nope }}",
        "{{ steps.missing.output }}",
        "{{ inputs.nope | length }}",
    ] {
        let e = eval_string(&env, text, &s).unwrap_err();
        assert!(e.0.contains("undefined"), "{text}: {e}");
    }
    assert!(eval_condition(&env, "steps.level.output.nope > 1", &s).is_err());
    // A condition is a boolean, not a truthy value.
    assert!(eval_condition(&env, "steps.level.output.low", &s).is_err());
}

#[test]
fn work_is_bounded_and_statements_are_refused() {
    let env = environment();
    let s = scope();
    let e = eval_string(
        &env,
        "{{ range(100000) | map('string') | join(',') | length }}",
        &s,
    )
    .unwrap_err();
    assert!(e.0.contains("fuel"), "{e}");
    assert!(eval_string(&env, "{% for x in range(9) %}{{ x }}{% endfor %}", &s).is_err());
    assert!(
        eval_string(&env, "{{ 'a' * 2000000 }}", &s).is_err(),
        "results are size-bounded"
    );
    let long = format!("{{{{ '{}' }}}}", "a".repeat(20_000));
    assert!(eval_string(&env, &long, &s).is_err());
}

/// CVE-2025-68613: n8n expressions reached `process` through the JavaScript runtime.
/// Here there is no object graph to climb: attribute access on data yields data or an
/// error.
#[test]
fn expressions_cannot_reach_the_host() {
    let env = environment();
    let s = scope();
    for text in [
        "{{ inputs.constructor.constructor('return process')() }}",
        "{{ self }}",
        "{{ namespace() }}",
        "{{ debug() }}",
        "{{ cycler }}",
        "{{ inputs.__class__ }}",
    ] {
        assert!(eval_string(&env, text, &s).is_err(), "{text}");
    }
}

#[test]
fn values_derived_from_buyer_fields_stay_marked() {
    let env = environment();
    let s = scope();
    let v = eval_string(
        &env,
        "Ship to {{ steps.order.output.buyer.name | upper }}",
        &s,
    )
    .unwrap();
    assert!(v.pii);
    assert_eq!(v.for_log(), json!("[redacted]"));
    assert!(
        v.for_sink(false).is_err(),
        "a sink without allow_pii refuses it"
    );
    assert_eq!(v.for_sink(true).unwrap(), &json!("Ship to JANE DOE"));
    assert!(
        !format!("{v:?}").contains("JANE"),
        "Debug redacts a marked value"
    );
    match v.clone().into_marked() {
        Marked::Pii(p) => {
            assert_eq!(format!("{p}"), "[redacted]");
            assert_eq!(p.expose_pii(), "\"Ship to JANE DOE\"");
        }
        Marked::Plain(_) => panic!("buyer data lost its marking"),
    }
    // The whole output contains the buyer: marked too.
    assert!(
        eval_string(&env, "{{ steps.order.output }}", &s)
            .unwrap()
            .pii
    );
    // Other fields of the same order are not buyer data.
    let v = eval_string(&env, "{{ steps.order.output.total }}", &s).unwrap();
    assert!(!v.pii);
    assert_eq!(v.for_sink(false).unwrap(), &json!(42));
}

#[test]
fn referenced_variables_are_listed_statically() {
    let env = environment();
    let refs = template_references(
        &env,
        "{{ steps.a.output.x }} and {{ inputs.b | default('z') }}",
    )
    .unwrap();
    assert!(refs.contains("steps.a.output.x"), "{refs:?}");
    assert!(refs.contains("inputs.b"), "{refs:?}");
}

#[test]
fn a_steps_with_evaluates_as_a_whole_and_stays_marked() {
    let env = environment();
    let s = scope();
    let with: stockade_workflows::yaml::Node = stockade_workflows::yaml::parse(
        "sku: \"{{ inputs.sku }}\"\nquantity: \"{{ steps.level.output.available * 2 }}\"\nnote: { to: \"{{ steps.order.output.buyer.email }}\", fixed: [1, true] }\n",
    )
    .unwrap();
    let e = stockade_workflows::expr::eval_node(&env, &with, &s).unwrap();
    assert_eq!(e.value["sku"], json!("MUG-1"));
    assert_eq!(e.value["quantity"], json!(6));
    assert_eq!(e.value["note"]["fixed"], json!([1, true]));
    assert!(e.pii, "one buyer field marks the whole");
    let bad: stockade_workflows::yaml::Node =
        stockade_workflows::yaml::parse("x: { y: \"{{ inputs.nope }}\" }\n").unwrap();
    let err = stockade_workflows::expr::eval_node(&env, &bad, &s).unwrap_err();
    assert!(err.0.starts_with("x: y: "), "{err}");
}
