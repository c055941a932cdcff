//! `bench sync --workers N`: more processes on the bench's PostgreSQL database.
//!
//! Each is this same program (`stockade bench sync-worker`, hidden), a `worker`
//! application built on the bench's directory (its master key) and database, allowed to
//! reach the simulators of the bench's child process (their ready file). It takes its
//! share of the connections' leases, as `stockade serve --role worker` does, and runs
//! until SIGTERM or until its standard input closes (the bench ended any other way).
//! The bench reads each one's CPU from `/proc/PID/stat`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use stockade_app::Role;
use stockade_app::sandbox::{Place, SandboxApp, join};
use stockade_store::{DatabaseUrl, Store};

use super::live::cpu_seconds_of;
use crate::cli_sandbox_bench::BenchSyncWorkerArgs;
use crate::exit::Failure;

/// The extra processes; killed when dropped.
#[derive(Debug)]
pub struct Workers {
    children: Vec<tokio::process::Child>,
    pids: Vec<u32>,
}

impl Workers {
    /// Start `n` workers on `database_url` (schema included) with the bench's `dir`,
    /// and wait until the connections' leases are spread over `n` + 1 processes (at most
    /// 60 s).
    pub async fn start(
        n: u32,
        dir: &Path,
        database_url: &str,
        realistic_limits: bool,
        store: &Store,
    ) -> Result<Workers, Failure> {
        let exe = std::env::current_exe()
            .map_err(|e| Failure::runtime(format!("cannot find this program's path: {e}")))?;
        let mut children = Vec::new();
        let mut pids = Vec::new();
        for i in 0..n {
            let log = std::fs::File::create(dir.join(format!("worker-{i}.log")))
                .map_err(|e| Failure::runtime(format!("cannot create a worker's log: {e}")))?;
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.args(["bench", "sync-worker", "--dir"])
                .arg(dir)
                .args(["--database-url", database_url])
                .current_dir(dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .kill_on_drop(true);
            if realistic_limits {
                cmd.arg("--realistic-limits");
            }
            let child = cmd
                .spawn()
                .map_err(|e| Failure::runtime(format!("cannot start a worker process: {e}")))?;
            pids.push(child.id().unwrap_or(0));
            children.push(child);
        }
        let mut workers = Workers { children, pids };
        workers.wait_spread(n as usize + 1, store, dir).await?;
        Ok(workers)
    }

    /// Wait until the connections' leases are held by `processes` distinct processes
    /// (or by as many as there are connections).
    async fn wait_spread(
        &mut self,
        processes: usize,
        store: &Store,
        dir: &Path,
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let leases = store.leases("connection:").await?;
            let holders: std::collections::HashSet<String> = leases
                .iter()
                .filter(|l| l.held())
                .filter_map(|l| l.holder.clone())
                .collect();
            if holders.len() >= processes.min(leases.len().max(1)) {
                return Ok(());
            }
            let ended = self
                .children
                .iter_mut()
                .any(|c| c.try_wait().ok().flatten().is_some());
            if ended || Instant::now() > deadline {
                // The directory goes with the bench: say what the first worker said.
                let log = std::fs::read_to_string(dir.join("worker-0.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(Failure::runtime(format!(
                    "the worker processes did not take a share of the connections{}; the first one's last lines:\n{}",
                    if ended {
                        " (one ended)"
                    } else {
                        " within 60 s"
                    },
                    tail.join("\n")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Their process ids.
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// CPU seconds every worker has used.
    pub fn cpu_seconds(&self) -> f64 {
        self.pids
            .iter()
            .map(|p| cpu_seconds_of(&p.to_string()))
            .sum()
    }

    /// Stop them (SIGTERM, then kill after 10 s).
    pub async fn stop(mut self) {
        for pid in &self.pids {
            if let Some(pid) = i32::try_from(*pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        for child in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// `stockade bench sync-worker`: one worker of the bench (see the module).
pub async fn worker(args: BenchSyncWorkerArgs) -> Result<(), Failure> {
    let dir: PathBuf = args.dir;
    let Some((sims, _)) = super::sandbox_ready::read(&dir.join("sandbox").join("ready.json"))?
    else {
        return Err(Failure::runtime(
            "the simulators' ready file is missing: this command is started by `stockade bench sync --workers`",
        ));
    };
    let url = DatabaseUrl::parse(&args.database_url)?;
    let (_, tls) = stockade_sandbox::receiver_tls()
        .map_err(|e| Failure::runtime(format!("cannot make the worker's test TLS: {e}")))?;
    let place = Place {
        sims: &sims,
        tls,
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        dir: &dir,
        url,
    };
    let app = join(
        place,
        SandboxApp {
            sync: super::bench::sync_options(args.realistic_limits),
            realistic_limits: args.realistic_limits,
            catalog: None,
            hooks: None,
            tune_egress: None,
        },
        Role::Worker,
    )
    .await?;
    let stop = async {
        if let Err(e) = super::sandbox_lift::until_stopped(true).await {
            tracing::warn!("{e}");
        }
    };
    app.run_until_stopped(stop).await?;
    Ok(())
}
