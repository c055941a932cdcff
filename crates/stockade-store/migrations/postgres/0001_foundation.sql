-- Foundation: instance metadata, the keyring, the credential store and the audit chain.
CREATE TABLE stockade_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE keyring_master (
    version        BIGINT PRIMARY KEY,
    fingerprint    TEXT   NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    retired_at_ms  BIGINT
);

CREATE TABLE keyring_data_keys (
    id               BIGINT PRIMARY KEY,
    owner            TEXT   NOT NULL,
    master_version   BIGINT REFERENCES keyring_master(version),
    wrapped          BYTEA,
    created_at_ms    BIGINT NOT NULL,
    destroyed_at_ms  BIGINT
);
CREATE UNIQUE INDEX keyring_data_keys_live_owner ON keyring_data_keys(owner) WHERE destroyed_at_ms IS NULL;

CREATE TABLE credentials (
    name           TEXT   PRIMARY KEY,
    kind           TEXT   NOT NULL,
    key_id         BIGINT NOT NULL REFERENCES keyring_data_keys(id),
    ciphertext     BYTEA  NOT NULL,
    scopes         TEXT   NOT NULL,
    account_tag    TEXT,
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

CREATE TABLE audit (
    seq        BIGINT PRIMARY KEY,
    ts_ms      BIGINT NOT NULL,
    env        TEXT   NOT NULL,
    actor      TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    resource   TEXT   NOT NULL,
    details    TEXT   NOT NULL,
    prev_hash  BYTEA  NOT NULL,
    hash       BYTEA  NOT NULL
);
