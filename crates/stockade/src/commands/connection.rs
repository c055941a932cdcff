//! `stockade connection add|list|show|pause|resume|revoke`: marketplace connections from
//! the command line (audited as `system:cli`). Secrets are read from a private file or
//! standard input, never from arguments, and never printed.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use stockade_core::SecretString;
use stockade_core::time::format_rfc3339_ms;
use stockade_marketplaces::Marketplace;
use stockade_sync::connection_view;
use stockade_sync::connections::{self, Connection, ConnectionSettings, NewConnection};
use stockade_sync::purge::{self, PurgeReceipt};
use stockade_sync::{ConnectionStatus, SyncError};
use zeroize::Zeroize;

use super::{CLI_ACTOR, open_vault};
use crate::cli::{ConnectionAddArgs, ConnectionCommand, CredentialsArgs, MarketplaceArg};
use crate::exit::Failure;
use crate::settings::Settings;

/// The largest credentials document read (a few tokens fit many times over).
const MAX_CREDENTIALS_BYTES: u64 = 64 * 1024;

/// A sync error as a command failure: what the operator got wrong is a usage error.
pub(super) fn sync_failure(e: SyncError) -> Failure {
    match e {
        SyncError::Store(s) => s.into(),
        SyncError::Vault(v) => v.into(),
        SyncError::Invalid(_) | SyncError::UnknownConnection(_) | SyncError::Revoked(_) => {
            Failure::usage(e.to_string())
        }
        SyncError::Market(_) | SyncError::ShuttingDown => Failure::runtime(e.to_string()),
    }
}

/// Read a sandbox test CA (PEM) named on the command line.
pub(super) fn read_sandbox_ca(path: &Path) -> Result<String, Failure> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::usage(format!("--sandbox-ca: cannot read {shown}: {e}")))?;
    if !meta.is_file() || meta.len() > MAX_CREDENTIALS_BYTES {
        return Err(Failure::usage(format!(
            "--sandbox-ca: {shown} is not a PEM certificate file"
        )));
    }
    let pem = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("--sandbox-ca: cannot read {shown}: {e}")))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(Failure::usage(format!(
            "--sandbox-ca: {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(pem)
}

pub(super) fn marketplace(m: MarketplaceArg) -> Marketplace {
    match m {
        MarketplaceArg::Tiktok => Marketplace::TikTok,
        MarketplaceArg::Amazon => Marketplace::Amazon,
        MarketplaceArg::Ebay => Marketplace::Ebay,
    }
}

/// The webhook path a marketplace is given for a connection.
fn hook_path(c: &Connection) -> String {
    format!("/hooks/{}/{}", c.marketplace, c.name)
}

fn read_credentials_file(path: &Path) -> Result<String, Failure> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::usage(format!("cannot open the credentials file {shown}: {e}")))?;
    // Check the file that was opened, not the path again.
    let meta = file
        .metadata()
        .map_err(|e| Failure::runtime(format!("cannot read the credentials file {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(Failure::usage(format!(
            "the credentials file {shown} is not a regular file"
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Failure::usage(format!(
            "the credentials file {shown} is readable by other users (mode {mode:04o}): run `chmod 600 {shown}` and try again (and consider the secrets in it exposed if others could read it)"
        )));
    }
    if meta.len() > MAX_CREDENTIALS_BYTES {
        return Err(Failure::usage(format!(
            "the credentials file {shown} is larger than {MAX_CREDENTIALS_BYTES} bytes; it should hold one small JSON object"
        )));
    }
    let mut text = String::new();
    file.take(MAX_CREDENTIALS_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| Failure::runtime(format!("cannot read the credentials file {shown}: {e}")))?;
    Ok(text)
}

fn read_credentials_stdin() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_CREDENTIALS_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Failure::runtime(format!("cannot read the credentials from stdin: {e}")))?;
    if text.len() as u64 > MAX_CREDENTIALS_BYTES {
        text.zeroize();
        return Err(Failure::usage(format!(
            "the credentials on stdin are larger than {MAX_CREDENTIALS_BYTES} bytes; send one small JSON object"
        )));
    }
    Ok(text)
}

