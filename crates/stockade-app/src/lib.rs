//! The composition root: one place that builds a running Stockade process from its
//! [`Settings`] and stops it.
//!
//! [`App::build`] opens the vault (or takes one already open), then builds the egress
//! gateway, access, the sync engine, the alert pipeline and the HTTPS server, in that
//! order, binds the server (so [`App::addr`] is known, also with port 0), then starts
//! the workflow engine (`[workflows] workers`) with its triggers (schedules, events).
//! Nothing is written before the settings and the vault have been accepted.
//!
//! [`App::run_until_stopped`] waits for its shutdown future, then drains in order:
//! the server stops accepting and finishes the requests in flight (webhooks are answered
//! only once their orders are committed, so sync keeps running meanwhile) → the workflow
//! triggers (scheduler, event subscriber) stop → the workflow engine stops claiming and gives its runs [`WORKFLOW_GRACE`] (a run still going is
//! abandoned and resumes from its journal in the next process) → sync stops
//! (work not committed is answered 503; the marketplaces deliver it again) → the alert
//! pipeline stops (unrouted events stay in the database) → the last egress log rows are
//! written → the audit head mark is moved to the chain's head. All of it within
//! [`STOP_BOUND`]: the server's 10 s grace (and 1 s to stop its task) plus 5 s for the
//! rest. A throw-away rig may give the server a shorter grace
//! ([`App::run_until_stopped_within`]).
//!
//! A new engine is started in `App::build` after what it needs (usually the vault and
//! the gateway) and stopped in `run_until_stopped` before what it uses.

// backup:
mod backup_schedule;
mod channel_live;
// Clock jumps and skew against the database: one log line per change.
mod clock_watch;
pub mod compliance;
mod error;
// Scale-out: `serve --role all|api|worker`, the one-process rule on SQLite.
pub mod role;
#[cfg(feature = "sandbox")]
pub mod sandbox;
#[cfg(feature = "sandbox")]
pub mod sandbox_sims;
pub mod settings;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stockade_access::Access;
use stockade_alerts::{Alerts, AlertsConfig};
use stockade_marketplaces::HookSink;
use stockade_server::workflow_hooks::WorkflowHooks;
use stockade_server::{AppState, ServeError, ServeOptions, tls};
use stockade_store::Store;
use stockade_sync::SyncEngine;
use stockade_vault::Vault;
use stockade_workflows::engine::{Engine, EngineConfig};
use stockade_workflows::triggers::{TriggerConfig, Triggers};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use error::AppError;
pub use role::Role;
pub use settings::{Overrides, ServerSettings, Settings, WorkflowSettings};
/// The gateway types a caller of [`App::gateway`] and [`BuildOptions`] names.
pub use stockade_egress::{EgressConfig, Gateway};
/// The longest [`App::run_until_stopped`] takes once its shutdown future resolved: the
/// server's grace for requests in flight ([`SERVER_GRACE`]), 1 s to stop its task, and
/// [`TAIL_BOUND`] for the rest.
pub const STOP_BOUND: Duration = Duration::from_secs(16);
/// What sync, alerts, the egress log and the audit head mark get after the server.
pub const TAIL_BOUND: Duration = Duration::from_secs(5);
/// How long requests in flight may run on after the server stops accepting.
pub const SERVER_GRACE: Duration = Duration::from_secs(10);
/// How long workflow runs in flight may go on after the server stopped (out of
/// [`TAIL_BOUND`]); the rest are abandoned and resume in the next process.
pub const WORKFLOW_GRACE: Duration = Duration::from_secs(2);
/// How long the workflow triggers (scheduler, event subscriber) get to stop (within
/// [`TAIL_BOUND`]).
const TRIGGER_STOP: Duration = Duration::from_millis(500);

/// Start the workflow triggers; a database that refuses the event cursor leaves them off
/// (warned), the rest of the process runs.
async fn start_triggers(store: Store) -> Option<Triggers> {
    match Triggers::start(store, TriggerConfig::default()).await {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("workflow triggers are off: {e}");
            None
        }
    }
}

/// Wraps the sync engine's webhook sink (the demo rig counts the deliveries it defers).
pub type HookWrapper = Box<dyn FnOnce(SyncEngine) -> Arc<dyn HookSink> + Send>;

/// Changes to the gateway's configuration after the settings.
pub type EgressTuning = Box<dyn FnOnce(&mut EgressConfig) + Send>;

