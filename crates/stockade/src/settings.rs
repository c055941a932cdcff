//! Settings: defaults, then stockade.toml, then STOCKADE_* variables, then flags.
//!
//! The master key is never read from the config file: only a path to it is. Settings
//! are built once in `main` and passed down; there is no global configuration.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use stockade_core::{Environment, SecretString};
use stockade_store::{DatabaseUrl, StoreOptions};
use stockade_vault::{MasterKeySource, MasterKeys};

use crate::cli::GlobalArgs;
use crate::exit::Failure;

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
    /// (setting, value shown, source) for `stockade config`.
    pub provenance: Vec<(&'static str, String, &'static str)>,
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
    pub fn resolve(args: &GlobalArgs) -> Result<Settings, Failure> {
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
            .map_err(|e| Failure::usage(e.to_string()))?;
        provenance.push(("env", env_name.unwrap_or_else(|| "(not set)".into()), src));

        let (data_dir, src) = pick(args.data_dir.clone(), file.data_dir.clone(), || default_dir);
        provenance.push(("data_dir", data_dir.display().to_string(), src));

        let (url_text, src) = pick(
            args.database_url.clone().map(Some),
            file.database_url.clone().map(Some),
            || None,
        );
        let database = match &url_text {
            Some(text) => DatabaseUrl::parse(text).map_err(|e| Failure::usage(e.to_string()))?,
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
                return Err(Failure::usage(
                    "sqlite.synchronous must be \"full\" or \"normal\"",
                ));
            }
        };
        provenance.push(("sqlite.synchronous", sync, src));
        let readers_env = env_var("STOCKADE_SQLITE_READERS")
            .map(|v| {
                v.parse()
                    .map_err(|_| Failure::usage("STOCKADE_SQLITE_READERS must be a number"))
            })
            .transpose()?;
        let (readers, src) = pick(readers_env, file.sqlite.readers, || store.sqlite_readers);
        store.sqlite_readers = readers;
        provenance.push(("sqlite.readers", readers.to_string(), src));
        let pg_env = env_var("STOCKADE_POSTGRES_MAX_CONNECTIONS")
            .map(|v| {
                v.parse().map_err(|_| {
                    Failure::usage("STOCKADE_POSTGRES_MAX_CONNECTIONS must be a number")
                })
            })
            .transpose()?;
        let (max, src) = pick(pg_env, file.postgres.max_connections, || {
            store.pg_max_connections
        });
        store.pg_max_connections = max;
        provenance.push(("postgres.max_connections", max.to_string(), src));

        Ok(Settings {
            env,
            data_dir,
            database,
            master_key,
            store,
            config_file,
            provenance,
        })
    }

    /// The environment, which every command but `config` needs.
    pub fn require_env(&self) -> Result<Environment, Failure> {
        self.env.ok_or_else(|| {
            Failure::usage("no environment given: pass --env prod|staging|dev, set STOCKADE_ENV, or set env in stockade.toml")
        })
    }

    /// Load the master key for `env` from its configured location.
    pub fn load_master_key(&self, env: Environment) -> Result<MasterKeys, Failure> {
        match &self.master_key {
            MasterKeyLocation::File(path) => {
                MasterKeys::load_file(path, env).map_err(Failure::from_master)
            }
            MasterKeyLocation::EnvValue(v) => {
                MasterKeys::from_env_value(v.expose_secret(), env).map_err(Failure::from_master)
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

fn load_file(path: &Path) -> Result<FileConfig, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.message().replace('\n', " ");
        Failure::usage(format!("config file {} is invalid: {msg}", path.display()))
    })
}
