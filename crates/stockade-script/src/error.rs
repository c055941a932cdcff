//! Why a run failed: a kind, a message fit for the author, and the author's line.
//!
//! The message may quote the script's own error text (which may hold data): the caller
//! scrubs it before storing it.

use std::fmt;

/// What stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptErrorKind {
    /// The code does not compile.
    Syntax,
    /// The code threw (or its promise rejected), or returned something that is not items.
    Thrown,
    /// The wall-clock limit (uncatchable).
    Time,
    /// The memory limit.
    Memory,
    /// The stack limit (too deep a recursion).
    Stack,
    /// The returned items' JSON is larger than the output limit.
    Output,
    /// The engine itself failed (could not create a runtime or context).
    Engine,
}

/// A failed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    pub kind: ScriptErrorKind,
    /// What happened, for the author.
    pub message: String,
    /// The author's line (1-based), where QuickJS gives one.
    pub line: Option<u32>,
}

impl ScriptError {
    pub(crate) fn new(
        kind: ScriptErrorKind,
        message: impl Into<String>,
        line: Option<u32>,
    ) -> Self {
        ScriptError {
            kind,
            message: message.into(),
            line,
        }
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (script line {line})", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for ScriptError {}
