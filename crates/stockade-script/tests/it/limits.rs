//! The limits: time, memory, stack, output; errors with the author's line; a runaway
//! script never harms other runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stockade_script::{Job, Limits, Pool, ScriptErrorKind};

use crate::{fails, job, small_limits};

fn limited(code: &str, limits: Limits) -> stockade_script::ScriptError {
    match Pool::new(1).run(&Job {
        limits,
        ..job(code, json!([]))
    }) {
        Ok(out) => panic!("succeeded: {out:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_thrown_error_names_the_authors_line() {
    let err = fails("const a = 1;\nconst b = 2;\nthrow new Error('boom ' + (a + b));\n");
    assert_eq!(err.kind, ScriptErrorKind::Thrown);
    assert_eq!(err.message, "the script threw Error: boom 3");
    assert_eq!(err.line, Some(3));
    let err = fails("\n\nconst x = null;\n\nreturn {v: x.field};");
    assert_eq!(
        (err.kind, err.line),
        (ScriptErrorKind::Thrown, Some(5)),
        "{err}"
    );
    assert!(err.message.contains("TypeError"), "{err}");
    let err = fails("throw 'plain';");
    assert_eq!(err.message, "the script threw a value: \"plain\"");
}

#[test]
fn a_syntax_error_names_the_authors_line() {
    let err = fails("const a = 1;\nconst b = ;\nreturn {};");
    assert_eq!(
        (err.kind, err.line),
        (ScriptErrorKind::Syntax, Some(2)),
        "{err}"
    );
    let pool = Pool::new(1);
    assert_eq!(pool.check("return $input.all();"), Ok(()));
    let err = pool.check("let x = 1;\n\nx = (;\n").err();
    assert_eq!(
        err.map(|e| (e.kind, e.line)),
        Some((ScriptErrorKind::Syntax, Some(3)))
    );
    // The check compiles only: nothing runs.
    assert_eq!(pool.check("while (true) {}"), Ok(()));
}

#[test]
fn the_time_limit_stops_a_forever_loop_uncatchably() {
    let started = Instant::now();
    let err = limited(
        "let i = 0;\nwhile (true) { try { i++; } catch (e) {} }",
        small_limits(),
    );
    assert_eq!(err.kind, ScriptErrorKind::Time, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let err = limited(
        "try { while (true) {} } catch (e) { return {caught: true}; }",
        small_limits(),
    );
    assert_eq!(
        err.kind,
        ScriptErrorKind::Time,
        "the interrupt is not catchable: {err}"
    );
    let err = limited(
        "const go = async () => { for (;;) await null; };\nawait go();",
        small_limits(),
    );
    assert_eq!(
        err.kind,
        ScriptErrorKind::Time,
        "promise jobs are under the deadline too: {err}"
    );
    let err = limited(
        "return {m: /(a+)+$/.test('a'.repeat(40) + 'b')};",
        small_limits(),
    );
    assert_eq!(
        err.kind,
        ScriptErrorKind::Time,
        "a backtracking regex: {err}"
    );
}

#[test]
fn the_memory_limit_stops_a_huge_allocation() {
    let err = limited(
        "const a = [];\nwhile (true) a.push('x'.repeat(1000) + a.length);",
        small_limits(),
    );
    assert_eq!(err.kind, ScriptErrorKind::Memory, "{err}");
    let err = limited("return {s: 'x'.repeat(64 * 1024 * 1024)};", small_limits());
    assert_eq!(err.kind, ScriptErrorKind::Memory, "{err}");
    // A script well within the limit is not stopped.
    let ok = Pool::new(1).run(&Job {
        limits: small_limits(),
        ..job("return {n: 'x'.repeat(1024 * 1024).length};", json!([]))
    });
    assert_eq!(
        ok.map(|o| o.items).map_err(|e| e.to_string()),
        Ok(vec![json!({"n": 1048576})])
    );
}

#[test]
fn the_stack_limit_stops_deep_recursion() {
    let err = limited(
        "function f(n) { return f(n + 1) + 1; }\nreturn {v: f(0)};",
        small_limits(),
    );
    assert_eq!(err.kind, ScriptErrorKind::Stack, "{err}");
    assert_eq!(err.line, Some(1));
}

#[test]
fn the_output_limit_refuses_an_oversized_result() {
    let limits = Limits {
        output_bytes: 1024,
        ..small_limits()
    };
    let err = limited("return [{json: {s: 'x'.repeat(2000)}}];", limits);
    assert_eq!(err.kind, ScriptErrorKind::Output, "{err}");
    assert!(err.message.contains("output limit of 1 KiB"), "{err}");
}

#[test]
fn a_runaway_script_never_harms_other_runs() {
    let pool = Arc::new(Pool::new(4));
    let runaway = |code: &'static str| {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            pool.run(&Job {
                limits: Limits {
                    time: Duration::from_millis(500),
                    ..small_limits()
                },
                ..job(code, json!([]))
            })
        })
    };
    let forever = runaway("while (true) {}");
    let huge = runaway("const a = []; while (true) a.push(new Array(10000).fill(1));");
    let ok: Vec<_> = (0..4)
        .map(|n| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                (0..20)
                    .map(|i| {
                        pool.run(&job(
                            "return {v: $json.n * 2};",
                            json!([{ "n": n * 100 + i }]),
                        ))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (n, handle) in ok.into_iter().enumerate() {
        let results = handle.join().unwrap_or_default();
        for (i, r) in results.into_iter().enumerate() {
            assert_eq!(
                r.map(|o| o.items).map_err(|e| e.to_string()),
                Ok(vec![json!({"v": (n * 100 + i) * 2})])
            );
        }
    }
    let forever = forever.join().map(|r| r.map_err(|e| e.kind));
    let huge = huge.join().map(|r| r.map_err(|e| e.kind));
    assert!(
        matches!(forever, Ok(Err(ScriptErrorKind::Time))),
        "{forever:?}"
    );
    assert!(matches!(huge, Ok(Err(ScriptErrorKind::Memory))), "{huge:?}");
    assert_eq!(
        pool.stats().discarded,
        2,
        "the runaway runs' runtimes were dropped"
    );
    // The pool still serves runs afterwards.
    let after = pool
        .run(&job("return {ok: true};", json!([])))
        .map(|o| o.items)
        .map_err(|e| e.to_string());
    assert_eq!(after, Ok(vec![json!({"ok": true})]));
}

#[test]
fn a_pooled_run_costs_well_under_a_millisecond() {
    let pool = Pool::new(1);
    let run = || {
        pool.run(&job(
            "return $input.all().map(i => ({json: {v: i.json.n + 1}}));",
            json!([{ "n": 1 }]),
        ))
    };
    for _ in 0..20 {
        assert!(run().is_ok());
    }
    let started = Instant::now();
    let n = 200;
    for _ in 0..n {
        assert!(run().is_ok());
    }
    let per_run = started.elapsed() / n;
    println!(
        "pooled script run: {per_run:?} per run (debug build of this crate; QuickJS at opt-level 1)"
    );
    // Generous for an unoptimised test build on a loaded machine; the release figure is
    // measured by `stockade bench workflow --script`.
    assert!(per_run < Duration::from_millis(20), "{per_run:?}");
}
