//! `stockade workflow apply|approve|list|versions|diff|enable|disable|export`: the
//! reviewed versions in the database (`stockade_workflows::registry` does the work and
//! the checks; this file reads files, names the acting user and prints).
//!
//! The acting user is named with `--as EMAIL` and must be an enabled admin or operator;
//! the version and audit rows record `user:ID`. Without `--as` (dev and staging only, and
//! never for an approval) the actor is `system:cli`. The CLI trusts whoever runs it with
//! the database and master key; the four-eyes rule is between the named people.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use stockade_access::{Access, Permission};
use stockade_core::time::format_rfc3339_ms;
use stockade_core::{Actor, Environment};
use stockade_store::Store;
use stockade_workflows::registry::{self, Applied, RegistryError, VersionState};

use super::{CLI_ACTOR, open_store, open_vault};
use crate::exit::Failure;
use crate::settings::Settings;

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Store(s) => s.into(),
            other => Failure::usage(other.to_string()),
        }
    }
}

/// The store, and the actor named by `--as` (or the CLI itself).
pub(super) async fn open_as(
    settings: &Settings,
    as_user: Option<&str>,
) -> Result<(Store, Actor), Failure> {
    let Some(email) = as_user else {
        return Ok((open_store(settings).await?, CLI_ACTOR));
    };
    let vault = Arc::new(open_vault(settings).await?);
    let access = Access::new(vault, settings.access.clone()).await?;
    let user = access.user_by_email(email).await?.ok_or_else(|| {
        Failure::usage("no such user: check the email (`stockade user list`); nothing was changed")
    })?;
    if user.disabled || !user.role.can(Permission::ManageSync) {
        return Err(Failure::usage(format!(
            "user {} may not manage workflows (disabled, or role {} is neither admin nor operator); nothing was changed",
            user.id, user.role
        )));
    }
    Ok((access.store().clone(), Actor::User(user.id)))
}

pub async fn apply(
    settings: &Settings,
    files: &[PathBuf],
    as_user: Option<&str>,
) -> Result<(), Failure> {
    if as_user.is_none() && settings.env == Some(Environment::Prod) {
        return Err(Failure::usage(
            "in prod, name who applies with --as EMAIL (an approval needs a different user); nothing was changed",
        ));
    }
    let mut texts = Vec::with_capacity(files.len());
    for path in files {
        let name = path.display().to_string();
        let text = super::workflow::read(path).map_err(|why| {
            Failure::usage(format!("{name}: cannot read: {why}; nothing was applied"))
        })?;
        texts.push((name, text));
    }
    warn_unknown_channels(settings, &texts);
    let (store, actor) = open_as(settings, as_user).await?;
    let outcomes = registry::apply_with(&store, &actor, &texts, settings.workflows.script).await;
    store.close().await;
    let mut refused = 0usize;
    for o in outcomes? {
        for p in &o.problems {
            println!("{}:{p}", o.file);
        }
        let name = o.name.as_deref().unwrap_or("?");
        let line = match o.applied {
            Applied::NotStored => {
                refused += 1;
                "not stored: it does not parse as a workflow, or an earlier file has its name"
                    .to_owned()
            }
            Applied::SecretRefused => {
                refused += 1;
                "not stored: it holds what looks like a secret (see secret-literal above); reference a credential by name instead".to_owned()
            }
            Applied::Unchanged { version, state } => {
                format!("{name} unchanged (version {version}, {state})")
            }
            Applied::Stored { version, state } => {
                if state == VersionState::Rejected {
                    refused += 1;
                }
                stored_line(name, version, state, o.problems.len())
            }
        };
        eprintln!("{}: {line}", o.file);
    }
    if refused > 0 {
        return Err(Failure::verification(format!(
            "{refused} of {} file(s) failed lint and will not run",
            files.len()
        )));
    }
    Ok(())
}

/// Warn about `alert.send` steps naming a channel this server's `[[alerts.channel]]`
/// does not configure (the step would fail when it runs); the files are still applied,
/// since the alert config may be changed after.
fn warn_unknown_channels(settings: &Settings, texts: &[(String, String)]) {
    let known: Vec<&str> = settings
        .alerts
        .channels
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for (file, text) in texts {
        let Ok(workflow) = stockade_workflows::Workflow::parse(text) else {
            continue;
        };
        for (step, channel) in stockade_workflows::exec::named_channels(&workflow) {
            if !known.contains(&channel.as_str()) {
                let list = if known.is_empty() {
                    "none is configured".to_owned()
                } else {
                    format!("configured: {}", known.join(", "))
                };
                eprintln!(
                    "{file}: warning: step {step}: alert channel {channel:?} is not configured ({list}); the step fails until an [[alerts.channel]] of that name exists"
                );
            }
        }
    }
}

