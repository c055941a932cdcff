//! Lint of `script` steps: syntax errors and forbidden uses at the YAML line of the
//! script line, limits above the maxima, and `{{` in code never read as an expression.

use stockade_workflows::{LintOptions, Problem, Rule, lint_document};

fn lint(text: &str) -> Vec<Problem> {
    lint_document(text, &LintOptions::default()).problems
}

fn workflow(code_block: &str) -> String {
    format!(
        "name: s\ntrigger: manual\nsteps:\n  - id: t\n    uses: script\n    with:\n      input: \"{{{{ trigger.user }}}}\"\n      code: |\n{}",
        code_block
            .lines()
            .map(|l| format!("        {l}\n"))
            .collect::<String>()
    )
}

#[test]
fn a_clean_script_lints_clean_and_its_braces_are_not_expressions() {
    let text = workflow(
        "const label = \"{{ not a template }}\";\n// fetch( in a comment, \"require(\" in a string\nconst s = 'eval(1)';\nreturn $input.all().map(i => ({ json: { label, n: i.json.n } }));",
    );
    assert_eq!(lint(&text), vec![]);
}

#[test]
fn a_syntax_error_is_reported_at_its_yaml_line() {
    // Code line 3 is YAML line 11 (the block starts on line 9).
    let text = workflow("const a = 1;\nconst b = 2;\nconst c = ;\nreturn {};");
    let p = lint(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].rule, p[0].pos.line), (Rule::Script, 11));
    assert!(
        p[0].message.starts_with("script line 3: syntax error"),
        "{}",
        p[0].message
    );
    // A one-line code string: the key's own line.
    let one = "name: s\ntrigger: manual\nsteps:\n  - id: t\n    uses: script\n    with: { code: \"return {;\" }\n";
    let p = lint(one);
    assert_eq!(
        p.iter().map(|p| (p.rule, p.pos.line)).collect::<Vec<_>>(),
        vec![(Rule::Script, 6)]
    );
}

#[test]
fn each_forbidden_use_is_named_with_its_line_and_what_to_use() {
    let cases = [
        ("const fs = require('fs');", "http.request"),
        ("import fs from 'fs';", "`import`"),
        (
            "const r = await fetch('https://x.example');",
            "http.request",
        ),
        ("const k = $env.API_KEY;", "credential store"),
        ("const k = process.env.API_KEY;", "credential store"),
        (
            "const r = await this.helpers.httpRequest({});",
            "http.request",
        ),
        ("const r = await $http.get('x');", "http.request"),
        ("const v = eval('1');", "strings never become code"),
        (
            "const f = new Function('return 1');",
            "Function constructor",
        ),
        ("setTimeout(() => {}, 10);", "`wait` step"),
        ("setInterval(() => {}, 10);", "schedule"),
        ("const F = ({}).constructor.constructor;", "sandbox escape"),
    ];
    for (line, instead) in cases {
        // The forbidden line is script line 2, YAML line 10.
        let text = workflow(&format!("const x = 1;\n{line}\nreturn {{}};"));
        let p: Vec<Problem> = lint(&text)
            .into_iter()
            .filter(|p| p.rule == Rule::Script)
            .collect();
        assert!(
            p.iter().any(|p| p.pos.line == 10
                && p.message.starts_with("script line 2:")
                && p.message.contains(instead)),
            "{line}: {p:?}"
        );
    }
    // Names that merely contain a forbidden one are fine.
    let text = workflow(
        "const prefetch = (x) => x; const myFunction = () => 1; const evaluate = 2;\nreturn { a: prefetch(1), b: myFunction(), c: evaluate, d: $input.all().length };",
    );
    assert_eq!(lint(&text), vec![]);
}

#[test]
fn limits_above_the_maxima_are_lint_errors() {
    let base = "name: s\ntrigger: manual\nsteps:\n  - id: t\n    uses: script\n    with:\n      code: \"return {};\"\n";
    let ok = format!("{base}      limits: {{ memory_mb: 64, time_ms: 2000, output_kb: 512 }}\n");
    assert_eq!(lint(&ok), vec![]);
    let high = format!("{base}      limits: {{ memory_mb: 1024, time_ms: 100 }}\n");
    let p = lint(&high);
    assert_eq!(
        p.iter().map(|p| (p.rule, p.pos.line)).collect::<Vec<_>>(),
        vec![(Rule::Script, 8)],
        "{p:?}"
    );
    assert!(
        p[0].message.contains("above the configured maximum 256"),
        "{}",
        p[0].message
    );
    let unknown = format!("{base}      limits: {{ cpu: 3 }}\n");
    assert!(
        lint(&unknown)
            .iter()
            .any(|p| p.rule == Rule::Script && p.message.contains("no `cpu`"))
    );
    let mode = format!("{base}      mode: per_item\n");
    assert!(
        lint(&mode)
            .iter()
            .any(|p| p.rule == Rule::Schema && p.message.contains("all_items, each_item"))
    );
    let language = format!("{base}      language: python\n");
    assert!(
        lint(&language)
            .iter()
            .any(|p| p.message.contains("javascript"))
    );
    let configured = LintOptions {
        script: stockade_workflows::exec::ScriptSettings {
            max: stockade_workflows::exec::ScriptLimits {
                memory_mb: 32,
                time_ms: 1000,
                output_kb: 256,
            },
            ..Default::default()
        },
        ..LintOptions::default()
    };
    assert!(
        !lint_document(&ok, &configured).problems.is_empty(),
        "the configured maxima apply"
    );
}
