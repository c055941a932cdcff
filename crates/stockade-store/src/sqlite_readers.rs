//! The SQLite reader pool: at most `max` read-only connections, each kept open with its
//! prepared statements. A read that finds none idle waits for one (on the blocking
//! pool's thread) rather than opening a connection it would drop afterwards — a fresh
//! connection starts with an empty statement cache, so every statement it ran was parsed
//! again, and the schema read again, on every read past the pool's size.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::Connection;

use crate::Result;

#[derive(Default)]
struct State {
    idle: Vec<Connection>,
    /// Connections open (idle or lent out).
    open: usize,
}

pub(crate) struct ReaderPool {
    state: Mutex<State>,
    freed: Condvar,
    max: usize,
    path: PathBuf,
    opened: AtomicU64,
}

impl ReaderPool {
    pub(crate) fn new(path: PathBuf, max: usize) -> Self {
        ReaderPool {
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
            max: max.max(1),
            path,
            opened: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle connection, without waiting or opening one.
    pub(crate) fn take_idle(&self) -> Option<Connection> {
        self.lock().idle.pop()
    }

    /// A connection: an idle one, a new one while fewer than `max` are open, or the
    /// next one given back (blocks: call it on a blocking thread).
    pub(crate) fn take(&self) -> Result<Connection> {
        let mut s = self.lock();
        loop {
            if let Some(c) = s.idle.pop() {
                return Ok(c);
            }
            if s.open < self.max {
                s.open += 1;
                drop(s);
                self.opened.fetch_add(1, Ordering::Relaxed);
                return super::sqlite::open_reader(&self.path).inspect_err(|_| self.discard());
            }
            s = self
                .freed
                .wait(s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Give a connection back for the next read.
    pub(crate) fn give_back(&self, c: Connection) {
        self.lock().idle.push(c);
        self.freed.notify_one();
    }

    /// A lent connection was closed instead of given back: its place is free.
    pub(crate) fn discard(&self) {
        let mut s = self.lock();
        s.open = s.open.saturating_sub(1);
        drop(s);
        self.freed.notify_one();
    }

    /// Close every idle connection (at shutdown).
    pub(crate) fn clear(&self) {
        let mut s = self.lock();
        let n = s.idle.len();
        s.idle.clear();
        s.open = s.open.saturating_sub(n);
    }

    /// Reader connections opened since the start.
    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}