fn stored_line(name: &str, version: i64, state: VersionState, problems: usize) -> String {
    match state {
        VersionState::Active => format!("{name} version {version} applied and active"),
        VersionState::Pending => format!(
            "{name} version {version} applied, pending approval: another user runs `stockade workflow approve {name} --version {version} --as EMAIL`"
        ),
        VersionState::Rejected => format!(
            "{name} version {version} stored as rejected ({problems} lint problem(s)); it will never run"
        ),
        VersionState::Superseded => format!("{name} version {version} superseded"),
    }
}

pub async fn approve(
    settings: &Settings,
    name: &str,
    version: i64,
    as_user: &str,
) -> Result<(), Failure> {
    let (store, actor) = open_as(settings, Some(as_user)).await?;
    let result = registry::approve(&store, &actor, name, version).await;
    store.close().await;
    let row = result?;
    println!(
        "{name} version {} approved by {} and active",
        row.version,
        row.approved_by.as_deref().unwrap_or("?")
    );
    Ok(())
}

pub async fn set_enabled(
    settings: &Settings,
    name: &str,
    enabled: bool,
    as_user: Option<&str>,
) -> Result<(), Failure> {
    let (store, actor) = open_as(settings, as_user).await?;
    let result = registry::set_enabled(&store, &actor, name, enabled).await;
    store.close().await;
    let word = if enabled { "enabled" } else { "disabled" };
    if result? {
        println!("{name} {word}");
    } else {
        println!("{name} was already {word}; nothing was changed");
    }
    Ok(())
}

pub async fn list(settings: &Settings) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    let rows = registry::workflows(&store).await;
    store.close().await;
    println!("{:<32} {:<8} {:<7} newest", "name", "enabled", "active");
    for w in rows? {
        let active = w.active_version.map_or("-".to_owned(), |v| v.to_string());
        println!(
            "{:<32} {:<8} {:<7} {}",
            w.name,
            if w.enabled { "yes" } else { "no" },
            active,
            w.latest_version
        );
    }
    Ok(())
}

pub async fn versions(settings: &Settings, name: &str) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    let rows = registry::versions(&store, name).await;
    store.close().await;
    println!(
        "{:<7} {:<10} {:<12} {:<12} {:<24} {:<24} {:<24} approved at",
        "version", "state", "lint", "sha256", "applied by", "applied at", "approved by"
    );
    for v in rows? {
        let lint = if v.lint_passed {
            "passed".to_owned()
        } else {
            format!("{} problem(s)", v.lint_problems)
        };
        println!(
            "{:<7} {:<10} {:<12} {:<12} {:<24} {:<24} {:<24} {}",
            v.version,
            v.state,
            lint,
            v.content_sha256.get(..12).unwrap_or(&v.content_sha256),
            v.applied_by,
            format_rfc3339_ms(v.applied_at_ms),
            v.approved_by.as_deref().unwrap_or("-"),
            v.approved_at_ms.map_or("-".to_owned(), format_rfc3339_ms)
        );
    }
    Ok(())
}

pub async fn diff(settings: &Settings, name: &str, from: i64, to: i64) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    let texts = async {
        let old = registry::content(&store, name, Some(from)).await?;
        let new = registry::content(&store, name, Some(to)).await?;
        Ok::<_, RegistryError>((old.1, new.1))
    }
    .await;
    store.close().await;
    let (old, new) = texts?;
    let lines = stockade_workflows::diff::diff_lines(&old, &new);
    println!("--- {name} version {from}\n+++ {name} version {to}");
    print!("{}", stockade_workflows::diff::render(&lines));
    if !stockade_workflows::diff::changed(&lines) {
        eprintln!("versions {from} and {to} have the same lines");
    }
    Ok(())
}

pub async fn export(settings: &Settings, name: &str, version: Option<i64>) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    let result = registry::content(&store, name, version).await;
    store.close().await;
    let (_, text) = result?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::runtime(format!("cannot write to standard output: {e}")))
}