/// `{"field": "secret", …}` into (field, secret) pairs. Messages name fields, never
/// values (a serde type error would quote a number).
fn parse_credentials(mut text: String, from: &str) -> Result<Vec<(String, SecretString)>, Failure> {
    let parsed = serde_json::from_str::<serde_json::Value>(&text);
    text.zeroize();
    let value = parsed.map_err(|e| {
        Failure::usage(format!(
            "the credentials {from} are not valid JSON (line {}, column {}); expected an object like {{\"field\": \"value\", …}}",
            e.line(),
            e.column()
        ))
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(Failure::usage(format!(
            "the credentials {from} must be a JSON object of credential fields, like {{\"field\": \"value\", …}}"
        )));
    };
    let mut out = Vec::with_capacity(map.len());
    for (field, v) in map {
        match v {
            serde_json::Value::String(mut s) => {
                if s.is_empty() {
                    return Err(Failure::usage(format!(
                        "the credential field {field:?} {from} is empty"
                    )));
                }
                out.push((field, SecretString::from(std::mem::take(&mut s))));
            }
            _ => {
                return Err(Failure::usage(format!(
                    "the credential field {field:?} {from} must be a JSON string"
                )));
            }
        }
    }
    Ok(out)
}

pub(super) fn read_credentials(
    args: &CredentialsArgs,
) -> Result<Vec<(String, SecretString)>, Failure> {
    match (&args.credentials_file, args.credentials_stdin) {
        (Some(path), false) => {
            let text = read_credentials_file(path)?;
            parse_credentials(text, &format!("in {}", path.display()))
        }
        (None, true) => parse_credentials(read_credentials_stdin()?, "on stdin"),
        _ => Err(Failure::usage(
            "give exactly one of --credentials-file FILE or --credentials-stdin",
        )),
    }
}

pub async fn run(settings: &Settings, cmd: ConnectionCommand) -> Result<(), Failure> {
    match cmd {
        ConnectionCommand::Add(args) => add(settings, *args).await,
        ConnectionCommand::Edit(args) => super::connection_edit::edit(settings, *args).await,
        ConnectionCommand::Test { name } => super::connection_edit::test(settings, &name).await,
        ConnectionCommand::List => list(settings).await,
        ConnectionCommand::Show { name } => show(settings, &name).await,
        ConnectionCommand::Pause { name } => {
            set_status(settings, &name, ConnectionStatus::Paused).await
        }
        ConnectionCommand::Resume { name } => {
            set_status(settings, &name, ConnectionStatus::Active).await
        }
        ConnectionCommand::Revoke { name, yes } => revoke(settings, &name, yes).await,
    }
}

async fn add(settings: &Settings, args: ConnectionAddArgs) -> Result<(), Failure> {
    let env = settings.require_env()?;
    let m = marketplace(args.marketplace);
    if !connections::valid_name(&args.name) {
        return Err(Failure::usage(
            "--name: a connection name is 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    if args.sandbox_ca.is_some() && env != stockade_core::Environment::Dev {
        return Err(Failure::usage(format!(
            "--sandbox-ca: a sandbox certificate authority is trusted only by a dev instance (this is {env}); nothing was added"
        )));
    }
    let sandbox_ca = match &args.sandbox_ca {
        Some(path) => Some(read_sandbox_ca(path)?),
        None => None,
    };
    let (api_url, auth_url) = match args.api_url {
        Some(url) => (url, args.auth_url),
        None if env.is_production() => {
            let (api, auth) = connections::live_defaults(m);
            (api.to_owned(), args.auth_url.or(auth.map(str::to_owned)))
        }
        None => {
            return Err(Failure::usage(format!(
                "--api-url is required in {env}: a {env} instance connects only to a sandbox (the marketplace's own, or `stockade sandbox --credentials-dir DIR`, which prints the complete commands); the live API is the prod instance's"
            )));
        }
    };
    // Read the secrets before opening anything, so a slow stdin holds no lock.
    let secrets = read_credentials(&args.credentials)?;
    let new = NewConnection {
        name: args.name,
        marketplace: m,
        account: args.account,
        settings: ConnectionSettings {
            api_url,
            auth_url,
            shop_cipher: args.shop_cipher,
            marketplace_ids: args.marketplace_ids,
            document_hosts: args.document_hosts,
            endpoint_url: args.endpoint_url,
            sandbox_ca,
            revision: 0,
        },
        secrets,
    };
    let fields: Vec<String> = new.secrets.iter().map(|(f, _)| f.clone()).collect();
    let derived_auth = new.settings.auth_url.is_none();
    let vault = open_vault(settings).await?;
    let added = connections::add(&vault, new, &CLI_ACTOR).await;
    vault.close().await;
    let c = added.map_err(sync_failure)?;
    println!(
        "connection {} added: {} {} endpoint {}, account {}, {}",
        c.name,
        c.marketplace,
        c.endpoint.as_str(),
        c.settings.api_url,
        c.account,
        c.status.as_str()
    );
    if derived_auth && let Some(auth) = &c.settings.auth_url {
        println!("auth URL derived from the local sandbox's API URL: {auth}");
    }
    if c.settings.sandbox_ca.is_some() {
        println!(
            "trusting the sandbox's test CA for this connection (dev only; no egress allowlist entry needed for its loopback hosts)"
        );
    }
    println!(
        "credential fields stored encrypted under the connection's own key: {}",
        fields.join(", ")
    );
    println!(
        "webhook path to register with {}: https://YOUR-HOST{}",
        c.marketplace,
        hook_path(&c)
    );
    if c.marketplace == Marketplace::Ebay && c.settings.endpoint_url.is_none() {
        println!(
            "note: eBay's endpoint validation needs the public URL of that path; without --endpoint-url the challenge cannot be answered"
        );
    }
    println!("a running `stockade serve` starts syncing it within 2 seconds");
    Ok(())
}

async fn list(settings: &Settings) -> Result<(), Failure> {
    let vault = open_vault(settings).await?;
    let all = connections::list(vault.store()).await;
    vault.close().await;
    let all = all.map_err(sync_failure)?;
    println!(
        "{:<24} {:<11} {:<8} {:<8} {:<24} api",
        "name", "marketplace", "endpoint", "status", "account"
    );
    for c in &all {
        println!(
            "{:<24} {:<11} {:<8} {:<8} {:<24} {}",
            c.name,
            c.marketplace.as_str(),
            c.endpoint.as_str(),
            c.status.as_str(),
            c.account,
            c.settings.api_url
        );
    }
    if all.is_empty() {
        eprintln!("no connections yet; add one with `stockade connection add`");
    }
    Ok(())
}

struct Details {
    counts: stockade_sync::stats::ConnectionCounts,
    fields: Vec<String>,
    receipt: Option<PurgeReceipt>,
    unmatched: Vec<stockade_sync::UnmatchedLine>,
    push: stockade_sync::PushHealth,
}

async fn details(vault: &stockade_vault::Vault, c: &Connection) -> Result<Details, Failure> {
    let store = vault.store();
    let prefix = format!("connection/{}/", c.name);
    let fields = vault
        .list_credentials()
        .await?
        .into_iter()
        .filter_map(|cred| cred.name.strip_prefix(&prefix).map(str::to_owned))
        .collect();
    let receipt = if c.status == ConnectionStatus::Revoked {
        purge::receipts(store)
            .await
            .map_err(sync_failure)?
            .into_iter()
            .find(|r| r.connection == c.name)
    } else {
        None
    };
    Ok(Details {
        push: stockade_sync::health::connection_health(store, c.id)
            .await
            .map_err(sync_failure)?,
        counts: stockade_sync::stats::connection_counts(store, c.id)
            .await
            .map_err(sync_failure)?,
        fields,
        receipt,
        unmatched: stockade_sync::unmatched::unmatched_lines(store)
            .await
            .map_err(sync_failure)?
            .into_iter()
            .filter(|l| l.connection == c.name)
            .collect(),
    })
}

async fn show(settings: &Settings, name: &str) -> Result<(), Failure> {
    let vault = open_vault(settings).await?;
    let found = match connections::get(vault.store(), name).await {
        Ok(c) => match details(&vault, &c).await {
            Ok(d) => Ok((c, d)),
            Err(e) => Err(e),
        },
        Err(e) => Err(sync_failure(e)),
    };
    vault.close().await;
    let (c, d) = found?;
    let s = &c.settings;
    let row = |k: &str, v: &str| println!("{k:<16} {v}");
    row("connection", &c.name);
    row("marketplace", c.marketplace.as_str());
    row("account", &c.account);
    row("status", c.status.as_str());
    row("endpoint", c.endpoint.as_str());
    row("api url", &s.api_url);
    if let Some(v) = &s.auth_url {
        row("auth url", v);
    }
    if let Some(v) = &s.shop_cipher {
        row("shop cipher", v);
    }
    if !s.marketplace_ids.is_empty() {
        row("marketplace ids", &s.marketplace_ids.join(", "));
    }
    if !s.document_hosts.is_empty() {
        row("document hosts", &s.document_hosts.join(", "));
    }
    if let Some(v) = &s.endpoint_url {
        row("endpoint url", v);
    }
    if s.sandbox_ca.is_some() {
        row("sandbox ca", "trusted (dev only; loopback hosts allowed)");
    }
    row("webhook path", &hook_path(&c));
    row("created", &format_rfc3339_ms(c.created_at_ms));
    row("updated", &format_rfc3339_ms(c.updated_at_ms));
    if let Some(at) = c.revoked_at_ms {
        row("revoked", &format_rfc3339_ms(at));
    }
    row("listings", &d.counts.listings.to_string());
    row("pushes", &push_line(&d.push));
    if let Some(e) = &d.push.last_error {
        row("last error", e);
    }
    row("orders", &d.counts.orders.to_string());
    if !d.unmatched.is_empty() {
        let groups = stockade_sync::unmatched::by_sku(&d.unmatched);
        let skus: Vec<&str> = groups.iter().map(|g| g.sku.as_str()).collect();
        let open: i64 = groups.iter().map(|g| g.open_units).sum();
        row(
            "UNMATCHED",
            &format!(
                "{} order line(s) ({open} open unit(s)) name SKUs not in the catalog: {}; nothing is reserved for them until `stockade sku discover` or `stockade sku import` adds them",
                d.unmatched.len(),
                skus.join(", ")
            ),
        );
    }
    row(
        "last cursor",
        &match d.counts.cursor {
            Some((since, updated)) => format!(
                "orders changed since {} (polled {})",
                format_rfc3339_ms(since),
                format_rfc3339_ms(updated)
            ),
            None => "(not polled yet)".into(),
        },
    );
    row(
        "credentials",
        &if d.fields.is_empty() {
            "(none)".to_owned()
        } else {
            format!("{} (encrypted; values never shown)", d.fields.join(", "))
        },
    );
    if let Some(r) = &d.receipt {
        row(
            "purge receipt",
            &format!(
                "{} ({}): {} orders, {} buyer fields, {} listings, {} credentials deleted",
                format_rfc3339_ms(r.at_ms),
                r.reason,
                r.orders,
                r.buyer_fields,
                r.listings,
                r.credentials
            ),
        );
    }
    Ok(())
}

/// "ok", or "FAILING since … (N failed rounds, last …)": a stalled channel looks stalled.
fn push_line(h: &stockade_sync::PushHealth) -> String {
    if !h.failing() {
        return "ok".into();
    }
    let mut t = format!(
        "FAILING since {} ({} failed round(s)",
        h.failing_since_ms
            .map_or_else(|| "-".into(), format_rfc3339_ms),
        h.failures
    );
    if let Some(at) = h.last_error_at_ms {
        t.push_str(&format!(", last at {}", format_rfc3339_ms(at)));
    }
    t.push_str("); listings wait for the channel and are retried with backoff");
    t
}

async fn set_status(settings: &Settings, name: &str, to: ConnectionStatus) -> Result<(), Failure> {
    let vault = open_vault(settings).await?;
    let changed = connections::set_status(vault.store(), name, to, &CLI_ACTOR).await;
    vault.close().await;
    let c = changed.map_err(sync_failure)?;
    match to {
        ConnectionStatus::Paused => println!(
            "connection {} paused: nothing is pushed or polled until `stockade connection resume {}` (orders sent to its webhook are still recorded); a running server follows within 2 seconds",
            c.name, c.name
        ),
        _ => println!(
            "connection {} active: a running server resumes pushing and polling within 2 seconds",
            c.name
        ),
    }
    Ok(())
}

/// Ask on the terminal for the name, and return what was typed (checked by the revoke).
fn confirm(name: &str) -> Result<String, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "revoking deletes the connection's data and cannot be undone; no terminal to confirm on: pass --yes (`stockade connection revoke {name} --yes`)"
        )));
    }
    eprint!(
        "Revoke {name}? Its orders, buyer data, listings and credentials are deleted and its key destroyed; this cannot be undone.\nType the connection name to confirm: "
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::runtime(format!("cannot read the confirmation: {e}")))?;
    if !connection_view::confirms(&line, name) {
        return Err(Failure::usage("not confirmed; nothing was changed"));
    }
    Ok(line)
}

