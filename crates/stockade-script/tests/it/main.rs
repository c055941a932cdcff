//! The script sandbox's tests (one binary): the n8n data API, the sandbox's refusals,
//! the limits and the pool.

mod api;
mod limits;
mod sandbox;

use serde_json::{Value, json};
use stockade_script::{Job, Limits, Mode, Outcome, Pool, ScriptError};

pub fn job(code: &str, input: Value) -> Job {
    Job {
        code: code.to_owned(),
        input,
        ..Job::default()
    }
}

pub fn run(code: &str, input: Value) -> Result<Outcome, ScriptError> {
    Pool::new(1).run(&job(code, input))
}

pub fn items(code: &str, input: Value) -> Vec<Value> {
    match run(code, input) {
        Ok(out) => out.items,
        Err(e) => panic!("script failed: {e}"),
    }
}

pub fn fails(code: &str) -> ScriptError {
    match run(code, json!([{ "a": 1 }])) {
        Ok(out) => panic!("script succeeded: {out:?}"),
        Err(e) => e,
    }
}

pub fn each(code: &str, input: Value) -> Result<Outcome, ScriptError> {
    Pool::new(1).run(&Job {
        mode: Mode::EachItem,
        ..job(code, input)
    })
}

pub fn small_limits() -> Limits {
    Limits {
        memory_bytes: 8 << 20,
        time: std::time::Duration::from_millis(200),
        ..Limits::default()
    }
}
