//! One run in a given runtime: a fresh context, the prelude, the author's code, the
//! limits, and the result read back as JSON.
//!
//! The author's code is wrapped as `(async function () {` CODE `\n})` with the opening on
//! the code's first line, so QuickJS's line numbers are the author's. A run that hit a
//! limit (time, memory, stack) reports `reusable: false` and the pool drops the runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rquickjs::context::intrinsic;
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Object, Promise, Runtime};

use crate::error::{ScriptError, ScriptErrorKind};
use crate::{Job, Limits, Outcome};

/// The file name QuickJS reports for the author's code (the line numbers we read).
const SCRIPT_FILE: &str = "script.js";
const PRELUDE_FILE: &str = "stockade.js";
const PRELUDE: &str = include_str!("prelude.js");

/// The bytes a fresh context and the prelude take, allowed on top of the job's memory
/// limit so that `memory_mb` is what the script itself may use.
pub(crate) const CONTEXT_ALLOWANCE: usize = 1 << 20;

/// Only what a data transformation needs. `Eval` is the hook through which the host
/// compiles anything at all; the prelude takes every script-visible path to it away.
/// Left out: Proxy, typed arrays, WeakRef, Performance (timers), DOMException.
type Intrinsics = (
    intrinsic::Eval,
    intrinsic::Json,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::MapSet,
    intrinsic::Promise,
    intrinsic::Date,
);

/// The result of one run and whether the runtime may serve another.
pub(crate) struct Run {
    pub result: Result<Outcome, ScriptError>,
    pub reusable: bool,
}

/// The author's code as a function expression, on the same first line.
pub(crate) fn wrap(code: &str) -> String {
    format!("(async function () {{{code}\n}})")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Compile,
    Run,
}

/// Run `job` in a fresh context of `rt`.
pub(crate) fn run(rt: &Runtime, job: &Job) -> Run {
    let fired = arm(rt, &job.limits);
    let result = match Context::custom::<Intrinsics>(rt) {
        Ok(context) => context.with(|ctx| in_context(&ctx, job, &fired)),
        Err(e) => Err(ScriptError::new(
            ScriptErrorKind::Engine,
            format!("could not create a script context: {e}"),
            None,
        )),
    };
    disarm(rt);
    let reusable = !matches!(
        &result,
        Err(e) if matches!(e.kind, ScriptErrorKind::Time | ScriptErrorKind::Memory | ScriptErrorKind::Stack | ScriptErrorKind::Engine)
    );
    Run { result, reusable }
}

/// Compile `code` without running it (the linter's syntax check): the function is
/// defined inside another that is never called.
pub(crate) fn check(rt: &Runtime, code: &str, limits: &Limits) -> Result<(), ScriptError> {
    let fired = arm(rt, limits);
    let result = match Context::custom::<Intrinsics>(rt) {
        Ok(context) => context.with(|ctx| {
            let source = format!("(function () {{{}\n}})", wrap(code));
            compile(&ctx, &source)
                .map(|_| ())
                .map_err(|e| e.classify(&fired, limits, Phase::Compile))
        }),
        Err(e) => Err(ScriptError::new(
            ScriptErrorKind::Engine,
            e.to_string(),
            None,
        )),
    };
    disarm(rt);
    result
}

/// Set the limits and the deadline; returns the flag the interrupt handler raises.
fn arm(rt: &Runtime, limits: &Limits) -> Arc<AtomicBool> {
    let fired = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&fired);
    let deadline = Instant::now() + limits.time;
    rt.set_interrupt_handler(Some(Box::new(move || {
        let late = Instant::now() >= deadline;
        if late {
            flag.store(true, Ordering::Relaxed);
        }
        late
    })));
    rt.set_max_stack_size(limits.stack_bytes);
    rt.set_memory_limit(limits.memory_bytes.saturating_add(CONTEXT_ALLOWANCE));
    fired
}

fn disarm(rt: &Runtime) {
    rt.set_interrupt_handler(None);
    rt.set_memory_limit(0);
}

