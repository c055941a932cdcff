-- Reviewed workflow definitions: one row per workflow name, one row per applied version.
-- A version is stored exactly as applied (content, its SHA-256) with the linter's verdict.
-- It is `active` (at most one per workflow), `pending` (prod: waiting for a second
-- person's approval), `superseded` (was active, replaced) or `rejected` (lint failed; it
-- never runs). `applied_by` and `approved_by` are actors (`user:usr_…`, `system:cli`).
CREATE TABLE workflows (
    name            TEXT    PRIMARY KEY,
    enabled         BIGINT  NOT NULL DEFAULT 1,
    active_version  BIGINT,
    latest_version  BIGINT  NOT NULL DEFAULT 0,
    created_at_ms   BIGINT  NOT NULL,
    updated_at_ms   BIGINT  NOT NULL
);

CREATE TABLE workflow_versions (
    name            TEXT    NOT NULL REFERENCES workflows (name),
    version         BIGINT  NOT NULL,
    content         TEXT    NOT NULL,
    content_sha256  TEXT    NOT NULL,
    lint_passed     BIGINT  NOT NULL,
    lint_problems   BIGINT  NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'active', 'superseded', 'rejected')),
    applied_by      TEXT    NOT NULL,
    applied_at_ms   BIGINT  NOT NULL,
    approved_by     TEXT,
    approved_at_ms  BIGINT,
    PRIMARY KEY (name, version),
    CHECK (state <> 'active' OR lint_passed = 1),
    CHECK (approved_by IS NULL OR approved_by <> applied_by)
);
CREATE UNIQUE INDEX workflow_versions_one_active ON workflow_versions (name) WHERE state = 'active';
