//! Settings without a restart: the checks `stockade serve` and `stockade config` share,
//! and the reload of a running server (SIGHUP, or `stockade config reload`).
//!
//! - `stockade serve` writes its process id to `DATA_DIR/serve.pid` and reloads
//!   stockade.toml on SIGHUP. The new settings pass the same checks as at start; then the
//!   egress gateway takes on its new allowlist, trust roots and timeouts, and the alert
//!   pipeline restarts with its new channels (nothing queued is lost). A refusal changes
//!   nothing: the settings in force stay. Settings that cannot change live (listen
//!   address, TLS, database, master key, access, sync intervals, log retention) are
//!   reported as needing a restart.
//! - Each reload's answer is written to `DATA_DIR/serve.reload` and logged.
//!   `stockade config reload` signals the process named in the pid file and prints it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stockade_alerts::AlertsConfig;
use stockade_app::AlertsHandle;
use stockade_core::Environment;
use stockade_core::time::{format_rfc3339_ms, now_ms};
use stockade_egress::{EgressConfig, Gateway};
use stockade_server::tls;

use crate::cli::GlobalArgs;
use crate::exit::Failure;
use crate::settings::{ServerSettings, Settings};

/// The running server's process id, in the data directory.
pub const PID_FILE: &str = "serve.pid";
/// The answer to the last reload, in the data directory.
pub const STATUS_FILE: &str = "serve.reload";

/// The listen address (with `--listen`) and the plain-HTTP rule, checked before anything
/// is opened.
pub fn check_listen(settings: &Settings, listen: Option<&str>) -> Result<ServerSettings, Failure> {
    let mut server = settings.server.clone();
    if let Some(listen) = listen {
        server.listen = listen.parse().map_err(|_| {
            Failure::usage(format!(
                "--listen {listen:?} is not an address like 127.0.0.1:8443"
            ))
        })?;
    }
    if server.plain_http && !server.listen.ip().is_loopback() {
        return Err(Failure::usage(format!(
            "plain HTTP is allowed only on a loopback address (for a reverse proxy on the same host), not on {}; listen on 127.0.0.1 or remove server.plain_http",
            server.listen
        )));
    }
    Ok(server)
}

/// Everything `stockade serve` refuses in its settings, without opening the database:
/// the environment, the listen address, a prod server without a certificate (unless
/// self-signed), an unreadable certificate, the egress settings and the alert channels.
/// `stockade config` and every reload run the same checks.
pub fn check_serve(
    settings: &Settings,
    listen: Option<&str>,
    self_signed_flag: bool,
) -> Result<(Environment, ServerSettings), Failure> {
    let env = settings.require_env()?;
    let server = check_listen(settings, listen)?;
    let configured = server.tls_cert.is_some() && server.tls_key.is_some();
    let self_signed = self_signed_flag || server.self_signed;
    if !server.plain_http && !configured && env == Environment::Prod && !self_signed {
        return Err(Failure::usage(
            "no TLS certificate configured for prod: set [server] tls_cert and tls_key in stockade.toml, or pass --self-signed (or set [server] self_signed = true) to serve a generated certificate that clients must be told to trust",
        ));
    }
    if let (false, Some(cert), Some(key)) = (server.plain_http, &server.tls_cert, &server.tls_key) {
        tls::server_config(cert, key).map_err(|e| Failure::usage(e.to_string()))?;
    }
    Gateway::new(settings.egress_config(env), None)
        .map_err(|e| Failure::usage(format!("[egress] configuration: {e}")))?;
    settings.alerts.validate().map_err(Failure::usage)?;
    Ok((env, server))
}

/// Whether a setting (a `stockade config` key) changes in a running server.
fn is_live(key: &str) -> bool {
    (key.starts_with("egress.") && key != "egress.log_retention") || key.starts_with("alerts.")
}

/// The sections that need a restart, each as (name, key prefix, its settings in full).
fn restart_sections(s: &Settings) -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("[server]", "server.", format!("{:?}", s.server)),
        ("[access] / [ban]", "access.", format!("{:?}", s.access)),
        ("[sync]", "sync.", format!("{:?}", s.sync)),
        ("[workflows]", "workflows.", format!("{:?}", s.workflows)),
        ("[sqlite] / [postgres]", "sqlite.", format!("{:?}", s.store)),
        // Retention: the schedule takes its rules at start.
        ("[retention]", "retention.", format!("{:?}", s.retention)),
        // Audit mirror: its sinks start with the server.
        (
            "[audit.mirror]",
            "audit.mirror.",
            format!("{:?}", s.audit_mirror),
        ),
    ]
}