/// An engine failure with what was caught, before it is classified.
struct Failure {
    name: String,
    message: String,
    stack: Option<String>,
    allocation: bool,
}

fn compile<'js>(ctx: &Ctx<'js>, source: &str) -> Result<Function<'js>, Failure> {
    let mut options = rquickjs::context::EvalOptions::default();
    options.strict = false;
    options.filename = Some(SCRIPT_FILE.to_owned());
    ctx.eval_with_options(source.as_bytes().to_vec(), options)
        .catch(ctx)
        .map_err(Failure::from)
}

fn in_context(ctx: &Ctx<'_>, job: &Job, fired: &AtomicBool) -> Result<Outcome, ScriptError> {
    let limits = &job.limits;
    let runner = prepare(ctx, job).map_err(|e| e.classify(fired, limits, Phase::Run))?;
    let code =
        compile(ctx, &wrap(&job.code)).map_err(|e| e.classify(fired, limits, Phase::Compile))?;
    let done = drive(ctx, &runner, code).map_err(|e| e.classify(fired, limits, Phase::Run))?;
    read(ctx, &done, limits).map_err(|e| match e {
        Read::Failure(f) => f.classify(fired, limits, Phase::Run),
        Read::Error(e) => e,
    })
}

/// The prelude, called with the job's data: returns `run(fn)`.
fn prepare<'js>(ctx: &Ctx<'js>, job: &Job) -> Result<Function<'js>, Failure> {
    let mut options = rquickjs::context::EvalOptions::default();
    options.filename = Some(PRELUDE_FILE.to_owned());
    let factory: Function = ctx
        .eval_with_options(PRELUDE.as_bytes().to_vec(), options)
        .catch(ctx)
        .map_err(Failure::from)?;
    let input = json_in(ctx, &job.input)?;
    let nodes = json_in(ctx, &serde_json::Value::Object(job.nodes.clone()))?;
    factory
        .call((
            input,
            nodes,
            job.mode.name(),
            job.limits.log_lines,
            job.limits.log_line_chars,
        ))
        .catch(ctx)
        .map_err(Failure::from)
}

fn json_in<'js>(
    ctx: &Ctx<'js>,
    value: &serde_json::Value,
) -> Result<rquickjs::Value<'js>, Failure> {
    let text = serde_json::to_string(value).map_err(|e| Failure::plain(e.to_string()))?;
    ctx.json_parse(text).catch(ctx).map_err(Failure::from)
}

/// Call `run(code)` and drive the promise jobs until it settles (there is no I/O, so a
/// promise that is still pending when no job is left never settles).
fn drive<'js>(
    ctx: &Ctx<'js>,
    runner: &Function<'js>,
    code: Function<'js>,
) -> Result<Object<'js>, Failure> {
    let promise: Promise = runner.call((code,)).catch(ctx).map_err(Failure::from)?;
    match promise.finish::<Object>().catch(ctx) {
        Ok(done) => Ok(done),
        Err(CaughtError::Error(rquickjs::Error::WouldBlock)) => Err(Failure::plain(
            "the script awaited a promise that never settles (there is no I/O or timer to wait for)".into(),
        )),
        Err(e) => Err(Failure::from(e)),
    }
}

enum Read {
    Failure(Failure),
    Error(ScriptError),
}

