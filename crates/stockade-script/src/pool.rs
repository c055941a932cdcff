//! The pool of idle QuickJS runtimes.
//!
//! A runtime serves one run at a time (it is taken out of the pool for the run). After a
//! clean run its garbage is collected and it goes back (up to `max_idle`); after a run a
//! limit stopped it is dropped, so a runaway script never leaves state behind for the
//! next one. Contexts are never reused: each run builds a fresh one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rquickjs::Runtime;

use crate::engine;
use crate::error::{ScriptError, ScriptErrorKind};
use crate::{Job, Limits, Outcome};

/// Counters of a pool (for tests and the benchmark).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Runtimes created.
    pub created: u64,
    /// Runs served by a runtime taken from the pool.
    pub reused: u64,
    /// Runtimes dropped after a limit stopped their run.
    pub discarded: u64,
    /// Runtimes idle now.
    pub idle: usize,
}

/// Idle runtimes, shared by the threads that run scripts.
pub struct Pool {
    idle: Mutex<Vec<Runtime>>,
    max_idle: usize,
    created: AtomicU64,
    reused: AtomicU64,
    discarded: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new(8)
    }
}

impl Pool {
    /// A pool keeping at most `max_idle` idle runtimes.
    pub fn new(max_idle: usize) -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
            max_idle,
            created: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        }
    }

    /// Run one job (blocking: call it off the async workers).
    pub fn run(&self, job: &Job) -> Result<Outcome, ScriptError> {
        let rt = self.take()?;
        let run = engine::run(&rt, job);
        self.give_back(rt, run.reusable);
        run.result
    }

    /// Compile `code` without running it: `Ok` or the syntax error with its line.
    pub fn check(&self, code: &str) -> Result<(), ScriptError> {
        let rt = self.take()?;
        let limits = Limits {
            time: std::time::Duration::from_millis(500),
            ..Limits::default()
        };
        let result = engine::check(&rt, code, &limits);
        let reusable = !matches!(&result, Err(e) if e.kind != ScriptErrorKind::Syntax);
        self.give_back(rt, reusable);
        result
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            created: self.created.load(Ordering::Relaxed),
            reused: self.reused.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            idle: self.lock().len(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Runtime>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self) -> Result<Runtime, ScriptError> {
        if let Some(rt) = self.lock().pop() {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(rt);
        }
        let rt = Runtime::new().map_err(|e| {
            ScriptError::new(
                ScriptErrorKind::Engine,
                format!("could not create a script runtime: {e}"),
                None,
            )
        })?;
        self.created.fetch_add(1, Ordering::Relaxed);
        Ok(rt)
    }

    fn give_back(&self, rt: Runtime, reusable: bool) {
        if !reusable {
            self.discarded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The dropped context's cycles would otherwise count against the next run's limit.
        rt.run_gc();
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(rt);
        }
    }
}
