//! Settings: defaults, then stockade.toml, then STOCKADE_* variables, then flags.
//!
//! The master key is never read from the config file: only a path to it is. Settings
//! are built once in `main` and passed down; there is no global configuration. The
//! command-line flags reach this module as plain [`Overrides`] (no clap here); every
//! refusal is an [`AppError::Config`] naming the setting.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use stockade_core::{Environment, SecretString};
use stockade_store::{DatabaseUrl, StoreOptions};
use stockade_vault::{MasterKeySource, MasterKeys};

use crate::AppError;

mod log;
mod sections;
// Retention (`[retention]`).
mod retention;
// backup:
mod backup;
pub use backup::BackupSettings;
// Audit mirror: [audit.mirror.nocodb], [audit.mirror.file].
mod audit_mirror;
pub use log::LogFormat;
use sections::{
    ScriptFileConfig, alerts_settings, egress_settings, script_settings, sync_settings,
};

/// What the command line (or its STOCKADE_* variables) sets above the config file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub env: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub config: Option<PathBuf>,
}

/// stockade.toml. Unknown keys are errors, so a misspelt setting is not silently ignored
/// and a `master_key = "…"` line is refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    env: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    master_key_file: Option<PathBuf>,
    #[serde(default)]
    sqlite: SqliteConfig,
    #[serde(default)]
    postgres: PostgresConfig,
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    access: AccessFileConfig,
    #[serde(default)]
    ban: BanFileConfig,
    #[serde(default)]
    egress: EgressFileConfig,
    #[serde(default)]
    sync: SyncFileConfig,
    #[serde(default)]
    alerts: AlertsFileConfig,
    #[serde(default)]
    workflows: WorkflowsFileConfig,
    #[serde(default)]
    console: ConsoleFileConfig,
    #[serde(default)]
    log: log::LogFileConfig,
    #[serde(default)]
    retention: retention::RetentionFileConfig,
    // backup:
    #[serde(default)]
    backup: backup::BackupFileConfig,
    /// Audit mirror (`[audit.mirror.*]`).
    #[serde(default)]
    audit: audit_mirror::AuditFileConfig,
}

/// `[console]`: the time zone the web console shows times in (an IANA name).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleFileConfig {
    timezone: Option<String>,
}

fn console_settings(
    f: &ConsoleFileConfig,
    provenance: &mut Vec<(&'static str, String, &'static str)>,
) -> Result<stockade_server::ConsoleSettings, AppError> {
    let mut out = stockade_server::ConsoleSettings::default();
    if let Some(tz) = &f.timezone {
        out.timezone = tz.parse().map_err(|_| {
            AppError::config(format!(
                "console.timezone {tz:?} is not an IANA time zone name (for example \"Asia/Shanghai\" or \"Asia/Singapore\")"
            ))
        })?;
    }
    let src = if f.timezone.is_some() {
        "config file"
    } else {
        "default"
    };
    provenance.push(("console.timezone", out.timezone.name().to_owned(), src));
    Ok(out)
}

/// `[workflows]`: how many executions this process runs at once, and how long finished
/// executions are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowsFileConfig {
    workers: Option<usize>,
    retention: Option<String>,
    keep: Option<i64>,
    lease: Option<String>,
    #[serde(default)]
    script: ScriptFileConfig,
}

/// The workflow engine's settings (`[workflows]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowSettings {
    /// Worker tasks running executions at once (default 2); 0 runs none in this process.
    pub workers: usize,
    /// Finished executions older than this are deleted (default 30 days).
    pub retention_s: i64,
    /// Finished executions kept per workflow at most (default 1000).
    pub keep: i64,
    /// The lease a worker takes on an execution (default 30 s): how long an execution
    /// held by a process that died waits before another worker resumes it.
    pub lease_s: i64,
    /// `script` steps' default limits and maxima (`[workflows.script]`).
    pub script: stockade_workflows::exec::ScriptSettings,
}