/// What a caller sets on top of the settings.
#[derive(Default)]
pub struct BuildOptions {
    /// Listen here instead of `[server] listen` (`serve --listen`, tests on port 0).
    pub listen: Option<SocketAddr>,
    /// A vault already open (a throw-away environment just bootstrapped, or one opened
    /// early to refuse a wrong environment first) instead of opening the settings' one.
    pub vault: Option<Vault>,
    /// This TLS configuration instead of the configured or development certificate.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Applied to the gateway's configuration after the settings (a rig lifts limits).
    pub tune_egress: Option<EgressTuning>,
    pub hooks: Option<HookWrapper>,
    /// What this process does (`serve --role`; see [`role`]).
    pub role: Role,
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// One running process: everything it serves and runs, and how to stop it.
pub struct App {
    scheme: &'static str,
    addr: SocketAddr,
    vault: Arc<Vault>,
    gateway: Gateway,
    access: Arc<Access>,
    sync: SyncEngine,
    alerts: AlertsHandle,
    head_path: PathBuf,
    head_task: JoinHandle<()>,
    server: JoinHandle<Result<(), ServeError>>,
    stop_server: oneshot::Sender<()>,
    /// The workflow engine (none with `[workflows] workers = 0`).
    workflows: Option<Engine>,
    /// The schedule and event triggers (with the engine).
    triggers: Option<Triggers>,
    /// Retention: the scheduled job and the signal that stops it.
    retention: (tokio::sync::watch::Sender<bool>, JoinHandle<()>),
    /// Scheduled backups (`[backup]`).
    backup: Option<backup_schedule::BackupTask>,
    /// The audit mirror (when configured).
    mirror: Option<stockade_mirror::Mirror>,
    /// The clock watch (`clock_watch`).
    clock_watch: JoinHandle<()>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Open the store of an initialised environment and its vault (the master key is checked
/// against the keyring).
pub async fn open_vault(settings: &Settings) -> Result<Vault, AppError> {
    let env = settings.require_env()?;
    let store = Store::open(&settings.database, env, &settings.store).await?;
    let master = settings.load_master_key(store.environment())?;
    Ok(Vault::open(store, master).await?)
}

impl App {
    /// Build the process the settings describe and bind its server.
    pub async fn build(settings: &Settings) -> Result<App, AppError> {
        App::build_with(settings, BuildOptions::default()).await
    }

    pub async fn build_with(settings: &Settings, options: BuildOptions) -> Result<App, AppError> {
        let role = options.role;
        let postgres = matches!(
            settings.database,
            stockade_store::DatabaseUrl::Postgres { .. }
        );
        if !postgres && role != Role::All {
            return Err(AppError::config(format!(
                "--role {} needs PostgreSQL: on SQLite one `stockade serve` does everything (--role all)",
                role.as_str()
            )));
        }
        // On PostgreSQL any number of processes share the work: each connection's own
        // work runs in the one process holding its lease (`stockade_sync::Ownership`).
        let mut sync_options = settings.sync.clone();
        if postgres && sync_options.ownership.is_none() {
            sync_options.ownership = Some(stockade_sync::Ownership::new(
                role::node_id(role),
                role.as_str(),
                role.runs_work(),
            ));
        }
        let node = sync_options.ownership.as_ref().map(|o| o.node.clone());
        let mut server = settings.server.clone();
        if let Some(listen) = options.listen {
            server.listen = listen;
        }
        let vault = match options.vault {
            Some(v) => v,
            None => open_vault(settings).await?,
        };
        let (tls, tls_facts) = match options.tls {
            Some(t) => (
                Some(t),
                compliance::TlsFacts::Served {
                    cert: None,
                    development: false,
                },
            ),
            None => server_tls(settings, &server)?,
        };
        // Incident controls (isolation, lockdown) in force before anything is served; the
        // store re-reads them every 500 ms from here on (`stockade incident` from a shell).
        vault
            .store()
            .refresh_controls()
            .await
            .map_err(|e| AppError::Start(format!("cannot read the incident controls: {e}")))?;
        // The one outbound client of this process: its request log and anomaly events go
        // to this environment's database and are pruned after [egress] log_retention.
        let mut egress = settings.egress_config(vault.environment());
        egress.node = node.clone();
        if let Some(tune) = options.tune_egress {
            tune(&mut egress);
        }
        let gateway = Gateway::new(egress, Some(vault.store().clone()))
            .map_err(|e| AppError::config(format!("[egress] configuration: {e}")))?;
        let vault = Arc::new(vault);
        let access = Arc::new(Access::new(vault.clone(), settings.access.clone()).await?);
        // Sync runs in every server process: webhooks in, pushes out, polls, reconciliation.
        let sync = SyncEngine::start(vault.clone(), gateway.clone(), sync_options)
            .await
            .map_err(|e| AppError::Start(format!("cannot start sync: {e}")))?;
        // Alerts: every event is routed to the configured channels; with none configured
        // they stay on the dashboard.
        let alerts = AlertsHandle::new(vault.clone(), gateway.clone(), role.runs_work());
        if let Err(e) = alerts.restart(settings.alerts.clone()).await {
            sync.shutdown().await;
            return Err(AppError::Start(format!("cannot start alerts: {e}")));
        }
        let hooks: Arc<dyn HookSink> = match options.hooks {
            Some(wrap) => wrap(sync.clone()),
            None => Arc::new(sync.clone()),
        };
        let workflow_hooks = Arc::new(WorkflowHooks::new(vault.clone()));
        // One registry for the process: the rooms' counters, handed down as typed handles.
        let handles = telemetry::Handles {
            sync: sync.metrics().telemetry.clone(),
            egress: gateway.telemetry(),
            alerts: alerts.telemetry.clone(),
            bans: access.ban_telemetry(),
            workflows: stockade_workflows::engine::WorkflowTelemetry::default(),
            // Audit mirror: lag and failures per sink.
            mirror: stockade_mirror::MirrorTelemetry::default(),
        };
        let metrics = telemetry::Telemetry::new(vault.store().clone(), access.clone(), &handles);
        // Compliance report: the TLS probe connects to the address the server binds.
        let compliance = Arc::new(compliance::Compliance::new(
            settings,
            access.clone(),
            tls_facts,
        ));
        let served_address = compliance.served_address();
        let state = AppState {
            access: access.clone(),
            trust_forwarded_for: server.trust_forwarded_for,
            plain_http: server.plain_http,
            hooks: Some(hooks),
            // Workflow webhooks start their executions on this process's engine once it
            // runs (else they enqueue; whichever process runs workers runs them).
            workflows: Some(workflow_hooks.clone()),
            console: settings.console,
            metrics: Some(Arc::new(metrics)),
            // The console's and the API's alert test-send: `stockade alert test`'s function.
            alert_test: Some(Arc::new(alerts.clone())),
            hook_stats: Default::default(),
            live_cache: Default::default(),
            compliance_page: Default::default(),
            channels: Some(Arc::new(channel_live::AppChannels {
                metrics: sync.metrics(),
                gateway: gateway.clone(),
                vault: vault.clone(),
            })),
            compliance: Some(compliance),
        };
        let serve_options = ServeOptions {
            listen: server.listen,
            tls,
            ban_refresh: Duration::from_secs(2),
            health_only: !role.serves_http(),
        };
        let (bound_tx, bound_rx) = oneshot::channel();
        let (stop_server, stop_rx) = oneshot::channel::<()>();
        let mut server_task = tokio::spawn(stockade_server::serve(
            state,
            serve_options,
            bound_tx,
            async move {
                let _ = stop_rx.await;
            },
        ));
        let addr = match bound_rx.await {
            Ok(addr) => addr,
            Err(_) => {
                let why = match (&mut server_task).await {
                    Ok(Err(e)) => serve_failed(e),
                    _ => AppError::Start("the server did not start".into()),
                };
                sync.shutdown().await;
                alerts.stop().await;
                return Err(why);
            }
        };
        let _ = served_address.set(addr);
        let head_path = settings.data_dir.join(stockade_vault::HEAD_FILE);
        let head_task = tokio::spawn(follow_audit_head(vault.clone(), head_path.clone()));
        // Before the scheduler and the engine: they read the clock it keeps.
        let clock_watch = clock_watch::start(vault.store().clone());
        // Workflows: the executions in the queue (manual runs, error workflows) run here.
        let workflows = (settings.workflows.workers > 0 && role.runs_work()).then(|| {
            let config = EngineConfig {
                workers: settings.workflows.workers,
                retention: Duration::from_secs(
                    u64::try_from(settings.workflows.retention_s).unwrap_or(u64::MAX),
                ),
                keep_per_workflow: settings.workflows.keep,
                lease_ms: settings.workflows.lease_s.saturating_mul(1000),
                script: settings.workflows.script,
                // Expired leases go back to the queue within a third of a lease (≤ 5 s).
                reap_every: Duration::from_secs(
                    u64::try_from(settings.workflows.lease_s / 3)
                        .unwrap_or(1)
                        .clamp(1, 5),
                ),
                // `alert.send` with `channel:` names one of the running alert config's.
                alert_channels: Some(alerts.channel_names()),
                // `marketplace.pull_orders` ingests through this process's sync engine.
                sync: Some(sync.clone()),
                telemetry: handles.workflows.clone(),
                ..EngineConfig::default()
            };
            Engine::start_services(
                vault.store().clone(),
                config,
                gateway.clone(),
                vault.clone(),
            )
        });
        if let Some(engine) = &workflows {
            workflow_hooks.run_on(engine.starter());
        }
        // Triggers: schedules and events start executions by themselves (with the engine).
        let triggers = match &workflows {
            Some(_) => start_triggers(vault.store().clone()).await,
            None => None,
        };
        // Retention: runs now and every `[retention] every`, one at a time (a loop here,
        // the lease across processes).
        let (retention_stop, retention_rx) = tokio::sync::watch::channel(false);
        let retention_task = if role.runs_work() {
            tokio::spawn(stockade_retention::schedule(
                vault.store().clone(),
                settings.retention,
                retention_rx,
            ))
        } else {
            tokio::spawn(async {})
        };
        // backup: scheduled encrypted backups.
        let backup = if role.runs_work() {
            backup_schedule::start(settings, vault.store())
        } else {
            None
        };
        // Audit mirror: copies the audit chain to NocoDB and/or a JSON-lines file in the
        // background when `[audit.mirror.*]` is configured (it never slows a commit).
        let mirror = (settings.audit_mirror.is_configured() && role.runs_work()).then(|| {
            let deps = stockade_mirror::MirrorDeps {
                store: vault.store().clone(),
                vault: vault.clone(),
                gateway: gateway.clone(),
                telemetry: handles.mirror.clone(),
            };
            stockade_mirror::Mirror::start(deps, &settings.audit_mirror)
        });
        Ok(App {
            scheme: if server.plain_http { "http" } else { "https" },
            addr,
            vault,
            gateway,
            access,
            sync,
            alerts,
            head_path,
            head_task,
            server: server_task,
            stop_server,
            workflows,
            triggers,
            retention: (retention_stop, retention_task),
            backup,
            mirror,
            clock_watch,
        })
    }

    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://ADDR` (or `http://` behind a local reverse proxy).
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    pub fn store(&self) -> &Store {
        self.vault.store()
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    pub fn sync(&self) -> &SyncEngine {
        &self.sync
    }

    /// The alert pipeline, for a reload that changes its channels.
    pub fn alerts(&self) -> &AlertsHandle {
        &self.alerts
    }

    /// Run until `shutdown` resolves (or the server fails), then stop everything in
    /// order within [`STOP_BOUND`] (see the module documentation).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AppError> {
        self.run_until_stopped_within(shutdown, SERVER_GRACE + Duration::from_secs(1))
            .await
    }

    /// As [`App::run_until_stopped`], with requests in flight cut off after `grace` (at
    /// most the server's own [`SERVER_GRACE`]); the rest still gets [`TAIL_BOUND`].
    pub async fn run_until_stopped_within(
        self,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> Result<(), AppError> {
        let mut server = self.server;
        let early = tokio::select! {
            () = shutdown => None,
            r = &mut server => Some(r),
        };
        let served = match early {
            Some(r) => r,
            None => {
                tracing::info!("shutting down");
                let _ = self.stop_server.send(());
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(r) => r,
                    Err(_) => {
                        server.abort();
                        Ok(Ok(()))
                    }
                }
            }
        };
        let served = match served {
            Ok(r) => r.map_err(serve_failed),
            Err(e) => Err(AppError::Start(format!("the server task failed: {e}"))),
        };
        let deadline = tokio::time::Instant::now() + TAIL_BOUND;
        if let Some(backup) = self.backup {
            backup.stop(Duration::from_secs(2)).await;
        }
        if let Some(triggers) = self.triggers {
            // A trigger pass commits all or nothing: one cut short is repeated next start.
            triggers.stop(TRIGGER_STOP).await;
        }
        if let Some(engine) = self.workflows {
            // Runs still going after the grace are abandoned: their leases expire and the
            // next process resumes them from the journal.
            engine.stop(WORKFLOW_GRACE).await;
        }
        self.sync.shutdown().await;
        if let Some(mirror) = self.mirror {
            // Rows not copied yet are copied by the next process (the outbox is the chain).
            mirror.stop(Duration::from_secs(1)).await;
        }
        if tokio::time::timeout_at(deadline, self.alerts.stop())
            .await
            .is_err()
        {
            tracing::warn!("the alert pipeline did not stop in time");
        }
        self.head_task.abort();
        self.clock_watch.abort();
        // Retention stops between runs; a run cut short is taken up by the next one.
        let (retention_stop, mut retention_task) = self.retention;
        let _ = retention_stop.send(true);
        if tokio::time::timeout_at(deadline, &mut retention_task)
            .await
            .is_err()
        {
            retention_task.abort();
        }
        match tokio::time::timeout_at(deadline, self.gateway.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("the last egress log rows could not be written: {e}"),
            Err(_) => tracing::warn!("the last egress log rows were not written in time"),
        }
        let head = self.vault.record_audit_head(&self.head_path);
        if let Ok(Err(e)) = tokio::time::timeout_at(deadline, head).await {
            tracing::warn!("could not record the audit head mark: {e}");
        }
        drop((self.access, self.sync, self.alerts, self.gateway));
        // Close the database when nothing else holds it (tests run many apps per process).
        if let Ok(v) = Arc::try_unwrap(self.vault) {
            let _ = tokio::time::timeout_at(deadline, v.close()).await;
        }
        served
    }
}

/// A plain-HTTP address that is not loopback is a refused setting; the rest are runtime.
fn serve_failed(e: ServeError) -> AppError {
    match e {
        ServeError::PlainHttpNotLoopback(_) => AppError::config(e.to_string()),
        _ => AppError::Start(e.to_string()),
    }
}

/// The server's TLS configuration: none behind a local reverse proxy, the configured
/// certificate, or a development certificate in DATA_DIR/tls (generated once).
fn server_tls(
    settings: &Settings,
    server: &ServerSettings,
) -> Result<(Option<Arc<rustls::ServerConfig>>, compliance::TlsFacts), AppError> {
    if server.plain_http {
        tracing::warn!(
            "serving plain HTTP on {} for a reverse proxy on this host; the proxy must terminate TLS 1.2+",
            server.listen
        );
        return Ok((None, compliance::TlsFacts::PlainHttp));
    }
    let (cert, key, development) = match (&server.tls_cert, &server.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), false),
        _ => {
            let dir = settings.data_dir.join("tls");
            let dev = tls::development_cert(&dir, Some(server.listen.ip()))
                .map_err(|e| AppError::Start(e.to_string()))?;
            if dev.generated {
                tracing::warn!(
                    "no TLS certificate configured: generated a development certificate authority {} and server certificate {} (valid for a year); clients must trust the CA. Configure [server] tls_cert and tls_key for production",
                    dev.ca.display(),
                    dev.cert.display()
                );
            } else {
                tracing::warn!(
                    "no TLS certificate configured: using the development certificate {} (CA {})",
                    dev.cert.display(),
                    dev.ca.display()
                );
            }
            (dev.cert, dev.key, true)
        }
    };
    let config = tls::server_config(&cert, &key).map_err(|e| AppError::config(e.to_string()))?;
    // The served certificate (the first of the chain), for the compliance report's dates.
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(&cert)
        .ok()
        .map(|c| c.as_ref().to_vec());
    let facts = compliance::TlsFacts::Served {
        cert: der,
        development,
    };
    Ok((Some(config), facts))
}

/// The audit head mark follows the chain off the commit path: at most once a second, and
/// only when the head moved (one indexed read, one small fsynced file).
async fn follow_audit_head(vault: Arc<Vault>, path: PathBuf) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(e) = vault.record_audit_head(&path).await {
            tracing::warn!("could not record the audit head mark: {e}");
        }
    }
}