/// The returned items as JSON (bounded by the output limit) and the console lines.
fn read<'js>(ctx: &Ctx<'js>, done: &Object<'js>, limits: &Limits) -> Result<Outcome, Read> {
    let items: rquickjs::Value = done
        .get("items")
        .catch(ctx)
        .map_err(|e| Read::Failure(e.into()))?;
    let text = ctx
        .json_stringify(items)
        .catch(ctx)
        .map_err(|e| Read::Failure(e.into()))?
        .map(|s| s.to_string())
        .transpose()
        .catch(ctx)
        .map_err(|e| Read::Failure(e.into()))?
        .unwrap_or_else(|| "[]".to_owned());
    if text.len() > limits.output_bytes {
        return Err(Read::Error(ScriptError::new(
            ScriptErrorKind::Output,
            format!(
                "the script's output is {} KiB, over its output limit of {} KiB",
                text.len().div_ceil(1024),
                limits.output_bytes / 1024
            ),
            None,
        )));
    }
    let items: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|e| {
        Read::Error(ScriptError::new(
            ScriptErrorKind::Thrown,
            format!("the output is not JSON: {e}"),
            None,
        ))
    })?;
    let logs: Vec<String> = done
        .get("logs")
        .catch(ctx)
        .map_err(|e| Read::Failure(e.into()))?;
    Ok(Outcome { items, logs })
}

impl Failure {
    fn plain(message: String) -> Self {
        Failure {
            name: "Error".into(),
            message,
            stack: None,
            allocation: false,
        }
    }

    fn classify(self, fired: &AtomicBool, limits: &Limits, phase: Phase) -> ScriptError {
        let line = self.stack.as_deref().and_then(author_line);
        let (kind, message) = if fired.load(Ordering::Relaxed) {
            let ms = limits.time.as_millis();
            (
                ScriptErrorKind::Time,
                format!("the script ran longer than its time limit ({ms} ms) and was stopped"),
            )
        } else if self.allocation || self.message.contains("out of memory") {
            let mib = limits.memory_bytes as f64 / f64::from(1u32 << 20);
            (
                ScriptErrorKind::Memory,
                format!(
                    "the script used more than its memory limit ({mib:.0} MiB) and was stopped"
                ),
            )
        } else if self.message.contains("Maximum call stack size exceeded")
            || self.message.contains("stack overflow")
        {
            (
                ScriptErrorKind::Stack,
                "the script recursed too deeply (stack limit) and was stopped".to_owned(),
            )
        } else if phase == Phase::Compile && self.name == "SyntaxError" {
            (
                ScriptErrorKind::Syntax,
                format!("syntax error: {}", self.message),
            )
        } else if self.message.is_empty() {
            (
                ScriptErrorKind::Thrown,
                format!("the script threw {}", self.name),
            )
        } else {
            (
                ScriptErrorKind::Thrown,
                format!("the script threw {}: {}", self.name, self.message),
            )
        };
        ScriptError::new(kind, message, line)
    }
}

impl From<CaughtError<'_>> for Failure {
    fn from(caught: CaughtError<'_>) -> Self {
        match caught {
            CaughtError::Exception(e) => Failure {
                name: e
                    .as_object()
                    .get::<_, String>("name")
                    .unwrap_or_else(|_| "Error".into()),
                message: e.message().unwrap_or_default(),
                stack: e.stack(),
                allocation: false,
            },
            // QuickJS throws `null` when it cannot even allocate the "out of memory" error
            // (a script's own `throw null` is reported the same way).
            CaughtError::Value(v) if v.is_null() => Failure {
                name: "null".into(),
                message: "out of memory".into(),
                stack: None,
                allocation: true,
            },
            CaughtError::Value(v) => {
                let text = v
                    .ctx()
                    .json_stringify(v.clone())
                    .ok()
                    .flatten()
                    .and_then(|s| s.to_string().ok())
                    .unwrap_or_else(|| format!("a {}", v.type_name()));
                Failure {
                    name: "a value".into(),
                    message: text,
                    stack: None,
                    allocation: false,
                }
            }
            CaughtError::Error(e) => Failure {
                name: "Error".into(),
                allocation: matches!(e, rquickjs::Error::Allocation),
                message: e.to_string(),
                stack: None,
            },
        }
    }
}

/// The first `script.js:LINE` in a QuickJS stack: the author's line.
fn author_line(stack: &str) -> Option<u32> {
    let at = stack.find(&format!("{SCRIPT_FILE}:"))?;
    let digits: String = stack[at + SCRIPT_FILE.len() + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