/// Workflow workers per process unless configured: executions spend most of their time
/// waiting (on the database's commits, on HTTP), and a worker is a task, not a thread, so
/// a few dozen cost little while letting the store commit many executions' steps
/// together.
const DEFAULT_WORKFLOW_WORKERS: usize = 16;

/// Bounds of `[workflows] lease`: heartbeats go every third of it, so at least 3 s.
const LEASE_S: std::ops::RangeInclusive<i64> = 3..=3_600;

/// At most this many workflow workers per process.
const MAX_WORKFLOW_WORKERS: usize = 64;

fn workflow_settings(
    f: &WorkflowsFileConfig,
    provenance: &mut Vec<(&'static str, String, &'static str)>,
) -> Result<WorkflowSettings, AppError> {
    let workers = f.workers.unwrap_or(DEFAULT_WORKFLOW_WORKERS);
    if workers > MAX_WORKFLOW_WORKERS {
        return Err(AppError::config(format!(
            "workflows.workers must be at most {MAX_WORKFLOW_WORKERS} (0 runs no workflows in this process)"
        )));
    }
    let src = |set: bool| if set { "config file" } else { "default" };
    provenance.push((
        "workflows.workers",
        workers.to_string(),
        src(f.workers.is_some()),
    ));
    let retention_s = match f.retention.as_deref() {
        None => 30 * 86_400,
        Some(t) => match stockade_core::time::parse_duration_secs(t) {
            Ok(Some(s)) => s,
            _ => {
                return Err(AppError::config(
                    "workflows.retention must be a duration such as 30d, 12h or 2w",
                ));
            }
        },
    };
    provenance.push((
        "workflows.retention",
        format!("{retention_s}s"),
        src(f.retention.is_some()),
    ));
    let keep = f.keep.unwrap_or(1_000);
    if !(1..=10_000_000).contains(&keep) {
        return Err(AppError::config(
            "workflows.keep must be between 1 and 10000000",
        ));
    }
    provenance.push(("workflows.keep", keep.to_string(), src(f.keep.is_some())));
    let lease_s = match f.lease.as_deref() {
        None => 30,
        Some(t) => match stockade_core::time::parse_duration_secs(t) {
            Ok(Some(s)) if LEASE_S.contains(&s) => s,
            _ => {
                return Err(AppError::config(
                    "workflows.lease must be a duration from 3s to 1h, such as 30s or 2m",
                ));
            }
        },
    };
    provenance.push((
        "workflows.lease",
        format!("{lease_s}s"),
        src(f.lease.is_some()),
    ));
    let script = script_settings(&f.script, provenance)?;
    Ok(WorkflowSettings {
        workers,
        retention_s,
        keep,
        lease_s,
        script,
    })
}

/// `[alerts]` and its `[[alerts.channel]]` tables. No secrets here: a channel's tokens
/// and signing secrets are in the credential store (`stockade alert secret set`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsFileConfig {
    window: Option<String>,
    dashboard_url: Option<String>,
    /// `en` (default) or `zh`: the language of DingTalk and Feishu/Lark messages.
    language: Option<String>,
    retry_max: Option<String>,
    #[serde(default, rename = "channel")]
    channels: Vec<ChannelFileConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelFileConfig {
    name: String,
    kind: String,
    url: Option<String>,
    keyword: Option<String>,
    min_severity: Option<String>,
    sources: Option<Vec<String>>,
    robot_code: Option<String>,
    conversation: Option<String>,
    per_second: Option<u32>,
    per_minute: Option<u32>,
    throttle_backoff: Option<String>,
}

/// Sync intervals and PII retention.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncFileConfig {
    poll_interval: Option<String>,
    poll_overlap: Option<String>,
    reconcile_interval: Option<String>,
    returns_report_interval: Option<String>,
    pii_retention: Option<String>,
    low_stock_threshold: Option<i64>,
    max_pending_deliveries: Option<i64>,
}