/// The running alert pipeline, restartable with new channels (a reload) and stopped once
/// at shutdown; after that a restart is refused.
#[derive(Clone)]
pub struct AlertsHandle {
    vault: Arc<Vault>,
    gateway: Gateway,
    running: Arc<tokio::sync::Mutex<(Option<Alerts>, bool)>>,
    /// The running config's channel names (what `alert.send`'s `channel` may name).
    names: Arc<std::sync::RwLock<Vec<String>>>,
    /// Alert counters, kept across restarts.
    telemetry: stockade_alerts::AlertTelemetry,
    /// The running config (for the console's test-send).
    config: Arc<std::sync::RwLock<AlertsConfig>>,
    /// Whether this process routes and sends alerts (not `serve --role api`, which only
    /// keeps the config for the console's test-send).
    runs: bool,
}

impl std::fmt::Debug for AlertsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertsHandle").finish_non_exhaustive()
    }
}

impl AlertsHandle {
    fn new(vault: Arc<Vault>, gateway: Gateway, runs: bool) -> AlertsHandle {
        AlertsHandle {
            vault,
            gateway,
            running: Arc::new(tokio::sync::Mutex::new((None, false))),
            names: Arc::new(std::sync::RwLock::new(Vec::new())),
            telemetry: stockade_alerts::AlertTelemetry::default(),
            config: Arc::new(std::sync::RwLock::new(AlertsConfig::default())),
            runs,
        }
    }

