-- Scale-out (stockade-store `lease`): named leases with fencing tokens, and the live
-- processes that share one database. A lease row names what is owned (for example
-- `connection:42`); its holder is a process id from `processes`; `token` grows by one
-- every time a new holder takes it, so a commit made on the lease's behalf can be
-- refused once another process took over. Expiry times are read and written on the
-- database's clock. Bookkeeping, not data: written outside the audit chain.
CREATE TABLE leases (
    name            TEXT    PRIMARY KEY,
    holder          TEXT,
    token           INTEGER  NOT NULL,
    expires_at_ms   INTEGER  NOT NULL,
    acquired_at_ms  INTEGER  NOT NULL
);
CREATE INDEX leases_holder ON leases(holder);
-- One row per running process: its role (all | api | worker) and its heartbeat. A
-- process whose row expired is gone; the others rebalance what it held.
CREATE TABLE processes (
    id               TEXT    PRIMARY KEY,
    role             TEXT    NOT NULL,
    version          TEXT    NOT NULL,
    started_at_ms    INTEGER  NOT NULL,
    heartbeat_at_ms  INTEGER  NOT NULL,
    expires_at_ms    INTEGER  NOT NULL
);