/// The outbound allowlist and limits of this environment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressFileConfig {
    allowed_hosts: Option<Vec<String>>,
    extra_root_certs: Option<Vec<PathBuf>>,
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
    max_attempts: Option<u32>,
    log_retention: Option<String>,
}

/// The marketplaces' documented hosts: the default allowlist of a production process.
/// Each connection is narrowed further to its own marketplace's hosts.
const PROD_HOSTS: &[&str] = &[
    "api.amazon.com",
    "sellingpartnerapi-na.amazon.com",
    "sellingpartnerapi-eu.amazon.com",
    "sellingpartnerapi-fe.amazon.com",
    "auth.tiktok-shops.com",
    "open-api.tiktokglobalshop.com",
    "api.ebay.com",
    "apiz.ebay.com",
];

/// The marketplaces' own sandbox hosts: the default allowlist of dev and staging.
/// The local simulators (`stockade sandbox`) are added by the commands that start them.
const TEST_HOSTS: &[&str] = &[
    "api.amazon.com",
    "sandbox.sellingpartnerapi-na.amazon.com",
    "sandbox.sellingpartnerapi-eu.amazon.com",
    "sandbox.sellingpartnerapi-fe.amazon.com",
    "api.sandbox.ebay.com",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerConfig {
    listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    plain_http: Option<bool>,
    trust_forwarded_for: Option<bool>,
    self_signed: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessFileConfig {
    idle_timeout: Option<String>,
    session_lifetime: Option<String>,
    password_require_mix: Option<bool>,
    argon2_memory_kib: Option<u32>,
    argon2_iterations: Option<u32>,
    account_maxretry: Option<u32>,
    account_findtime: Option<String>,
}

/// Fail2Ban's option names. `[ban]` holds the defaults of both jails (Fail2Ban's
/// `[DEFAULT]`); `[ban.interactive]` and `[ban.webhook]` override them per jail.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanFileConfig {
    ignoreip: Option<Vec<String>>,
    interactive: Option<JailFileConfig>,
    webhook: Option<JailFileConfig>,
    maxretry: Option<u32>,
    findtime: Option<String>,
    bantime: Option<String>,
    #[serde(rename = "bantime_increment")]
    increment: Option<bool>,
    #[serde(rename = "bantime_factor")]
    factor: Option<f64>,
    #[serde(rename = "bantime_multipliers")]
    multipliers: Option<Vec<i64>>,
    #[serde(rename = "bantime_maxtime")]
    maxtime: Option<String>,
    recidive_maxretry: Option<u32>,
    recidive_findtime: Option<String>,
    recidive_bantime: Option<String>,
}

impl BanFileConfig {
    /// The shared options, as a jail section.
    fn defaults(&self) -> JailFileConfig {
        JailFileConfig {
            maxretry: self.maxretry,
            findtime: self.findtime.clone(),
            bantime: self.bantime.clone(),
            increment: self.increment,
            factor: self.factor,
            multipliers: self.multipliers.clone(),
            maxtime: self.maxtime.clone(),
            recidive_maxretry: self.recidive_maxretry,
            recidive_findtime: self.recidive_findtime.clone(),
            recidive_bantime: self.recidive_bantime.clone(),
        }
    }
}

/// One jail's options (`[ban.interactive]`, `[ban.webhook]`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct JailFileConfig {
    maxretry: Option<u32>,
    findtime: Option<String>,
    bantime: Option<String>,
    #[serde(rename = "bantime_increment")]
    increment: Option<bool>,
    #[serde(rename = "bantime_factor")]
    factor: Option<f64>,
    #[serde(rename = "bantime_multipliers")]
    multipliers: Option<Vec<i64>>,
    #[serde(rename = "bantime_maxtime")]
    maxtime: Option<String>,
    recidive_maxretry: Option<u32>,
    recidive_findtime: Option<String>,
    recidive_bantime: Option<String>,
}