/// What a reload did.
#[derive(Debug, Default)]
struct Applied {
    changed: Vec<String>,
    restart: Vec<String>,
}

/// The running server's reloadable parts. Owned by the task that listens for SIGHUP.
pub struct Reloader {
    global: GlobalArgs,
    listen: Option<String>,
    self_signed: bool,
    env: Environment,
    data_dir: PathBuf,
    /// The settings shown at start: what a restart-only change is compared with.
    started: Vec<(&'static str, String, &'static str)>,
    /// The settings in force.
    running: Vec<(&'static str, String, &'static str)>,
    /// The restart-only sections as started, compared whole (not every setting in them
    /// is shown by `stockade config`).
    sections: Vec<(&'static str, &'static str, String)>,
    egress: EgressConfig,
    alerts_config: AlertsConfig,
    gateway: Gateway,
    alerts: AlertsHandle,
    generation: u64,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

pub struct ReloaderParts {
    pub global: GlobalArgs,
    pub listen: Option<String>,
    pub self_signed: bool,
    pub env: Environment,
    pub gateway: Gateway,
    pub alerts: AlertsHandle,
}

impl Reloader {
    pub fn new(settings: &Settings, p: ReloaderParts) -> Reloader {
        Reloader {
            global: p.global,
            listen: p.listen,
            self_signed: p.self_signed,
            env: p.env,
            data_dir: settings.data_dir.clone(),
            started: settings.provenance.clone(),
            running: settings.provenance.clone(),
            sections: restart_sections(settings),
            egress: settings.egress_config(p.env),
            alerts_config: settings.alerts.clone(),
            gateway: p.gateway,
            alerts: p.alerts,
            generation: 0,
        }
    }

    /// Reload stockade.toml; log and record the answer. Never leaves a half-applied state.
    pub async fn reload(&mut self, trigger: &str) {
        self.generation += 1;
        let outcome = self.try_reload().await;
        let mut text = format!(
            "generation {}\nat {}\ntrigger {trigger}\n",
            self.generation,
            format_rfc3339_ms(now_ms())
        );
        match &outcome {
            Ok(a) => {
                text.push_str("result applied\n");
                for c in &a.changed {
                    text.push_str(&format!("changed {c}\n"));
                }
                for r in &a.restart {
                    text.push_str(&format!("restart {r}\n"));
                }
                tracing::info!(
                    "configuration reloaded ({trigger}): {}",
                    if a.changed.is_empty() {
                        "no live setting changed".to_owned()
                    } else {
                        a.changed.join("; ")
                    }
                );
                for r in &a.restart {
                    tracing::warn!("configuration reload: {r} needs a restart to take effect");
                }
            }
            Err(why) => {
                text.push_str(&format!("result refused\nreason {why}\n"));
                tracing::error!(
                    "configuration reload refused ({trigger}): {why}; the settings in force stay unchanged"
                );
            }
        }
        if let Err(e) = write_atomic(&self.data_dir.join(STATUS_FILE), &text) {
            tracing::warn!("could not record the reload answer: {e}");
        }
    }

    async fn try_reload(&mut self) -> Result<Applied, String> {
        let new = Settings::resolve(&self.global.overrides()).map_err(|e| e.to_string())?;
        check_serve(&new, self.listen.as_deref(), self.self_signed).map_err(|f| f.message)?;
        let value = |list: &[(&'static str, String, &'static str)], key: &str| {
            list.iter()
                .find(|(k, _, _)| *k == key)
                .map(|(_, v, _)| v.clone())
                .unwrap_or_default()
        };
        let mut applied = Applied::default();
        for (key, v, _) in &new.provenance {
            let was = value(&self.started, key);
            if is_live(key) {
                if value(&self.running, key) != *v {
                    applied.changed.push(format!("{key} = {v}"));
                }
            } else if was != *v {
                applied
                    .restart
                    .push(format!("{key} (running: {was}; file: {v})"));
            }
        }
        for ((section, prefix, was), (_, _, now)) in
            self.sections.iter().zip(restart_sections(&new))
        {
            if *was != now && !applied.restart.iter().any(|r| r.starts_with(prefix)) {
                applied.restart.push(format!(
                    "{section} (a setting changed; `stockade config` shows the file's values)"
                ));
            }
        }
        let egress = new.egress_config(self.env);
        self.gateway
            .reconfigure(&egress)
            .map_err(|e| format!("[egress] configuration: {e}"))?;
        let alerts_changed = format!("{:?}", new.alerts) != format!("{:?}", self.alerts_config);
        if alerts_changed {
            if let Err(e) = self.restart_alerts(new.alerts.clone()).await {
                // Put the old settings back: nothing half-applied.
                let _ = self.gateway.reconfigure(&self.egress);
                let old = self.alerts_config.clone();
                if let Err(e2) = self.restart_alerts(old).await {
                    tracing::error!("the alert pipeline could not be restarted: {e2}");
                }
                return Err(format!("cannot start the alert channels: {e}"));
            }
            if !applied.changed.iter().any(|c| c.starts_with("alerts.")) {
                applied
                    .changed
                    .push("alerts: channel settings changed".into());
            }
        }
        self.egress = egress;
        self.alerts_config = new.alerts.clone();
        // The live settings are now the file's; the others stay as started.
        self.running = new
            .provenance
            .iter()
            .map(|(k, v, s)| {
                if is_live(k) {
                    (*k, v.clone(), *s)
                } else {
                    (*k, value(&self.started, k), *s)
                }
            })
            .collect();
        Ok(applied)
    }

