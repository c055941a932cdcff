//! `bench sync --sandbox-process`: the marketplace simulators as a child process
//! (`stockade sandbox`, this same binary), started, optionally pinned, waited for, read
//! back over HTTPS on loopback (`/_sandbox/…`), and stopped on every path: explicitly at
//! the end, killed when dropped (an error, a panic), and on its own when this process
//! ends any other way (its standard input closes; Ctrl-C reaches both).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use stockade_app::sandbox::Simulators;
use stockade_core::Environment;
use stockade_core::order::Marketplace;
use stockade_egress::{Caller, Egress, EgressConfig, Gateway, Request};
use stockade_sandbox::{DeliveryStats, ListingState, OrderSummary, QtyChange};

use crate::exit::Failure;

/// How to start the child.
#[derive(Debug, Clone)]
pub struct ChildOptions {
    pub seed: u64,
    pub skus: usize,
    /// Keep the marketplaces' rate limits (deliveries are lifted either way).
    pub realistic_limits: bool,
    /// Where the server will answer: `https://127.0.0.1:PORT/hooks`.
    pub hook_base: String,
    /// The CA (PEM) the server's certificate is signed by.
    pub receiver_ca_pem: String,
    /// Pin the child to these CPUs.
    pub cpus: Option<Vec<usize>>,
}

/// The child process and its files: killed and removed when dropped.
struct Guard {
    child: std::sync::Mutex<Option<tokio::process::Child>>,
    pid: u32,
    dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let child = self.child.get_mut().ok().and_then(Option::take);
        if let Some(mut child) = child {
            // Not stopped by `stop`: kill it now (kill_on_drop would too, a moment later).
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The running child.
pub struct ChildSandbox {
    guard: Guard,
    pub sims: Simulators,
    http: Egress,
}

impl std::fmt::Debug for ChildSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSandbox")
            .field("pid", &self.guard.pid)
            .finish_non_exhaustive()
    }
}

/// The last lines of the child's log, for an error message.
fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("sandbox.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    if tail.is_empty() {
        "no output".to_owned()
    } else {
        tail
    }
}

