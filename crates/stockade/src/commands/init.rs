//! `stockade init` and `stockade migrate`.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use stockade_store::{DatabaseUrl, Store, StoreError, probe_environment};
use stockade_vault::{MasterKeyError, MasterKeys, Vault};

use super::CLI_ACTOR;
use crate::exit::Failure;
use crate::settings::{MasterKeyLocation, Settings};

pub async fn init(settings: &Settings) -> Result<(), Failure> {
    let env = settings.env.ok_or_else(|| {
        Failure::usage("init needs an environment: stockade init --env prod|staging|dev")
    })?;

    // Look before writing: a database that belongs elsewhere stops us before any file is
    // made. One of this environment without a keyring is an init that was interrupted:
    // it is completed, not refused.
    let mut resume = false;
    if !matches!(&settings.database, DatabaseUrl::Sqlite(p) if !p.exists()) {
        match probe_environment(&settings.database).await {
            Ok(Some(db_env)) if db_env != env.as_str() => {
                return Err(StoreError::WrongEnvironment {
                    database: db_env,
                    requested: env,
                }
                .into());
            }
            Ok(Some(_)) => resume = true,
            Ok(None) | Err(StoreError::NotInitialised(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }

    create_private_dir(&settings.data_dir)?;
    if let DatabaseUrl::Sqlite(path) = &settings.database
        && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
    {
        create_private_dir(parent)?;
    }

    let (store, report) = if resume {
        let (store, report) = Store::migrate(&settings.database, env, &settings.store).await?;
        if !store.master_keys().await?.is_empty() {
            store.close().await;
            return Err(StoreError::AlreadyInitialised(
                settings.database.describe(),
                env.to_string(),
            )
            .into());
        }
        (store, report)
    } else {
        Store::init(&settings.database, env, &settings.store).await?
    };

    let (master, key_note) = match &settings.master_key {
        MasterKeyLocation::EnvValue(_) => (
            settings.load_master_key(env)?,
            "from STOCKADE_MASTER_KEY (not written to disk)".to_owned(),
        ),
        MasterKeyLocation::File(path) => match MasterKeys::load_file(path, env) {
            Ok(keys) => (keys, format!("{} (existing)", path.display())),
            Err(MasterKeyError::Missing(_)) => {
                let keys = MasterKeys::generate(env, settings.master_key_source())?;
                keys.write_new_file(path).map_err(Failure::from_master)?;
                (
                    keys,
                    format!(
                        "{} (new, mode 0600: back it up separately from the data)",
                        path.display()
                    ),
                )
            }
            Err(e) => return Err(Failure::from_master(e)),
        },
    };

    let vault = Vault::bootstrap(store.clone(), master, &CLI_ACTOR).await?;
    write_default_config(&settings.data_dir, env)?;
    let audit = store.verify_audit(None).await?;
    println!("initialised environment {env}");
    println!("  data directory  {}", settings.data_dir.display());
    println!(
        "  database        {} (schema v{})",
        store.describe(),
        report.schema_version
    );
    println!("  master key      {key_note}");
    println!(
        "  keyring         master key v{}, system data key ready",
        vault.master_keys().active_version()
    );
    println!(
        "  audit chain     {} rows, head {}",
        audit.rows_checked,
        super::audit::format_head(audit.head)
    );
    drop(store);
    vault.close().await;
    Ok(())
}

pub async fn migrate(settings: &Settings) -> Result<(), Failure> {
    let env = settings.require_env()?;
    let (store, report) = Store::migrate(&settings.database, env, &settings.store).await?;
    if report.applied.is_empty() {
        println!(
            "schema is current (v{}); nothing to do",
            report.schema_version
        );
    } else {
        let list: Vec<String> = report.applied.iter().map(|v| v.to_string()).collect();
        println!(
            "applied migration(s) {}; schema is now v{}",
            list.join(", "),
            report.schema_version
        );
    }
    store.close().await;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), Failure> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Failure::runtime(format!("cannot create directory {}: {e}", dir.display())))
}

/// A minimal stockade.toml so later commands pointed at this directory know its environment.
fn write_default_config(dir: &Path, env: stockade_core::Environment) -> Result<(), Failure> {
    let path = dir.join("stockade.toml");
    if path.exists() {
        return Ok(());
    }
    let text = format!(
        "# Written by `stockade init`. See deploy/stockade.example.toml for every setting.\n\
         # A flag (--env) or STOCKADE_ENV overrides this; a mismatch with the database is refused.\n\
         env = \"{env}\"\n"
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))
}
