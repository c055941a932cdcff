//! `script`: the author's JavaScript in the sandbox of `stockade-script` (QuickJS, no
//! I/O), with the n8n Code node's data API.
//!
//! `with`: `code` (literal: never expression-evaluated, see `walk.rs`), `language`
//! (`javascript`, the only one), `mode` (`all_items` | `each_item`), `input` (the items),
//! `nodes` (name → value for `$('Name')`), `limits {memory_mb, time_ms, output_kb}`.
//! Output: `{items: [json…], logs: [scrubbed console lines]}`.
//!
//! Invariants: the script runs on the blocking pool, never on an async worker; its
//! limits are the workflow's (or the configured defaults), never above the configured
//! maxima (asking above one fails the step); console lines and error text are scrubbed;
//! when the evaluated `input`/`nodes` carried buyer data the executor marks the whole
//! output as buyer data (see `seal::derived_pii`), so a later sink still needs
//! `allow_pii` and the journal seals the output. The step reads nothing
//! ([`Reach::Nothing`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stockade_script::{Job, Limits, Mode, Pool, ScriptError, ScriptErrorKind};

use super::error::{ErrorClass, StepError, scrubbed};
use super::handlers::{Reach, StepCtx, StepDone, StepFuture, StepHandler};
use crate::expr::Evaluated;

/// The longest console line kept, in characters (after scrubbing).
pub const LOG_LINE_MAX: usize = 1000;
/// Console lines kept per run.
pub const LOG_LINES_MAX: usize = 100;

/// One set of script limits, in the units a workflow writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptLimits {
    pub memory_mb: u64,
    pub time_ms: u64,
    pub output_kb: u64,
}

/// `[workflows.script]`: the limits a script gets when its workflow names none, and the
/// most a workflow may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptSettings {
    pub default: ScriptLimits,
    pub max: ScriptLimits,
}

impl Default for ScriptSettings {
    fn default() -> Self {
        ScriptSettings {
            default: ScriptLimits {
                memory_mb: 32,
                time_ms: 1_000,
                output_kb: 256,
            },
            max: ScriptLimits {
                memory_mb: 256,
                time_ms: 30_000,
                output_kb: 4_096,
            },
        }
    }
}

/// The names of `limits`' keys, with the maximum each may take.
fn keys(max: &ScriptLimits) -> [(&'static str, u64); 3] {
    [
        ("memory_mb", max.memory_mb),
        ("time_ms", max.time_ms),
        ("output_kb", max.output_kb),
    ]
}

impl ScriptSettings {
    /// The limits for a step's `limits` value (absent: the defaults). An error names a
    /// key that is unknown, not a positive whole number, or above its maximum.
    pub fn resolve(&self, asked: Option<&Value>) -> Result<ScriptLimits, String> {
        let mut out = self.default;
        let Some(asked) = asked.filter(|v| !v.is_null()) else {
            return Ok(out);
        };
        let Some(map) = asked.as_object() else {
            return Err("`limits` is a mapping of memory_mb, time_ms and output_kb".into());
        };
        for (key, value) in map {
            let Some((name, max)) = keys(&self.max).into_iter().find(|(k, _)| k == key) else {
                return Err(format!(
                    "`limits` has no `{key}` (it takes memory_mb, time_ms, output_kb)"
                ));
            };
            let n = value
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("`limits.{name}` is a positive whole number"))?;
            if n > max {
                return Err(format!(
                    "`limits.{name}` is {n}, above the configured maximum {max} ([workflows.script] max_{name})"
                ));
            }
            match name {
                "memory_mb" => out.memory_mb = n,
                "time_ms" => out.time_ms = n,
                _ => out.output_kb = n,
            }
        }
        Ok(out)
    }
}

impl ScriptLimits {
    /// The sandbox's limits.
    pub fn sandbox(&self) -> Limits {
        let mib = usize::try_from(self.memory_mb).unwrap_or(usize::MAX);
        let kib = usize::try_from(self.output_kb).unwrap_or(usize::MAX);
        Limits {
            memory_bytes: mib.saturating_mul(1 << 20),
            time: Duration::from_millis(self.time_ms),
            output_bytes: kib.saturating_mul(1 << 10),
            log_lines: LOG_LINES_MAX,
            log_line_chars: LOG_LINE_MAX,
            ..Limits::default()
        }
    }
}

