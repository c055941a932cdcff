//! `stockade credential set|list`: the credentials workflows use by name
//! (`http.request`'s `credential`), in the vault's credential store.
//!
//! Invariants: a secret is read from standard input only (never an argument, so it stays
//! out of shell history and process listings), stored encrypted under the system data key
//! with its scopes (workflows and hosts: default deny), audited by the vault without its
//! value, and never printed.

use std::io::Read;

use stockade_core::SecretString;
use stockade_vault::{CredentialScopes, KeyOwner, NewCredential};
use zeroize::Zeroize;

use super::{CLI_ACTOR, open_vault};
use crate::cli::CredentialCommand;
use crate::exit::Failure;
use crate::settings::Settings;

/// The longest secret accepted, in bytes.
const MAX_SECRET_BYTES: u64 = 16 * 1024;

pub async fn run(settings: &Settings, cmd: CredentialCommand) -> Result<(), Failure> {
    match cmd {
        CredentialCommand::Set {
            name,
            workflows,
            hosts,
            secret_stdin,
        } => set(settings, &name, workflows, hosts, secret_stdin).await,
        CredentialCommand::List => list(settings).await,
    }
}

fn read_secret() -> Result<SecretString, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_SECRET_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Failure::runtime(format!("cannot read the secret from stdin: {e}")))?;
    if text.len() as u64 > MAX_SECRET_BYTES {
        text.zeroize();
        return Err(Failure::usage(format!(
            "the secret on stdin is larger than {MAX_SECRET_BYTES} bytes"
        )));
    }
    let trimmed = text.trim_end_matches(['\n', '\r']).to_owned();
    text.zeroize();
    if trimmed.is_empty() || trimmed.chars().any(char::is_control) {
        return Err(Failure::usage(
            "the secret on stdin is empty or holds control characters (one line expected)",
        ));
    }
    Ok(SecretString::from(trimmed))
}

async fn set(
    settings: &Settings,
    name: &str,
    workflows: Vec<String>,
    hosts: Vec<String>,
    secret_stdin: bool,
) -> Result<(), Failure> {
    if !secret_stdin {
        return Err(Failure::usage(
            "give the secret on standard input with --secret-stdin (never on the command line)",
        ));
    }
    let secret = read_secret()?;
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let vault = open_vault(settings).await?;
    vault
        .put_credential(
            &NewCredential {
                name,
                kind: "workflow_secret",
                secret: &secret,
                owner: &KeyOwner::system(),
                scopes: &CredentialScopes {
                    workflows: workflows.clone(),
                    hosts: hosts.clone(),
                },
                account: None,
            },
            &CLI_ACTOR,
        )
        .await?;
    let hosts = if hosts.is_empty() {
        "no host (it is never sent: a webhook's HMAC key)".to_owned()
    } else {
        format!("hosts {}", hosts.join(", "))
    };
    println!(
        "stored credential {name} (encrypted) for workflows {} and {hosts}",
        workflows.join(", "),
    );
    Ok(())
}

async fn list(settings: &Settings) -> Result<(), Failure> {
    let vault = open_vault(settings).await?;
    println!("{:<32} {:<18} {:<30} HOSTS", "NAME", "KIND", "WORKFLOWS");
    for c in vault.list_credentials().await? {
        println!(
            "{:<32} {:<18} {:<30} {}",
            c.name,
            c.kind,
            c.scopes.workflows.join(","),
            c.scopes.hosts.join(",")
        );
    }
    Ok(())
}