    /// The channel names of the running config, read at each call (a restart counts).
    pub fn channel_names(&self) -> stockade_workflows::exec::AlertChannels {
        let names = self.names.clone();
        stockade_workflows::exec::AlertChannels(Arc::new(move || {
            names.read().map(|n| n.clone()).unwrap_or_default()
        }))
    }

    /// Stop the pipeline and start it again with `config`. On an error none runs.
    pub async fn restart(&self, config: AlertsConfig) -> Result<(), AppError> {
        let mut running = self.running.lock().await;
        if running.1 {
            return Err(AppError::Start("the process is stopping".into()));
        }
        if let Some(old) = running.0.take() {
            old.shutdown().await;
        }
        let names: Vec<String> = config.channels.iter().map(|c| c.name.clone()).collect();
        let kept = config.clone();
        if !self.runs {
            if let Ok(mut n) = self.names.write() {
                *n = names;
            }
            if let Ok(mut c) = self.config.write() {
                *c = kept;
            }
            return Ok(());
        }
        let alerts = Alerts::start_with(
            self.vault.store().clone(),
            self.vault.clone(),
            &self.gateway,
            config,
            self.telemetry.clone(),
        )
        .await
        .map_err(|e| AppError::Start(e.to_string()))?;
        running.0 = Some(alerts);
        if let Ok(mut n) = self.names.write() {
            *n = names;
        }
        if let Ok(mut c) = self.config.write() {
            *c = kept;
        }
        Ok(())
    }

