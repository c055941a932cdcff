//! One JavaScript run in a sandbox: the engine behind the workflow `script` step.
//!
//! A [`Pool`] keeps idle QuickJS runtimes (creating one costs more than running a short
//! script); each [`Pool::run`] takes one, builds a FRESH context in it (so no global of
//! an earlier run is ever visible), runs the author's code under the job's [`Limits`]
//! and gives the runtime back, or drops it when a limit stopped the run.
//!
//! Invariants:
//! - No I/O: the context has no module loader (`import` and `require` fail), no timers,
//!   no std/os modules, no host functions. Input and output are JSON values.
//! - Strings never become code: `eval`, `Function(...)` and every function constructor
//!   reachable through `.constructor` throw (see `prelude.js`). QuickJS compiles the
//!   host's own source through the same hook as `eval` (without the Eval intrinsic
//!   `JS_Eval` fails with "eval is not supported"), so the intrinsic is present and the
//!   prelude replaces every script-visible way to reach it before the author's code is
//!   compiled.
//! - Limits: memory (QuickJS allocator cap), stack, a wall-clock deadline enforced by the
//!   interrupt handler (uncatchable), output size and console lines. A limit stops the
//!   run with a [`ScriptError`] naming it; the author's line is given where QuickJS
//!   reports one (the wrapper adds no lines).
//! - Nothing here knows about workflows; the caller scrubs logs and errors.

mod engine;
mod error;
mod pool;

pub use error::{ScriptError, ScriptErrorKind};
pub use pool::{Pool, PoolStats};

use std::time::Duration;

use serde_json::Value;

/// How the author's code runs over the items (n8n's Code node modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Once for all items (n8n "Run Once for All Items"): returns a list of items or an object.
    #[default]
    AllItems,
    /// Once per item (n8n "Run Once for Each Item"): `$json`/`$input.item` are that item and
    /// the code returns one object (or `{json}`) for it.
    EachItem,
}

impl Mode {
    /// The mode's name in a workflow (`all_items`, `each_item`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::AllItems => "all_items",
            Mode::EachItem => "each_item",
        }
    }

    /// The mode for a workflow name.
    pub fn parse(name: &str) -> Option<Mode> {
        match name {
            "all_items" => Some(Mode::AllItems),
            "each_item" => Some(Mode::EachItem),
            _ => None,
        }
    }
}

/// The bounds of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes the run may allocate beyond a fresh context (the input counts).
    pub memory_bytes: usize,
    /// Wall-clock time of the whole run (compile, every item, promise jobs).
    pub time: Duration,
    /// Bytes of the JSON of the returned items.
    pub output_bytes: usize,
    /// The JavaScript stack.
    pub stack_bytes: usize,
    /// Console lines kept (one more line says how many were dropped).
    pub log_lines: usize,
    /// Characters kept of one console line.
    pub log_line_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 32 << 20,
            time: Duration::from_secs(1),
            output_bytes: 256 << 10,
            stack_bytes: 256 << 10,
            log_lines: 100,
            log_line_chars: 1000,
        }
    }
}

/// One script to run.
#[derive(Debug, Clone, Default)]
pub struct Job {
    /// The author's code: a function body (it may `return` and `await`).
    pub code: String,
    /// The items: an array is one item per element, an object one item, null none.
    pub input: Value,
    /// Earlier nodes' data for `$('Name')`, `$node["Name"]`, `$items("Name")`: name → value
    /// (read like `input`).
    pub nodes: serde_json::Map<String, Value>,
    pub mode: Mode,
    pub limits: Limits,
}

/// What a successful run returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The `json` of each returned item.
    pub items: Vec<Value>,
    /// Console lines (unscrubbed: the caller scrubs).
    pub logs: Vec<String>,
}
