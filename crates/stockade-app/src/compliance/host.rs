//! The host checks of the compliance report: the controls a marketplace reviewer asks
//! about that live on the machine, not in Stockade — SSH keys only, a firewall that lets
//! in only the listening port, the Fail2Ban jails, automatic security updates, the data
//! directory's and master key's permissions, and an unprivileged service user.
//!
//! Invariants: read-only (files are read, commands only list or show); every check names
//! each fact on its own evidence line; a fact this process may not or cannot see (not
//! root, a tool not installed, not a Debian host) says "cannot check here" and why —
//! never a pass. A check passes only when every one of its facts was seen and holds;
//! any fact that does not hold fails it; when none could be seen it is "cannot check".
//! The root directory and the command runner are injected, so tests feed fixture files
//! and command outputs; the real run uses `/` and the system's commands.

mod files;
mod firewall;
mod services;
mod ssh;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stockade_server::compliance::{Arg, Check, Evidence, Verdict};

/// The Fail2Ban jails `deploy/fail2ban/jail.d/stockade.conf` defines.
pub const JAILS: [&str; 2] = ["stockade", "stockade-webhook"];

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdOut {
    /// The exit code (`None`: killed by a signal or by the time limit).
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOut {
    pub fn ok(&self) -> bool {
        self.status == Some(0)
    }
    /// The first non-empty line of standard error (or output), shortened: why it failed.
    pub fn why(&self) -> String {
        let line = self
            .stderr
            .lines()
            .chain(self.stdout.lines())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no output");
        let mut s: String = line.chars().take(160).collect();
        if s.len() < line.len() {
            s.push('…');
        }
        match self.status {
            Some(c) => format!("exit {c}: {s}"),
            None => format!("stopped: {s}"),
        }
    }
}

/// Runs a read-only command. `None`: the program is not installed.
pub trait Runner: Send + Sync {
    fn run(&self, program: &str, args: &[&str]) -> Option<CmdOut>;
}

/// The system's commands, looked up on `PATH` and in the sbin directories (where `sshd`,
/// `nft` and `iptables-save` live), each stopped after a few seconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

const COMMAND_LIMIT: Duration = Duration::from_secs(5);

impl SystemRunner {
    /// The program's file: the first `PATH` directory or sbin directory holding it. Found
    /// here rather than by `exec`, so a `PATH` entry this user may not enter does not turn
    /// a missing tool into "permission denied".
    fn locate(program: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    }
}

impl Runner for SystemRunner {
    fn run(&self, program: &str, args: &[&str]) -> Option<CmdOut> {
        let path = Self::locate(program)?;
        let spawned = Command::new(&path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_ALL", "C")
            .spawn();
        Some(match spawned {
            Ok(child) => wait(child),
            Err(e) => CmdOut {
                status: None,
                stdout: String::new(),
                stderr: e.to_string(),
            },
        })
    }
}

fn wait(mut child: std::process::Child) -> CmdOut {
    // Read both pipes on threads so a chatty command cannot block on a full pipe.
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.by_ref().take(4 << 20).read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s.code(),
            Ok(None) if start.elapsed() < COMMAND_LIMIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    CmdOut {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Where the host checks look.
pub struct HostEnv<'a> {
    /// The file system root (`/`; a fixture directory in tests).
    pub root: PathBuf,
    pub runner: &'a dyn Runner,
    /// This process's effective user id.
    pub euid: u32,
    /// The port Stockade listens on (the only one the firewall should let in, with 22).
    pub listen_port: u16,
    /// The data directory, as a path on the host.
    pub data_dir: PathBuf,
    /// The master key file (`None`: the key comes from an environment variable).
    pub key_file: Option<PathBuf>,
}

impl std::fmt::Debug for HostEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostEnv")
            .field("root", &self.root)
            .field("listen_port", &self.listen_port)
            .finish_non_exhaustive()
    }
}

impl HostEnv<'_> {
    /// A host path under the root.
    pub fn path(&self, p: &Path) -> PathBuf {
        match p.strip_prefix("/") {
            Ok(rel) => self.root.join(rel),
            Err(_) => self.root.join(p),
        }
    }
    pub fn read(&self, p: &str) -> Option<String> {
        std::fs::read_to_string(self.path(Path::new(p))).ok()
    }
    pub fn exists(&self, p: &str) -> bool {
        self.path(Path::new(p)).exists()
    }
}

/// The effective user id of this process.
pub fn current_euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// How one fact came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Holds,
    Broken,
    /// Not seen: cannot check here.
    Unseen,
    /// Shown for the reader; decides nothing.
    Info,
}

/// One evidence line and how it counts.
#[derive(Debug, Clone)]
pub(crate) struct Fact {
    pub state: State,
    pub evidence: Evidence,
}

pub(crate) fn fact(state: State, key: &'static str, args: Vec<Arg>) -> Fact {
    Fact {
        state,
        evidence: Evidence::new(key, args),
    }
}

pub(crate) fn text(s: impl Into<String>) -> Arg {
    Arg::Text(s.into())
}

/// A fact not seen because a tool is missing.
pub(crate) fn missing(what: &str, tool: &str) -> Fact {
    fact(State::Unseen, "host_missing", vec![text(what), text(tool)])
}

/// A fact not seen because the tool refused (not root, no socket access).
pub(crate) fn refused(what: &str, tool: &str, out: &CmdOut) -> Fact {
    fact(
        State::Unseen,
        "host_refused",
        vec![text(what), text(tool), text(out.why())],
    )
}

/// Fail if a fact is broken; pass if every deciding fact holds (and there is one);
/// otherwise cannot check.
pub(crate) fn verdict(facts: &[Fact]) -> Verdict {
    if facts.iter().any(|f| f.state == State::Broken) {
        Verdict::Fail
    } else if facts.iter().any(|f| f.state == State::Unseen)
        || !facts.iter().any(|f| f.state == State::Holds)
    {
        Verdict::CannotCheck
    } else {
        Verdict::Pass
    }
}

fn to_check(id: &'static str, policy: &'static str, facts: Vec<Fact>) -> Check {
    Check {
        id,
        policy,
        verdict: verdict(&facts),
        evidence: facts.into_iter().map(|f| f.evidence).collect(),
    }
}

/// Every host check, in the report's order.
pub fn checks(env: &HostEnv<'_>) -> Vec<Check> {
    vec![
        to_check("host_ssh", "000 §2, 001 §2", ssh::facts(env)),
        to_check("host_firewall", "001 §2, 002 §III", firewall::facts(env)),
        to_check("host_fail2ban", "001 §2", services::fail2ban(env)),
        to_check("host_updates", "002 §III", services::updates(env)),
        to_check("host_files", "002 §I", files::permissions(env)),
        to_check("host_user", "000 §2, 001 §4", files::service_user(env)),
    ]
}
