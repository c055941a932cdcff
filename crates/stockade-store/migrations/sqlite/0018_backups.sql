-- Backups, keyring exports, restores and restore drills this instance ran (`stockade
-- backup list`, compliance evidence). One row per run, written when it ends. Paths are
-- the operator's own; rows hold sizes, hashes and counts, never contents or keys.
CREATE TABLE backups (
    id              INTEGER PRIMARY KEY,
    created_at_ms   INTEGER NOT NULL,
    operation       TEXT    NOT NULL,  -- create | keyring | restore | drill
    trigger_kind    TEXT    NOT NULL,  -- cli | schedule
    path            TEXT    NOT NULL,
    bytes           INTEGER,
    sha256          TEXT,
    env             TEXT    NOT NULL,
    kind            TEXT    NOT NULL,  -- x25519 | passphrase
    status          TEXT    NOT NULL,  -- ok | failed
    error           TEXT,
    details         TEXT
);
CREATE INDEX backups_operation_time ON backups (operation, created_at_ms);