/// The `script` handler: a pool of engines and the configured limits.
#[derive(Debug, Clone)]
pub struct ScriptStep {
    pool: Arc<Pool>,
    /// Scripts running at once: more than the cores only adds thread switches, and a
    /// bounded number keeps every engine in the pool (none built and dropped per run).
    /// Twice the cores (at least 4), so a couple of scripts running to their time limit
    /// do not hold up the others. Waiting for a permit does not count against a script's
    /// time limit (its deadline starts when it runs).
    running: Arc<tokio::sync::Semaphore>,
    settings: ScriptSettings,
}

/// How many scripts run at once (see [`ScriptStep::running`]).
fn at_once() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    (cores * 2).max(4)
}

impl Default for ScriptStep {
    fn default() -> Self {
        ScriptStep::new(ScriptSettings::default())
    }
}

impl ScriptStep {
    pub fn new(settings: ScriptSettings) -> Self {
        let n = at_once();
        ScriptStep {
            pool: Arc::new(Pool::new(n)),
            running: Arc::new(tokio::sync::Semaphore::new(n)),
            settings,
        }
    }

    /// The engine pool (its counters, for the benchmark).
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The job for a step's evaluated `with`.
    fn job(&self, value: &Value) -> Result<Job, StepError> {
        let invalid = |m: String| StepError::new(ErrorClass::Invalid, format!("script: {m}"));
        let code = value
            .get("code")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("`code` is the script's text".into()))?;
        match value.get("language") {
            None | Some(Value::Null) => {}
            Some(Value::String(l)) if l == "javascript" => {}
            Some(_) => return Err(invalid("`language` is javascript (the only one)".into())),
        }
        let mode = match value.get("mode") {
            None | Some(Value::Null) => Mode::AllItems,
            Some(v) => v
                .as_str()
                .and_then(Mode::parse)
                .ok_or_else(|| invalid("`mode` is all_items or each_item".into()))?,
        };
        let nodes = match value.get("nodes") {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(invalid("`nodes` is a mapping of node name to value".into())),
        };
        let limits = self
            .settings
            .resolve(value.get("limits"))
            .map_err(invalid)?;
        Ok(Job {
            code: code.to_owned(),
            input: value.get("input").cloned().unwrap_or(Value::Null),
            nodes,
            mode,
            limits: limits.sandbox(),
        })
    }
}

/// A sandbox error as the step's error (scrubbed: a thrown message may quote data).
fn step_error(e: &ScriptError) -> StepError {
    let class = match e.kind {
        ScriptErrorKind::Syntax => ErrorClass::Invalid,
        ScriptErrorKind::Engine => ErrorClass::Transient,
        // The same code on the same data fails the same way: never retried.
        _ => ErrorClass::Fail,
    };
    StepError::new(class, scrubbed(&format!("script: {e}")))
}

impl StepHandler for ScriptStep {
    /// Pure computation on its `with`: it reads nothing.
    fn reach(&self) -> Reach {
        Reach::Nothing
    }

    fn run<'a>(&'a self, _ctx: &'a StepCtx<'a>, params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            let job = self.job(&params.value)?;
            let pool = Arc::clone(&self.pool);
            let permit = Arc::clone(&self.running)
                .acquire_owned()
                .await
                .map_err(|_| {
                    StepError::new(ErrorClass::Transient, "script: the engine is stopping")
                })?;
            let outcome = tokio::task::spawn_blocking(move || {
                let out = pool.run(&job);
                drop(permit);
                out
            })
            .await
            .map_err(|_| StepError::new(ErrorClass::Transient, "script: the run was lost"))?
            .map_err(|e| step_error(&e))?;
            let logs: Vec<Value> = outcome
                .logs
                .iter()
                .map(|line| Value::String(stockade_alerts::scrub::scrub(line, LOG_LINE_MAX)))
                .collect();
            Ok(StepDone {
                output: json!({ "items": outcome.items, "logs": logs }),
                changes: vec![],
            })
        })
    }
}
