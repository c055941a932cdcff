//! What a script cannot do: build code from strings, load modules, set timers, reach the
//! host, or see another run's globals.

use serde_json::json;
use stockade_script::{Pool, ScriptErrorKind};

use crate::{fails, items, job};

#[test]
fn strings_never_become_code() {
    for code in [
        "return {v: eval('1')}",
        "return {v: (0, eval)('1')}",
        "return {v: new Function('return 1')()}",
        "return {v: Function('return 1')()}",
        "return {v: (function () {}).constructor('return 1')()}",
        "return {v: (async function () {}).constructor('return 1')}",
        "return {v: (function* () {}).constructor('yield 1')}",
        "return {v: (async function* () {}).constructor('yield 1')}",
        "return {v: ({}).constructor.constructor('return this')()}",
        "return {v: Reflect.construct(Object.getPrototypeOf(() => 1).constructor, ['return 1'])}",
    ] {
        let err = fails(code);
        assert_eq!(err.kind, ScriptErrorKind::Thrown, "{code}: {err}");
        assert!(
            err.message.contains("not available in a script step"),
            "{code}: {err}"
        );
    }
    // Replacing the constructor does not break what data code uses.
    let code =
        "return {f: (() => 1) instanceof Function, t: typeof Function, n: [3,1,2].sort().join()}";
    assert_eq!(
        items(code, json!([])),
        vec![json!({"f": true, "t": "function", "n": "1,2,3"})]
    );
}

#[test]
fn no_modules_no_timers_no_host() {
    let err = fails("const fs = require('fs'); return {};");
    assert!(err.message.contains("require"), "{err}");
    let err = fails("import fs from 'fs'; return {};");
    assert_eq!(err.kind, ScriptErrorKind::Syntax, "{err}");
    let err = fails("const m = await import('fs'); return {};");
    assert_eq!(err.kind, ScriptErrorKind::Thrown, "{err}");
    let code = "return {t: typeof setTimeout, i: typeof setInterval, p: typeof process, f: typeof fetch, \
                s: typeof std, o: typeof os, x: typeof XMLHttpRequest, h: typeof this.helpers};";
    assert_eq!(
        items(code, json!([])),
        vec![
            json!({"t": "undefined", "i": "undefined", "p": "undefined", "f": "undefined",
                    "s": "undefined", "o": "undefined", "x": "undefined", "h": "undefined"})
        ]
    );
}

#[test]
fn a_run_never_sees_another_runs_globals() {
    let pool = Pool::new(1);
    let first = pool.run(&job(
        "globalThis.leak = 'secret'; Object.prototype.polluted = 1; Array.prototype.map = null; \
         Function.prototype.bad = 1; return {};",
        json!([]),
    ));
    assert!(first.is_ok(), "{first:?}");
    let second = pool
        .run(&job(
            "return {leak: typeof leak, polluted: ({}).polluted === undefined, \
             map: typeof [].map, bad: typeof (() => 1).bad};",
            json!([]),
        ))
        .map(|o| o.items)
        .map_err(|e| e.to_string());
    assert_eq!(
        second,
        Ok(vec![
            json!({"leak": "undefined", "polluted": true, "map": "function", "bad": "undefined"})
        ])
    );
    let stats = pool.stats();
    assert_eq!(
        (stats.created, stats.reused),
        (1, 1),
        "the second run reused the runtime"
    );
}
