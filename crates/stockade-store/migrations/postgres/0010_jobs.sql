-- Durable jobs: one queue for workflow executions, backups and the NocoDB mirror.
-- A job is claimed under a lease (owner, expiry) and a fencing token that grows by one
-- on every claim; every commit on behalf of a job checks the token in its own
-- transaction, so a worker whose lease was taken over cannot commit over its successor.
CREATE TABLE jobs (
    id                   TEXT    PRIMARY KEY,
    kind                 TEXT    NOT NULL,
    dedup_key            TEXT,
    payload              TEXT    NOT NULL,
    state                TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    run_at_ms            BIGINT  NOT NULL,
    attempts             BIGINT  NOT NULL DEFAULT 0,
    max_attempts         BIGINT  NOT NULL,
    lease_owner          TEXT,
    lease_expires_at_ms  BIGINT,
    lease_token          BIGINT  NOT NULL DEFAULT 0,
    last_error           TEXT,
    created_at_ms        BIGINT  NOT NULL,
    updated_at_ms        BIGINT  NOT NULL,
    finished_at_ms       BIGINT,
    UNIQUE (kind, dedup_key)
);
CREATE INDEX jobs_queued ON jobs (run_at_ms, id) WHERE state = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_expires_at_ms) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at_ms) WHERE finished_at_ms IS NOT NULL;
-- Claims and heartbeats rewrite rows all the time: vacuum this table early, so dead
-- tuples do not pile up in it and its partial indexes (the SKIP LOCKED queue bloat).
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02);

-- The journal: one row per (job, step, attempt); `seq` numbers a job's step starts in
-- order. A step's output is JSON text, or opaque bytes the caller sealed (vault
-- ciphertext for outputs holding PII); error text is scrubbed by the caller before it
-- reaches this table.
CREATE TABLE job_steps (
    job_id          TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step_id         TEXT    NOT NULL,
    attempt         BIGINT  NOT NULL,
    seq             BIGINT  NOT NULL,
    lease_token     BIGINT  NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at_ms   BIGINT  NOT NULL,
    finished_at_ms  BIGINT,
    output          TEXT,
    output_sealed   BYTEA,
    error           TEXT,
    PRIMARY KEY (job_id, step_id, attempt)
);

-- Schedules fire once per tick: the first process to insert (schedule, tick) fires it.
CREATE TABLE schedule_ticks (
    schedule     TEXT    NOT NULL,
    tick_ms      BIGINT  NOT NULL,
    fired_at_ms  BIGINT  NOT NULL,
    job_id       TEXT,
    PRIMARY KEY (schedule, tick_ms)
);
