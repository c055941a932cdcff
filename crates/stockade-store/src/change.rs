//! Audited changes: the only way to modify data through a [`crate::Store`].
//!
//! A [`Change`] pairs one [`Mutation`] with the [`AuditEntry`] that records it, and
//! [`crate::Store::commit`] writes all mutations of a commit and their audit rows in one
//! transaction. There is no other write path, so an unaudited write cannot be expressed;
//! if the audit row cannot be written, the mutation is rolled back with it (fail closed).

use serde_json::{Map, Value};

/// A data modification. New kinds of data add variants here, with their SQL in each
/// backend; the exhaustive `match` in both backends keeps them in step.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Nothing but the audit row itself (a security event, a login, an export).
    None,
    /// Set an instance metadata value.
    SetMeta { key: String, value: String },
    /// Record a new master key version by its fingerprint.
    AddMasterKey { version: i64, fingerprint: String },
    /// Mark a master key version retired (no data key is wrapped under it any more).
    RetireMasterKey { version: i64 },
    /// Store a new wrapped data key.
    AddDataKey {
        id: i64,
        owner: String,
        master_version: i64,
        wrapped: Vec<u8>,
    },
    /// Replace a data key's wrapping, only if it is still wrapped under `from_version`.
    RewrapDataKey {
        id: i64,
        from_version: i64,
        to_version: i64,
        wrapped: Vec<u8>,
    },
    /// Crypto-shred: erase the wrapped key, keep a tombstone row.
    DestroyDataKey { id: i64 },
    /// Insert or replace an encrypted credential.
    PutCredential {
        name: String,
        kind: String,
        key_id: i64,
        ciphertext: Vec<u8>,
        scopes: String,
        account_tag: Option<String>,
    },
    /// Delete a credential.
    DeleteCredential { name: String },
    /// A statement on a table added after the foundation (see [`crate::sql`]): static
    /// SQL text valid on both backends, typed parameters, and how many rows it must touch.
    Sql {
        statement: &'static str,
        params: Vec<crate::sql::SqlValue>,
        expect: crate::sql::Expect,
    },
    /// Several statements recorded by one audit row, in order. With `guard`, the first
    /// step must be a [`Mutation::Sql`]; when it touches no row the whole change is a
    /// no-op: the other steps are skipped and no audit row is written. That is how a
    /// replayed or stale event changes nothing, not even the audit log.
    Many { steps: Vec<Mutation>, guard: bool },
    /// One row of a multi-row statement (see [`crate::rows`]): on SQLite the statement's
    /// per-row SQL, on PostgreSQL one statement for the rows of every change of the run.
    /// As the guard of a [`Mutation::Many`], it applied when the row was written.
    Row {
        statement: &'static crate::rows::RowStatement,
        params: Vec<crate::sql::SqlValue>,
    },
}

/// Details written on an audit row: a JSON object with sorted keys.
///
/// Only ids, counts, names of things and `hmac-sha256:` tags belong here, never a PII
/// value or a secret. The builder takes `&str` and numbers; PII enters only as a tag the
/// vault computed (`stockade_vault::PiiTag` renders to `hmac-sha256:…`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditDetails(Map<String, Value>);

impl AuditDetails {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn str(mut self, key: &str, value: &str) -> Self {
        self.0
            .insert(key.to_owned(), Value::String(value.to_owned()));
        self
    }

    pub fn int(mut self, key: &str, value: i64) -> Self {
        self.0.insert(key.to_owned(), Value::from(value));
        self
    }

    pub fn bool(mut self, key: &str, value: bool) -> Self {
        self.0.insert(key.to_owned(), Value::Bool(value));
        self
    }

    pub fn list(mut self, key: &str, values: &[&str]) -> Self {
        self.0.insert(key.to_owned(), Value::from(values.to_vec()));
        self
    }

    /// Canonical JSON text (serde_json's map keeps keys sorted).
    pub fn to_canonical_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }
}

/// What the audit row for a change says: an action (`key.rotate`), the resource it
/// touched (`data_key:42`) and PII-free details.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub action: String,
    pub resource: String,
    pub details: AuditDetails,
    /// The author of this change when it is not the commit's (`kind:id`, see
    /// [`Change::by`]); `None`: the commit's actor.
    pub actor: Option<String>,
}

impl AuditEntry {
    pub fn new(action: &str, resource: impl Into<String>, details: AuditDetails) -> Self {
        AuditEntry {
            action: action.to_owned(),
            resource: resource.into(),
            details,
            actor: None,
        }
    }
}

/// One mutation and its audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub mutation: Mutation,
    pub audit: AuditEntry,
}

impl Change {
    pub fn new(mutation: Mutation, audit: AuditEntry) -> Self {
        Change { mutation, audit }
    }

    /// This change made by `actor` rather than by the commit's actor: its audit row
    /// names `actor`. One commit can then hold the changes of several authors (a
    /// webhook's enqueue by its API key and the workflow steps it ran) and stay one
    /// transaction.
    pub fn by(mut self, actor: &stockade_core::Actor) -> Self {
        self.audit.actor = Some(actor.to_string());
        self
    }

    /// An audit-only change (a security event with no data modification).
    pub fn event(audit: AuditEntry) -> Self {
        Change {
            mutation: Mutation::None,
            audit,
        }
    }
}

/// The audit rows a commit wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitReceipt {
    pub first_seq: i64,
    pub last_seq: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_canonical_with_sorted_keys() {
        let d = AuditDetails::new()
            .str("zeta", "z")
            .int("alpha", 1)
            .bool("mid", true);
        assert_eq!(
            d.to_canonical_json(),
            r#"{"alpha":1,"mid":true,"zeta":"z"}"#
        );
    }
}