impl ChildSandbox {
    /// Start `stockade sandbox` with its files in `dir` (created by the caller; removed
    /// when this is dropped) and wait until it is ready (at most 60 s).
    pub async fn start(opts: &ChildOptions, dir: &Path) -> Result<ChildSandbox, Failure> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |e: std::io::Error| Failure::runtime(format!("{what}: {e}"))
        };
        let exe = std::env::current_exe().map_err(io("cannot find this program's path"))?;
        let receiver_ca = dir.join("receiver-ca.pem");
        std::fs::write(&receiver_ca, &opts.receiver_ca_pem)
            .map_err(io("cannot write the server's test CA"))?;
        let ready = dir.join("ready.json");
        let log = std::fs::File::create(dir.join("sandbox.log"))
            .map_err(io("cannot create the simulators' log file"))?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("sandbox")
            .args(["--seed", &opts.seed.to_string()])
            .args(["--skus", &opts.skus.to_string()])
            .args(["--quantity", "0"])
            .arg("--ca-file")
            .arg(dir.join("sandbox-ca.pem"))
            .arg("--ready-file")
            .arg(&ready)
            .arg("--webhook-ca")
            .arg(&receiver_ca)
            // eBay's webhook is set once the server answers (its validation challenge).
            .args([
                "--webhook",
                &format!("tiktok={}/tiktok/tiktok", opts.hook_base),
            ])
            .args([
                "--webhook",
                &format!("amazon={}/amazon/amazon", opts.hook_base),
            ])
            .arg(if opts.realistic_limits {
                "--lift-delivery-limits"
            } else {
                "--lift-limits"
            })
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(io(
            "cannot start the simulators' process (stockade sandbox)",
        ))?;
        let pid = child.id().unwrap_or(0);
        let guard = Guard {
            child: std::sync::Mutex::new(Some(child)),
            pid,
            dir: dir.to_path_buf(),
        };
        if let Some(cpus) = &opts.cpus {
            super::bench_pin::pin_pid(pid, cpus)?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let sims = loop {
            if let Some((sims, _)) = super::sandbox_ready::read(&ready)? {
                break sims;
            }
            let ended = guard
                .child
                .lock()
                .ok()
                .and_then(|mut c| c.as_mut().and_then(|c| c.try_wait().ok().flatten()));
            if let Some(status) = ended {
                return Err(Failure::runtime(format!(
                    "the simulators' process ended before it was ready ({status}): {}",
                    log_tail(dir)
                )));
            }
            if Instant::now() > deadline {
                return Err(Failure::runtime(format!(
                    "the simulators' process was not ready within 60 s: {}",
                    log_tail(dir)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Threads the child started meanwhile are pinned too.
        if let Some(cpus) = &opts.cpus {
            super::bench_pin::pin_pid(pid, cpus)?;
        }
        let http = client(&sims)?;
        Ok(ChildSandbox { guard, sims, http })
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid
    }

    fn base(&self, m: Marketplace) -> Result<&str, Failure> {
        self.sims
            .endpoint(m)
            .map(|e| e.base_url.as_str())
            .ok_or_else(|| Failure::runtime(format!("the simulators' process has no {m}")))
    }

    async fn send(&self, req: Request) -> Result<Vec<u8>, Failure> {
        let r = self.http.send(req).await.map_err(|e| {
            Failure::runtime(format!("the simulators' process did not answer: {e}"))
        })?;
        if !r.is_success() {
            return Err(Failure::runtime(format!(
                "the simulators' process answered {}",
                r.status
            )));
        }
        Ok(r.body)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        m: Marketplace,
        path: &'static str,
    ) -> Result<T, Failure> {
        let url = format!("{}{path}", self.base(m)?);
        let body = self.send(Request::get(url, path, "sandboxRead")).await?;
        serde_json::from_slice(&body).map_err(|e| {
            Failure::runtime(format!(
                "the simulators' process answered {path} with unexpected JSON: {e}"
            ))
        })
    }

    /// Every order placed on `m` (no buyer data).
    pub async fn orders(&self, m: Marketplace) -> Result<Vec<OrderSummary>, Failure> {
        self.get(m, "/_sandbox/orders").await
    }

    /// Orders of `m` whose announcing delivery the server answered 2xx.
    pub async fn acknowledged(&self, m: Marketplace) -> Result<HashSet<String>, Failure> {
        #[derive(serde::Deserialize)]
        struct Acked {
            order_ids: Vec<String>,
        }
        let a: Acked = self.get(m, "/_sandbox/acknowledged").await?;
        Ok(a.order_ids.into_iter().collect())
    }

    /// Every change of `m`'s listings' displayed quantity, and how many were not kept.
    pub async fn quantity_history(&self, m: Marketplace) -> Result<(Vec<QtyChange>, u64), Failure> {
        #[derive(serde::Deserialize)]
        struct History {
            changes: Vec<QtyChange>,
            dropped: u64,
        }
        let h: History = self.get(m, "/_sandbox/quantity-history").await?;
        Ok((h.changes, h.dropped))
    }

    pub async fn listings(&self, m: Marketplace) -> Result<Vec<ListingState>, Failure> {
        self.get(m, "/_sandbox/listings").await
    }

    /// The delivery counters (all marketplaces share one outbox).
    pub async fn delivery_stats(&self) -> Result<DeliveryStats, Failure> {
        self.get(Marketplace::TikTok, "/_sandbox/delivery-stats")
            .await
    }

    /// Wait until every event queued so far has been delivered or given up on (at most
    /// `budget`).
    pub async fn flush(&self, budget: Duration) -> Result<(), Failure> {
        let deadline = Instant::now() + budget;
        let target = self.delivery_stats().await?.queued;
        loop {
            let s = self.delivery_stats().await?;
            if s.delivered + s.failed >= target || Instant::now() > deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Buyers place `n` orders on `m`; returns how many were placed.
    pub async fn place_orders(&self, m: Marketplace, n: usize) -> Result<u64, Failure> {
        #[derive(serde::Deserialize)]
        struct Placed {
            order_ids: Vec<serde::de::IgnoredAny>,
        }
        let url = format!("{}/_sandbox/orders", self.base(m)?);
        let req = Request::post(url, "/_sandbox/orders", "sandboxPlaceOrders")
            .json(&serde_json::json!({ "count": n }));
        let body = self.send(req).await?;
        let p: Placed = serde_json::from_slice(&body)
            .map_err(|e| Failure::runtime(format!("placing orders: unexpected JSON: {e}")))?;
        Ok(p.order_ids.len() as u64)
    }

    /// Where `m` delivers its events (eBay sends its validation challenge first).
    pub async fn set_webhook(&self, m: Marketplace, url: &str) -> Result<(), Failure> {
        let req = Request::put(
            format!("{}/_sandbox/webhook", self.base(m)?),
            "/_sandbox/webhook",
            "sandboxSetWebhook",
        )
        .json(&serde_json::json!({ "url": url }));
        self.send(req).await.map(|_| ())
    }

    /// CPU seconds (user + system) the child has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        super::live::cpu_seconds_of(&self.guard.pid.to_string())
    }

    /// Stop the child (SIGTERM, then SIGKILL after 5 s), wait for it, remove its files.
    pub async fn stop(&self) {
        let child = self.guard.child.lock().ok().and_then(|mut c| c.take());
        if let Some(mut child) = child {
            let pid = i32::try_from(self.guard.pid).ok();
            if let Some(pid) = pid.and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// The HTTPS client for the child's admin routes: the egress gateway allowed to reach
/// only the three simulators, trusting their CA, large answers allowed, no pacing.
fn client(sims: &Simulators) -> Result<Egress, Failure> {
    let hosts: Vec<String> = sims.endpoints.iter().map(|e| e.addr.to_string()).collect();
    let mut config = EgressConfig::new(Environment::Dev);
    config.allowed_hosts = hosts.clone();
    config.extra_root_pems = vec![sims.ca_pem.clone()];
    config.max_attempts = 2;
    config.request_timeout = Duration::from_secs(120);
    config.max_response_bytes = 1 << 30;
    config.host_rate = (1_000_000.0, 1_000_000);
    config.breaker_failures = u32::MAX;
    let gateway = Gateway::new(config, None)
        .map_err(|e| Failure::runtime(format!("cannot build the HTTPS client: {e}")))?;
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    Ok(gateway.client(Caller::System("bench"), &hosts))
}