/// How `stockade serve` listens.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: std::net::SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub plain_http: bool,
    pub trust_forwarded_for: bool,
    /// Serve a generated certificate in prod when none is configured.
    pub self_signed: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqliteConfig {
    synchronous: Option<String>,
    readers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresConfig {
    max_connections: Option<u32>,
}

/// Where the master key comes from.
#[derive(Debug)]
pub enum MasterKeyLocation {
    File(PathBuf),
    EnvValue(SecretString),
}

/// The resolved settings of one process.
#[derive(Debug)]
pub struct Settings {
    pub env: Option<Environment>,
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    pub master_key: MasterKeyLocation,
    pub store: StoreOptions,
    pub config_file: Option<PathBuf>,
    pub server: ServerSettings,
    pub access: stockade_access::AccessConfig,
    /// Outbound requests: allowlist, extra trust roots, timeouts, log retention. The
    /// environment is filled in by [`Settings::egress_config`].
    pub egress: EgressSettings,
    /// Sync intervals and retention (`[sync]`).
    pub sync: stockade_sync::SyncOptions,
    /// Alert channels, routing and aggregation (`[alerts]`).
    pub alerts: stockade_alerts::AlertsConfig,
    /// The workflow engine (`[workflows]`).
    pub workflows: WorkflowSettings,
    /// The web console (`[console]`).
    pub console: stockade_server::ConsoleSettings,
    /// The shape of log lines (`[log] format`).
    pub log_format: LogFormat,
    /// The audit mirror (`[audit.mirror.nocodb]`, `[audit.mirror.file]`).
    pub audit_mirror: stockade_mirror::MirrorConfig,
    /// (setting, value shown, source) for `stockade config`.
    pub provenance: Vec<(&'static str, String, &'static str)>,
    /// How long each kind of data is kept (`[retention]`).
    pub retention: stockade_retention::Rules,
    /// Scheduled backups (`[backup]`); None when off.
    pub backup: Option<BackupSettings>,
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn pick<T>(
    flag_or_env: Option<T>,
    file: Option<T>,
    default: impl FnOnce() -> T,
) -> (T, &'static str) {
    match (flag_or_env, file) {
        (Some(v), _) => (v, "flag or environment"),
        (None, Some(v)) => (v, "config file"),
        (None, None) => (default(), "default"),
    }
}

impl Settings {
    pub fn resolve(args: &Overrides) -> Result<Settings, AppError> {
        let default_dir = PathBuf::from("stockade-data");
        let dir_hint = args.data_dir.clone().unwrap_or_else(|| default_dir.clone());
        let config_file = match &args.config {
            Some(p) => Some(p.clone()),
            None => Some(dir_hint.join("stockade.toml")).filter(|p| p.is_file()),
        };
        let file = match &config_file {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let mut provenance = Vec::new();

        let (env_name, src) = pick(
            args.env.clone().map(Some),
            file.env.clone().map(Some),
            || None,
        );
        let env = env_name
            .as_deref()
            .map(Environment::parse)
            .transpose()
            .map_err(|e| AppError::config(e.to_string()))?;
        provenance.push(("env", env_name.unwrap_or_else(|| "(not set)".into()), src));

        let (data_dir, src) = pick(args.data_dir.clone(), file.data_dir.clone(), || default_dir);
        provenance.push(("data_dir", data_dir.display().to_string(), src));

        let (url_text, src) = pick(
            args.database_url.clone().map(Some),
            file.database_url.clone().map(Some),
            || None,
        );
        let database = match &url_text {
            Some(text) => DatabaseUrl::parse(text).map_err(|e| AppError::config(e.to_string()))?,
            None => DatabaseUrl::Sqlite(data_dir.join("stockade.db")),
        };
        provenance.push((
            "database_url",
            database.describe(),
            if url_text.is_some() { src } else { "default" },
        ));

        let master_key = if let Some(value) = env_var("STOCKADE_MASTER_KEY") {
            provenance.push((
                "master_key",
                "(from STOCKADE_MASTER_KEY)".into(),
                "environment",
            ));
            MasterKeyLocation::EnvValue(SecretString::from(value))
        } else {
            let (path, src) = pick(
                env_var("STOCKADE_MASTER_KEY_FILE").map(PathBuf::from),
                file.master_key_file.clone(),
                || data_dir.join("master.key"),
            );
            provenance.push(("master_key_file", path.display().to_string(), src));
            MasterKeyLocation::File(path)
        };

        let mut store = StoreOptions::default();
        let (sync, src) = pick(
            env_var("STOCKADE_SQLITE_SYNCHRONOUS"),
            file.sqlite.synchronous.clone(),
            || "full".into(),
        );
        store.sqlite_synchronous_full = match sync.to_ascii_lowercase().as_str() {
            "full" => true,
            "normal" => false,
            _ => {
                return Err(AppError::config(
                    "sqlite.synchronous must be \"full\" or \"normal\"",
                ));
            }
        };
        provenance.push(("sqlite.synchronous", sync, src));
        let readers_env = env_var("STOCKADE_SQLITE_READERS")
            .map(|v| {
                v.parse()
                    .map_err(|_| AppError::config("STOCKADE_SQLITE_READERS must be a number"))
            })
            .transpose()?;
        let (readers, src) = pick(readers_env, file.sqlite.readers, || store.sqlite_readers);
        store.sqlite_readers = readers;
        provenance.push(("sqlite.readers", readers.to_string(), src));
        let pg_env = env_var("STOCKADE_POSTGRES_MAX_CONNECTIONS")
            .map(|v| {
                v.parse().map_err(|_| {
                    AppError::config("STOCKADE_POSTGRES_MAX_CONNECTIONS must be a number")
                })
            })
            .transpose()?;
        let (max, src) = pick(pg_env, file.postgres.max_connections, || {
            store.pg_max_connections
        });
        store.pg_max_connections = max;
        provenance.push(("postgres.max_connections", max.to_string(), src));

        let (server, access) = access_settings(&file, &mut provenance)?;
        let mut egress = egress_settings(&file.egress, env, &mut provenance)?;
        let sync = sync_settings(&file.sync, &mut provenance)?;
        let alerts = alerts_settings(&file.alerts, &mut provenance)?;
        let mut workflows = workflow_settings(&file.workflows, &mut provenance)?;
        let console = console_settings(&file.console, &mut provenance)?;
        let log_format = log::log_format(&file.log, &mut provenance)?;
        let retention = retention_of(&file, &mut workflows, &mut egress, &mut provenance)?;
        let mut alerts = alerts;
        alerts.retention = secs(retention.alert_deliveries_s);
        let backup = backup::backup_settings(&file.backup, &data_dir, &mut provenance)?;
        let audit_mirror = audit_mirror::mirror_settings(&file.audit, &mut provenance)?;

        Ok(Settings {
            env,
            data_dir,
            database,
            master_key,
            store,
            config_file,
            server,
            access,
            egress,
            sync,
            alerts,
            workflows,
            console,
            log_format,
            audit_mirror,
            provenance,
            retention,
            backup,
        })
    }

    /// The egress gateway's configuration for `env`.
    pub fn egress_config(&self, env: Environment) -> stockade_egress::EgressConfig {
        let mut c = stockade_egress::EgressConfig::new(env);
        c.allowed_hosts = match &self.egress.allowed_hosts {
            Some(hosts) => hosts.clone(),
            None if env.is_production() => PROD_HOSTS.iter().map(|h| h.to_string()).collect(),
            None => TEST_HOSTS.iter().map(|h| h.to_string()).collect(),
        };
        // The audit mirror's NocoDB is allowed by configuring it.
        if let Some(n) = &self.audit_mirror.nocodb
            && !c.allowed_hosts.contains(&n.authority())
        {
            c.allowed_hosts.push(n.authority());
        }
        // The alert channels' hosts are allowed by configuring the channels.
        for h in self.alerts.hosts() {
            if !c.allowed_hosts.contains(&h) {
                c.allowed_hosts.push(h);
            }
        }
        c.extra_root_pems = self.egress.extra_root_pems.clone();
        c.connect_timeout = self.egress.connect_timeout;
        c.request_timeout = self.egress.request_timeout;
        c.max_attempts = self.egress.max_attempts;
        c.log_retention = self.egress.log_retention;
        // The retention job removes old log rows (in batches, counted in its audit row).
        c.log_auto_prune = false;
        c
    }

    /// The defaults for a throw-away environment in `data_dir` (the demo rig, tests): no
    /// config file and no STOCKADE_* variables; the master key file is DATA_DIR/master.key.
    pub fn defaults(
        env: Environment,
        data_dir: PathBuf,
        database: DatabaseUrl,
    ) -> Result<Settings, AppError> {
        let file = FileConfig::default();
        let mut provenance = Vec::new();
        let (server, access) = access_settings(&file, &mut provenance)?;
        let mut egress = egress_settings(&file.egress, Some(env), &mut provenance)?;
        let mut workflows = workflow_settings(&file.workflows, &mut provenance)?;
        let retention = retention_of(&file, &mut workflows, &mut egress, &mut provenance)?;
        Ok(Settings {
            env: Some(env),
            master_key: MasterKeyLocation::File(data_dir.join("master.key")),
            data_dir,
            database,
            store: StoreOptions::default(),
            config_file: None,
            server,
            access,
            egress,
            sync: sync_settings(&file.sync, &mut provenance)?,
            alerts: stockade_alerts::AlertsConfig {
                retention: secs(retention.alert_deliveries_s),
                ..alerts_settings(&file.alerts, &mut provenance)?
            },
            workflows,
            console: console_settings(&file.console, &mut provenance)?,
            log_format: LogFormat::Text,
            audit_mirror: stockade_mirror::MirrorConfig::default(),
            provenance,
            retention,
            backup: None,
        })
    }

    /// The environment, which every command but `config` needs.
    pub fn require_env(&self) -> Result<Environment, AppError> {
        self.env.ok_or_else(|| {
            AppError::config("no environment given: pass --env prod|staging|dev, set STOCKADE_ENV, or set env in stockade.toml")
        })
    }

    /// Load the master key for `env` from its configured location.
    pub fn load_master_key(&self, env: Environment) -> Result<MasterKeys, AppError> {
        match &self.master_key {
            MasterKeyLocation::File(path) => {
                MasterKeys::load_file(path, env).map_err(AppError::MasterKey)
            }
            MasterKeyLocation::EnvValue(v) => {
                MasterKeys::from_env_value(v.expose_secret(), env).map_err(AppError::MasterKey)
            }
        }
    }

    /// The key source a new key would be written to.
    pub fn master_key_source(&self) -> MasterKeySource {
        match &self.master_key {
            MasterKeyLocation::File(p) => MasterKeySource::File(p.clone()),
            MasterKeyLocation::EnvValue(_) => MasterKeySource::EnvVar,
        }
    }
}

fn load_file(path: &Path) -> Result<FileConfig, AppError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        AppError::config(format!("cannot read config file {}: {e}", path.display()))
    })?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.message().replace('\n', " ");
        AppError::config(format!("config file {} is invalid: {msg}", path.display()))
    })
}

