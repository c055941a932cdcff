-- Operating workflow executions: which workflow a job runs (set at enqueue from the
-- payload's "workflow", so listings need not scan payload text), when its first claim
-- started it (a whole-execution timeout counts from there, across resumes), and the
-- concurrency group it was admitted to (a running job with a key holds a slot).
ALTER TABLE jobs ADD COLUMN workflow TEXT;
ALTER TABLE jobs ADD COLUMN started_at_ms INTEGER;
ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;
-- Executions queued before this version: their workflow from the payload (JSON text the
-- store wrote itself).
UPDATE jobs SET workflow = json_extract(payload, '$.workflow') WHERE kind = 'workflow';
UPDATE jobs SET started_at_ms = (SELECT MIN(s.started_at_ms) FROM job_steps s WHERE s.job_id = jobs.id)
 WHERE attempts > 0;
CREATE INDEX jobs_workflow ON jobs (workflow, created_at_ms) WHERE workflow IS NOT NULL;
CREATE INDEX jobs_concurrency ON jobs (concurrency_key) WHERE concurrency_key IS NOT NULL AND state = 'running';

-- One row per concurrency key: admission locks it (an upsert) so that, on PostgreSQL,
-- two processes admitting jobs of one key take turns and each counts the other's
-- admission. SQLite serialises writers anyway.
CREATE TABLE job_concurrency (
    key            TEXT    PRIMARY KEY,
    touched_at_ms  INTEGER NOT NULL
);
