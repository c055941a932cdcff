//! The credential store: marketplace tokens, app secrets, bot secrets.
//!
//! A credential is encrypted under its owner's data key (table `credentials`, column
//! `secret`, row id = its name), scoped to the workflows and hosts allowed to use it,
//! and never returned in plain text by any listing. Only [`Vault::reveal_credential`]
//! decrypts it, for injection into an outbound request at egress time.

use serde_json::json;
use stockade_core::{Actor, Pii, SecretString};
use stockade_store::{AuditDetails, AuditEntry, Change, Mutation};

use crate::cipher::FieldContext;
use crate::keyring::{KeyOwner, Vault};
use crate::{Result, VaultError};

/// Which workflows and hosts may use a credential. Empty lists mean nobody: default deny.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialScopes {
    pub workflows: Vec<String>,
    pub hosts: Vec<String>,
}

impl CredentialScopes {
    fn to_json(&self) -> String {
        json!({ "hosts": self.hosts, "workflows": self.workflows }).to_string()
    }

    fn from_json(text: &str) -> Self {
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let list = |k: &str| {
            v.get(k)
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        CredentialScopes {
            workflows: list("workflows"),
            hosts: list("hosts"),
        }
    }
}

/// What `put_credential` stores.
#[derive(Debug, Clone, Copy)]
pub struct NewCredential<'a> {
    /// Unique name, e.g. `amazon-eu/lwa`; bound into the ciphertext as its row id.
    pub name: &'a str,
    /// What the secret is, e.g. `lwa_refresh_token`.
    pub kind: &'a str,
    pub secret: &'a SecretString,
    /// Whose data key encrypts it; shredding the owner destroys it.
    pub owner: &'a KeyOwner,
    pub scopes: &'a CredentialScopes,
    /// The account it belongs to (PII): stored only as a tag.
    pub account: Option<&'a Pii<String>>,
}

/// A credential as listings show it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialInfo {
    pub name: String,
    pub kind: String,
    pub key_id: i64,
    pub scopes: CredentialScopes,
    /// Tag of the account the credential belongs to (e.g. the seller's login), if given.
    pub account_tag: Option<String>,
    pub updated_at_ms: i64,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
}

const TABLE: &str = "credentials";
const COLUMN: &str = "secret";

impl Vault {
    /// Store (or replace) a credential, encrypted under its owner's data key, audited.
    pub async fn put_credential(&self, new: &NewCredential<'_>, actor: &Actor) -> Result<()> {
        let NewCredential {
            name,
            kind,
            secret,
            owner,
            scopes,
            account,
        } = *new;
        if !valid_name(name) || !valid_name(kind) {
            return Err(VaultError::BadCredential(
                "names and kinds use letters, digits and - _ . : / (at most 100)".into(),
            ));
        }
        if secret.expose_secret().is_empty() {
            return Err(VaultError::BadCredential("the secret is empty".into()));
        }
        let key = self.data_key_for(owner, actor).await?;
        let ciphertext = key.seal_field(
            &FieldContext::new(TABLE, COLUMN, name),
            secret.expose_secret().as_bytes(),
        )?;
        let account_tag = account.map(|a| self.pii_tag(a).to_string());
        let mut details = AuditDetails::new()
            .str("kind", kind)
            .str("owner", owner.as_str())
            .list(
                "hosts",
                &scopes.hosts.iter().map(String::as_str).collect::<Vec<_>>(),
            )
            .list(
                "workflows",
                &scopes
                    .workflows
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            );
        if let Some(tag) = &account_tag {
            details = details.str("account", tag);
        }
        let change = Change::new(
            Mutation::PutCredential {
                name: name.to_owned(),
                kind: kind.to_owned(),
                key_id: key.id(),
                ciphertext,
                scopes: scopes.to_json(),
                account_tag,
            },
            AuditEntry::new("credential.put", format!("credential:{name}"), details),
        );
        self.store().commit(actor, vec![change]).await?;
        // Every process rebuilds the connections that use it now, not at its next read.
        self.store().wake(stockade_store::Topic::Credentials).await;
        Ok(())
    }

    /// Credentials without their secrets.
    pub async fn list_credentials(&self) -> Result<Vec<CredentialInfo>> {
        Ok(self
            .store()
            .credentials()
            .await?
            .into_iter()
            .map(|c| CredentialInfo {
                scopes: CredentialScopes::from_json(&c.scopes),
                name: c.name,
                kind: c.kind,
                key_id: c.key_id,
                account_tag: c.account_tag,
                updated_at_ms: c.updated_at_ms,
            })
            .collect())
    }

    /// Decrypt a credential for use. Only egress (injecting it into a request) and tests
    /// call this; no API returns its result.
    pub async fn reveal_credential(&self, name: &str) -> Result<SecretString> {
        let rec = self.store().credential(name).await?.ok_or_else(|| {
            VaultError::Store(stockade_store::StoreError::NotFound(format!(
                "credential {name:?}"
            )))
        })?;
        let plain = self
            .decrypt(
                &FieldContext::new(TABLE, COLUMN, &rec.name),
                &rec.ciphertext,
            )
            .await?;
        Ok(SecretString::from(crate::keyring::utf8_or_wipe(
            plain.to_vec(),
        )?))
    }

    /// Delete a credential, audited.
    pub async fn delete_credential(&self, name: &str, actor: &Actor) -> Result<()> {
        let change = Change::new(
            Mutation::DeleteCredential {
                name: name.to_owned(),
            },
            AuditEntry::new(
                "credential.delete",
                format!("credential:{name}"),
                AuditDetails::new(),
            ),
        );
        self.store().commit(actor, vec![change]).await?;
        // Every process rebuilds the connections that use it now, not at its next read.
        self.store().wake(stockade_store::Topic::Credentials).await;
        Ok(())
    }
}