    async fn stop(&self) {
        let mut running = self.running.lock().await;
        running.1 = true;
        if let Some(a) = running.0.take() {
            a.shutdown().await;
        }
    }
}

/// The console's and the API's test-send: `stockade_alerts::test_channel` with the running
/// config's channel, this process's vault and egress gateway (what `stockade alert test`
/// does), audited `alert.test` as the caller.
impl stockade_server::AlertTester for AlertsHandle {
    fn channels(&self) -> Vec<(String, String)> {
        self.config
            .read()
            .map(|c| {
                c.channels
                    .iter()
                    .map(|ch| (ch.name.clone(), ch.kind.as_str().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn test<'a>(
        &'a self,
        channel: &'a str,
        actor: stockade_core::Actor,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<stockade_server::AlertTestOutcome, String>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(async move {
            let (cfg, dashboard, language) = {
                let c = self.config.read().map_err(|_| "unavailable".to_owned())?;
                let cfg = c
                    .channel(channel)
                    .cloned()
                    .ok_or_else(|| "unknown".to_owned())?;
                (cfg, c.dashboard_url.clone(), c.language)
            };
            let outcome = match stockade_alerts::test_channel(
                self.vault.store(),
                &self.vault,
                &self.gateway,
                &cfg,
                dashboard,
                language,
                &actor,
            )
            .await
            {
                Ok(o) => o,
                Err(stockade_alerts::AlertsError::Config(detail)) => {
                    stockade_alerts::Outcome::Config { detail }
                }
                Err(e) => {
                    tracing::warn!("alert test of {channel} failed: {e}");
                    stockade_alerts::Outcome::Transient {
                        detail: "the test could not be recorded; see the server log".into(),
                    }
                }
            };
            Ok(stockade_server::AlertTestOutcome {
                status: outcome.status().to_owned(),
                detail: outcome.detail().to_owned(),
            })
        })
    }
}
