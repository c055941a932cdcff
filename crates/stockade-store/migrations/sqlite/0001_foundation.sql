-- Foundation: instance metadata, the keyring, the credential store and the audit chain.
CREATE TABLE stockade_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Master key versions: only a fingerprint (HMAC of a fixed label) is stored, never the key.
CREATE TABLE keyring_master (
    version        INTEGER PRIMARY KEY,
    fingerprint    TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    retired_at_ms  INTEGER
);

-- Data keys, wrapped under a master key version. A destroyed key keeps its row as a
-- tombstone (wrapped = NULL) so its ciphertexts fail with "destroyed", not "unknown".
CREATE TABLE keyring_data_keys (
    id               INTEGER PRIMARY KEY,
    owner            TEXT    NOT NULL,
    master_version   INTEGER REFERENCES keyring_master(version),
    wrapped          BLOB,
    created_at_ms    INTEGER NOT NULL,
    destroyed_at_ms  INTEGER
);
CREATE UNIQUE INDEX keyring_data_keys_live_owner ON keyring_data_keys(owner) WHERE destroyed_at_ms IS NULL;

CREATE TABLE credentials (
    name           TEXT    PRIMARY KEY,
    kind           TEXT    NOT NULL,
    key_id         INTEGER NOT NULL REFERENCES keyring_data_keys(id),
    ciphertext     BLOB    NOT NULL,
    scopes         TEXT    NOT NULL,
    account_tag    TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);

-- The audit chain. hash = SHA-256 over the canonical encoding of this row and prev_hash
-- (see stockade-store/src/audit.rs). Rows hold no PII.
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,
    ts_ms      INTEGER NOT NULL,
    env        TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    resource   TEXT    NOT NULL,
    details    TEXT    NOT NULL,
    prev_hash  BLOB    NOT NULL,
    hash       BLOB    NOT NULL
);