/// `[egress]`, resolved.
#[derive(Debug, Clone)]
pub struct EgressSettings {
    /// None: the built-in list for the environment.
    pub allowed_hosts: Option<Vec<String>>,
    pub extra_root_pems: Vec<String>,
    pub connect_timeout: std::time::Duration,
    pub request_timeout: std::time::Duration,
    pub max_attempts: u32,
    pub log_retention: std::time::Duration,
}

fn seconds(name: &str, text: &Option<String>, default: i64) -> Result<i64, AppError> {
    match text {
        None => Ok(default),
        Some(t) if t.trim() == "-1" => Ok(-1),
        Some(t) => match stockade_access::service::parse_duration(t) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Ok(-1),
            Err(_) => Err(AppError::config(format!(
                "{name} = {t:?} is not a duration: use a number with s, m, h, d or w (e.g. \"15m\")"
            ))),
        },
    }
}

fn access_settings(
    file: &FileConfig,
    provenance: &mut Vec<(&'static str, String, &'static str)>,
) -> Result<(ServerSettings, stockade_access::AccessConfig), AppError> {
    let src = |set: bool| if set { "config file" } else { "default" };
    let listen_text = file
        .server
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:8443".into());
    let listen = listen_text.parse().map_err(|_| {
        AppError::config(format!(
            "server.listen = {listen_text:?} is not an address like 127.0.0.1:8443"
        ))
    })?;
    provenance.push((
        "server.listen",
        listen_text,
        src(file.server.listen.is_some()),
    ));
    if file.server.tls_cert.is_some() != file.server.tls_key.is_some() {
        return Err(AppError::config(
            "server.tls_cert and server.tls_key must be set together",
        ));
    }
    provenance.push((
        "server.tls_cert",
        file.server.tls_cert.as_ref().map_or_else(
            || "(development certificate in DATA_DIR/tls)".into(),
            |p| p.display().to_string(),
        ),
        src(file.server.tls_cert.is_some()),
    ));
    let server = ServerSettings {
        listen,
        tls_cert: file.server.tls_cert.clone(),
        tls_key: file.server.tls_key.clone(),
        plain_http: file.server.plain_http.unwrap_or(false),
        trust_forwarded_for: file.server.trust_forwarded_for.unwrap_or(false),
        self_signed: file.server.self_signed.unwrap_or(false),
    };
    provenance.push((
        "server.plain_http",
        server.plain_http.to_string(),
        src(file.server.plain_http.is_some()),
    ));

    let mut access = stockade_access::AccessConfig::default();
    let a = &file.access;
    access.idle_timeout_s = seconds(
        "access.idle_timeout",
        &a.idle_timeout,
        access.idle_timeout_s,
    )?;
    access.absolute_timeout_s = seconds(
        "access.session_lifetime",
        &a.session_lifetime,
        access.absolute_timeout_s,
    )?;
    if access.idle_timeout_s <= 0 || access.absolute_timeout_s <= 0 {
        return Err(AppError::config(
            "access.idle_timeout and access.session_lifetime must be positive durations",
        ));
    }
    provenance.push((
        "access.idle_timeout",
        format!("{}s", access.idle_timeout_s),
        src(a.idle_timeout.is_some()),
    ));
    provenance.push((
        "access.session_lifetime",
        format!("{}s", access.absolute_timeout_s),
        src(a.session_lifetime.is_some()),
    ));
    if let Some(mix) = a.password_require_mix {
        access.password_policy.require_mix = mix;
    }
    provenance.push((
        "access.password_require_mix",
        access.password_policy.require_mix.to_string(),
        src(a.password_require_mix.is_some()),
    ));
    if let Some(m) = a.argon2_memory_kib {
        access.hash_params.m_kib = m;
    }
    if let Some(t) = a.argon2_iterations {
        access.hash_params.t = t;
    }
    let hp = access.hash_params;
    if hp.m_kib < 19_456 || hp.t < 2 {
        return Err(AppError::config(
            "access.argon2_memory_kib must be at least 19456 and access.argon2_iterations at least 2 (OWASP minimum)",
        ));
    }
    provenance.push((
        "access.argon2",
        format!("m={},t={},p={}", hp.m_kib, hp.t, hp.p),
        src(a.argon2_memory_kib.is_some() || a.argon2_iterations.is_some()),
    ));
    if let Some(n) = a.account_maxretry {
        access.throttle.maxretry = n.max(1);
    }
    access.throttle.findtime = seconds(
        "access.account_findtime",
        &a.account_findtime,
        access.throttle.findtime,
    )?;

    let b = &file.ban;
    // Fail2Ban's `ignoreip = 127.0.0.1/8 ::1`: the host's own addresses are never banned.
    // Behind a proxy that forwards the client address, loopback is the proxy, and a
    // request from it without X-Forwarded-For must not escape the ban: no default then.
    let ignoreip = match &b.ignoreip {
        Some(list) => list
            .iter()
            .map(|t| {
                stockade_access::ban::parse_ip_net(t).ok_or_else(|| {
                    AppError::config(format!(
                        "ban.ignoreip: {t:?} is not an address or CIDR range"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        None if server.trust_forwarded_for => Vec::new(),
        None => stockade_access::ban::loopback_nets(),
    };
    provenance.push((
        "ban.ignoreip",
        match &b.ignoreip {
            Some(list) if list.is_empty() => "(none)".to_owned(),
            Some(list) => list.join(" "),
            None if server.trust_forwarded_for => {
                "(none: server.trust_forwarded_for is set)".to_owned()
            }
            None => "127.0.0.1/8 ::1".to_owned(),
        },
        src(b.ignoreip.is_some()),
    ));
    let shared = b.defaults();
    for (jail, own, policy) in [
        ("interactive", &b.interactive, &mut access.ban),
        ("webhook", &b.webhook, &mut access.webhook_ban),
    ] {
        policy.ignoreip = ignoreip.clone();
        apply_jail("ban", &shared, policy)?;
        if let Some(own) = own {
            apply_jail(&format!("ban.{jail}"), own, policy)?;
        }
        let p = policy;
        provenance.push((
            if jail == "webhook" {
                "ban.webhook"
            } else {
                "ban.interactive"
            },
            format!(
                "maxretry={} findtime={}s bantime={}s increment={}",
                p.maxretry, p.findtime, p.bantime, p.increment
            ),
            src(own.is_some()
                || b.maxretry.is_some()
                || b.findtime.is_some()
                || b.bantime.is_some()),
        ));
    }
    Ok((server, access))
}

/// Apply the options set in `f` to one jail's policy.
fn apply_jail(
    section: &str,
    f: &JailFileConfig,
    p: &mut stockade_access::ban::BanPolicy,
) -> Result<(), AppError> {
    let name = |opt: &str| format!("{section}.{opt}");
    if let Some(n) = f.maxretry {
        p.maxretry = n.max(1);
    }
    p.findtime = seconds(&name("findtime"), &f.findtime, p.findtime)?;
    p.bantime = seconds(&name("bantime"), &f.bantime, p.bantime)?;
    if let Some(v) = f.increment {
        p.increment = v;
    }
    if let Some(v) = f.factor {
        p.factor = v;
    }
    if let Some(v) = &f.multipliers {
        p.multipliers = v.clone();
    }
    p.maxtime = seconds(&name("bantime_maxtime"), &f.maxtime, p.maxtime)?;
    if let Some(n) = f.recidive_maxretry {
        p.recidive_maxretry = n.max(1);
    }
    p.recidive_findtime = seconds(
        &name("recidive_findtime"),
        &f.recidive_findtime,
        p.recidive_findtime,
    )?;
    p.recidive_bantime = seconds(
        &name("recidive_bantime"),
        &f.recidive_bantime,
        p.recidive_bantime,
    )?;
    Ok(())
}

/// `[retention]` with the older keys that name its settings, applied to the engines that
/// prune on their own.
fn retention_of(
    file: &FileConfig,
    workflows: &mut WorkflowSettings,
    egress: &mut EgressSettings,
    provenance: &mut Vec<(&'static str, String, &'static str)>,
) -> Result<stockade_retention::Rules, AppError> {
    let legacy = retention::Legacy {
        workflows_retention: &file.workflows.retention,
        egress_log_retention: &file.egress.log_retention,
        sync_pii_retention: &file.sync.pii_retention,
    };
    let rules = retention::retention_settings(&file.retention, legacy, provenance)?;
    retention::unify(&rules, workflows, egress, provenance);
    Ok(rules)
}

fn secs(s: i64) -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from(s).unwrap_or(u64::MAX))
}