async fn revoke(settings: &Settings, name: &str, yes: bool) -> Result<(), Failure> {
    let vault = open_vault(settings).await?;
    // Refuse an unknown name before asking.
    if let Err(e) = connections::get(vault.store(), name).await {
        vault.close().await;
        return Err(sync_failure(e));
    }
    let typed = if yes {
        Ok(name.to_owned())
    } else {
        confirm(name)
    };
    let typed = match typed {
        Ok(t) => t,
        Err(e) => {
            vault.close().await;
            return Err(e);
        }
    };
    let purged = connection_view::revoke(&vault, name, &typed, &CLI_ACTOR).await;
    vault.close().await;
    let r = purged.map_err(sync_failure)?;
    println!(
        "connection {} ({}) revoked and purged at {} (reason: {}):",
        r.connection,
        r.marketplace,
        format_rfc3339_ms(r.at_ms),
        r.reason
    );
    for (what, n) in [
        ("orders deleted", r.orders),
        ("buyer fields deleted", r.buyer_fields),
        ("order lines deleted", r.order_lines),
        ("reservations released", r.reservations_released),
        ("listings deleted", r.listings),
        ("credentials deleted", r.credentials),
        ("events deleted", r.events),
        ("data keys destroyed", r.data_keys_destroyed),
    ] {
        println!("  {what:<24} {n}");
    }
    println!("a running server stops it within 2 seconds; the receipt and an audit row are stored");
    Ok(())
}