    async fn restart_alerts(&mut self, config: AlertsConfig) -> Result<(), String> {
        self.alerts.restart(config).await.map_err(|e| e.to_string())
    }
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Record this process as the data directory's server.
pub fn write_pid_file(data_dir: &Path) {
    if let Err(e) = write_atomic(
        &data_dir.join(PID_FILE),
        &format!("{}\n", std::process::id()),
    ) {
        tracing::warn!(
            "could not write {}: {e}; `stockade config reload` will not find this server (send it SIGHUP instead)",
            PID_FILE
        );
    }
}

/// Remove the pid file if it still names this process.
pub fn remove_pid_file(data_dir: &Path) {
    let path = data_dir.join(PID_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|t| t.trim() == std::process::id().to_string()) {
        let _ = std::fs::remove_file(path);
    }
}

/// `stockade config reload`: check the file, signal the running server, print its answer.
pub async fn request(settings: &Settings, wait: u64) -> Result<(), Failure> {
    // The file must at least pass the checks that need no server flags.
    let env = settings.require_env()?;
    Gateway::new(settings.egress_config(env), None)
        .map_err(|e| Failure::usage(format!("[egress] configuration: {e}")))?;
    let pid_path = settings.data_dir.join(PID_FILE);
    let text = std::fs::read_to_string(&pid_path).map_err(|_| {
        Failure::runtime(format!(
            "no running `stockade serve` found for {}: {} is missing (start the server, or send SIGHUP to its process)",
            settings.data_dir.display(),
            pid_path.display()
        ))
    })?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| Failure::runtime(format!("{} holds no process id", pid_path.display())))?;
    // A stale file may name another program by now: signal only a stockade process.
    let cmdline =
        std::fs::read(format!("/proc/{}/cmdline", pid.as_raw_nonzero())).unwrap_or_default();
    let is_stockade = cmdline
        .split(|b| *b == 0)
        .next()
        .is_some_and(|arg0| String::from_utf8_lossy(arg0).contains("stockade"));
    if !is_stockade {
        return Err(Failure::runtime(format!(
            "the server named in {} (process {}) is not running; start `stockade serve`",
            pid_path.display(),
            pid.as_raw_nonzero()
        )));
    }
    let status_path = settings.data_dir.join(STATUS_FILE);
    let before = std::fs::read_to_string(&status_path).unwrap_or_default();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| {
        Failure::runtime(format!(
            "cannot signal the server (process {}): {e}",
            pid.as_raw_nonzero()
        ))
    })?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.max(1));
    let answer = loop {
        let now = std::fs::read_to_string(&status_path).unwrap_or_default();
        if !now.is_empty() && now != before {
            break now;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::runtime(format!(
                "the server (process {}) did not answer within {wait} s; see its log",
                pid.as_raw_nonzero()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    print_answer(&answer)
}

fn print_answer(answer: &str) -> Result<(), Failure> {
    let mut refused = None;
    let mut changed = Vec::new();
    let mut restart = Vec::new();
    for line in answer.lines() {
        if let Some(r) = line.strip_prefix("reason ") {
            refused = Some(r.to_owned());
        } else if let Some(c) = line.strip_prefix("changed ") {
            changed.push(c);
        } else if let Some(r) = line.strip_prefix("restart ") {
            restart.push(r);
        }
    }
    if let Some(why) = refused {
        return Err(Failure::usage(format!(
            "reload refused: {why}; the server keeps the settings in force"
        )));
    }
    if changed.is_empty() {
        println!("reloaded: no live setting changed");
    } else {
        println!("reloaded:");
        for c in changed {
            println!("  {c}");
        }
    }
    for r in restart {
        println!("needs a restart: {r}");
    }
    Ok(())
}
