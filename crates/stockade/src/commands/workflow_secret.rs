//! `stockade workflow secret NAME`: store a credential that workflows name (a webhook's
//! `hmac` key, an `http.request` credential), encrypted in the vault, audited under
//! `system:cli`.
//!
//! The value comes from standard input (its first line, surrounding whitespace
//! removed), never from the command line, so it stays out of shell history and process
//! listings; it is never printed. A value under 16 characters is refused: an HMAC key
//! that short can be guessed.

use std::io::BufRead;

use stockade_core::SecretString;
use stockade_vault::{CredentialScopes, KeyOwner, NewCredential};
use zeroize::Zeroize;

use super::{CLI_ACTOR, open_vault};
use crate::exit::Failure;
use crate::settings::Settings;

/// The shortest value accepted.
const MIN_CHARS: usize = 16;

pub async fn set(settings: &Settings, name: &str) -> Result<(), Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::usage(format!("cannot read the value from standard input: {e}")))?;
    let value = line.trim().to_owned();
    line.zeroize();
    if value.chars().count() < MIN_CHARS {
        return Err(Failure::usage(format!(
            "the value on standard input is shorter than {MIN_CHARS} characters; generate one with `openssl rand -hex 32`"
        )));
    }
    let secret = SecretString::from(value);
    let vault = open_vault(settings).await?;
    vault
        .put_credential(
            &NewCredential {
                name,
                kind: "workflow_secret",
                secret: &secret,
                owner: &KeyOwner::system(),
                scopes: &CredentialScopes::default(),
                account: None,
            },
            &CLI_ACTOR,
        )
        .await?;
    println!(
        "stored credential {name} (encrypted); workflows that declare it in permissions.credentials can use it"
    );
    Ok(())
}
