//! Reading connection credentials from the vault's credential store.
//!
//! Credential names are `connection/<connection>/<field>`, e.g.
//! `connection/shop-eu/refresh_token`.

use stockade_core::SecretString;
use stockade_vault::{Vault, VaultError};

/// The credential name of one field of a connection.
pub fn credential_name(connection: &str, field: &str) -> String {
    format!("connection/{connection}/{field}")
}

/// A required field.
pub async fn read(
    vault: &Vault,
    connection: &str,
    field: &str,
) -> Result<SecretString, VaultError> {
    vault
        .reveal_credential(&credential_name(connection, field))
        .await
}

/// A non-secret required field (an app key or client id), exposed as plain text.
pub async fn read_plain(
    vault: &Vault,
    connection: &str,
    field: &str,
) -> Result<String, VaultError> {
    Ok(read(vault, connection, field)
        .await?
        .expose_secret()
        .clone())
}

/// An optional field: `None` when no credential of that name exists.
pub async fn read_optional(
    vault: &Vault,
    connection: &str,
    field: &str,
) -> Result<Option<SecretString>, VaultError> {
    let name = credential_name(connection, field);
    let exists = vault
        .list_credentials()
        .await?
        .iter()
        .any(|c| c.name == name);
    if !exists {
        return Ok(None);
    }
    Ok(Some(vault.reveal_credential(&name).await?))
}
