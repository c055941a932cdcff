//! PostgreSQL commits on a thread of their own.
//!
//! A commit is a dozen round trips while it holds row locks (stock, listings) and, at
//! its end, the event and audit locks every other commit waits for. On the server's
//! runtime each round trip's answer queues behind whatever else became ready at that
//! moment — typically the replies to every webhook of the batch that just committed —
//! so locks were held for milliseconds of someone else's work per statement. Here the
//! commits run on one thread with its own single-threaded runtime and its own pool, as
//! the SQLite writer does: the operating system schedules that thread as soon as the
//! database answers. Callers hand over their changes and await the receipt.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::{mpsc, oneshot};

use crate::{Change, CommitReceipt, Environment, Result, StoreError};

struct Job {
    actor: String,
    changes: Vec<Change>,
    reply: oneshot::Sender<Result<CommitReceipt>>,
}

/// The handle to the writer thread; dropping the last one ends the thread once the
/// commits in flight are done.
pub(crate) struct PgWriter {
    jobs: mpsc::UnboundedSender<Job>,
    /// Answered once the thread has closed its pool.
    closed: oneshot::Receiver<()>,
}

impl PgWriter {
    /// Starts the thread. Its pool connects lazily, on the writer's own runtime, with
    /// at most `max` connections.
    pub(crate) fn start(
        options: PgConnectOptions,
        max: u32,
        env: Environment,
        retries: Arc<AtomicU64>,
    ) -> Result<Self> {
        let (jobs, rx) = mpsc::unbounded_channel();
        let (done, closed) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        std::thread::Builder::new()
            .name("stockade-pg-writer".into())
            .spawn(move || runtime.block_on(run(rx, options, max, env, retries, done)))
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        Ok(PgWriter { jobs, closed })
    }

    /// Runs `changes` as one transaction on the writer thread.
    pub(crate) async fn commit(&self, actor: &str, changes: Vec<Change>) -> Result<CommitReceipt> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            actor: actor.to_owned(),
            changes,
            reply,
        };
        self.jobs.send(job).map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Lets the commits in flight finish, then closes the writer's connections.
    pub(crate) async fn close(self) {
        drop(self.jobs);
        let _ = self.closed.await;
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Job>,
    options: PgConnectOptions,
    max: u32,
    env: Environment,
    retries: Arc<AtomicU64>,
    done: oneshot::Sender<()>,
) {
    let pool: PgPool = PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        // One line per commit while the database is down: debug (see `pg_health`).
        .acquire_slow_level(log::LevelFilter::Debug)
        .connect_lazy_with(options);
    let mut running = tokio::task::JoinSet::new();
    while let Some(job) = rx.recv().await {
        // Reap finished commits so the set does not grow with the process's life.
        while running.try_join_next().is_some() {}
        let (pool, retries) = (pool.clone(), retries.clone());
        running.spawn(async move {
            let receipt = crate::postgres::commit_with_retries(
                &pool,
                env,
                &retries,
                &job.actor,
                &job.changes,
            )
            .await;
            // The caller may have given up waiting (shutdown): nothing to tell.
            let _ = job.reply.send(receipt);
        });
    }
    while running.join_next().await.is_some() {}
    pool.close().await;
    let _ = done.send(());
}
