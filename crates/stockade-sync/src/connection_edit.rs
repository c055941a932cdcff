//! `connection edit`: change a connection's URLs, account or credentials in place,
//! keeping its orders, listings, data key and webhook path (no revocation). Audited as
//! `connection.edit` with the names of what changed, never a value.

use stockade_core::{Actor, SecretString};
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, sql_params};
use stockade_vault::{CredentialScopes, KeyOwner, NewCredential, Vault};

use crate::connections::{
    Connection, ConnectionStatus, check_fields, endpoint_kind, get, resolve_urls,
};
use crate::{Result, SyncError, now_ms};

/// What to change; `None` keeps the current value.
#[derive(Debug, Default)]
pub struct ConnectionEdit {
    pub account: Option<String>,
    /// A new API URL. Without a new `auth_url`, the auth URL is derived again (local
    /// sandbox) or must be given.
    pub api_url: Option<String>,
    pub auth_url: Option<String>,
    pub shop_cipher: Option<String>,
    pub marketplace_ids: Option<Vec<String>>,
    pub document_hosts: Option<Vec<String>>,
    pub endpoint_url: Option<String>,
    /// `Some(Some(pem))` trusts a sandbox CA (dev only), `Some(None)` stops trusting one.
    pub sandbox_ca: Option<Option<String>>,
    /// Credential fields to replace (the others are kept).
    pub secrets: Vec<(String, SecretString)>,
}

/// The outcome: the connection as now stored, what changed, and an operator note.
#[derive(Debug)]
pub struct Edited {
    pub connection: Connection,
    pub changed: Vec<&'static str>,
    pub credential_fields: Vec<String>,
    pub note: Option<String>,
}

const UPDATE_CONNECTION: &str =
    "UPDATE connections SET account = $1, settings = $2, endpoint = $3, updated_at_ms = $4
     WHERE name = $5 AND status <> 'revoked'";

/// Apply `edit` to the connection `name`. Everything is checked before anything is
/// written; a refusal changes nothing.
pub async fn edit(
    vault: &Vault,
    name: &str,
    edit: ConnectionEdit,
    actor: &Actor,
) -> Result<Edited> {
    let store = vault.store();
    let current = get(store, name).await?;
    if current.status == ConnectionStatus::Revoked {
        return Err(SyncError::Invalid(format!(
            "connection {name:?} was revoked and purged; add a new connection after the seller authorizes again"
        )));
    }
    let mut s = current.settings.clone();
    let mut account = current.account.clone();
    let mut changed: Vec<&'static str> = Vec::new();
    if let Some(a) = edit.account {
        if a.trim().is_empty() || a.len() > 200 {
            return Err(SyncError::Invalid(
                "the seller account id (shop id, seller id or eBay user) must not be empty".into(),
            ));
        }
        account = a;
        changed.push("account");
    }
    if let Some(url) = edit.api_url {
        s.api_url = url;
        changed.push("api_url");
        if edit.auth_url.is_none() {
            // Derived again from the new API URL (or refused when it cannot be).
            s.auth_url = None;
        }
    }
    if let Some(url) = edit.auth_url {
        s.auth_url = Some(url);
        changed.push("auth_url");
    }
    if let Some(c) = edit.shop_cipher {
        s.shop_cipher = Some(c);
        changed.push("shop_cipher");
    }
    if let Some(ids) = edit.marketplace_ids {
        s.marketplace_ids = ids;
        changed.push("marketplace_ids");
    }
    if let Some(hosts) = edit.document_hosts {
        s.document_hosts = hosts;
        changed.push("document_hosts");
    }
    if let Some(url) = edit.endpoint_url {
        s.endpoint_url = Some(url);
        changed.push("endpoint_url");
    }
    if let Some(ca) = edit.sandbox_ca {
        s.sandbox_ca = ca;
        changed.push("sandbox_ca");
    }
    check_fields(name, current.marketplace, &edit.secrets, false)?;
    if changed.is_empty() && edit.secrets.is_empty() {
        return Err(SyncError::Invalid(
            "nothing to change: give a new URL, account, setting or credentials".into(),
        ));
    }
    let note = resolve_urls(store.environment(), current.marketplace, &mut s)?;
    let kind = endpoint_kind(current.marketplace, &s.api_url)?;
    s.revision = s.revision.wrapping_add(1);
    let settings = serde_json::to_string(&s).map_err(|_| SyncError::Invalid("settings".into()))?;

    let owner = KeyOwner::connection(name)?;
    let scopes = CredentialScopes::default();
    for (field, secret) in &edit.secrets {
        let cred = stockade_marketplaces::creds::credential_name(name, field);
        vault
            .put_credential(
                &NewCredential {
                    name: &cred,
                    kind: field,
                    secret,
                    owner: &owner,
                    scopes: &scopes,
                    account: None,
                },
                actor,
            )
            .await?;
    }
    let credential_fields: Vec<String> = edit.secrets.iter().map(|(f, _)| f.clone()).collect();
    store
        .commit(
            actor,
            vec![Change::new(
                Mutation::Sql {
                    statement: UPDATE_CONNECTION,
                    params: sql_params![account.as_str(), settings, kind.as_str(), now_ms(), name],
                    expect: Expect::One("connection not revoked"),
                },
                AuditEntry::new(
                    "connection.edit",
                    format!("connection:{name}"),
                    AuditDetails::new().list("settings", &changed).list(
                        "credential_fields",
                        &credential_fields
                            .iter()
                            .map(String::as_str)
                            .collect::<Vec<_>>(),
                    ),
                ),
            )],
        )
        .await?;
    // Every process re-reads its connections now (PostgreSQL NOTIFY), not at its next refresh.
    store.wake(stockade_store::Topic::Connections).await;
    Ok(Edited {
        connection: get(store, name).await?,
        changed,
        credential_fields,
        note,
    })
}
