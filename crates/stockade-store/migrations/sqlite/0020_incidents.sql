-- Incident response (stockade-incident): incidents and drills, their timeline, the
-- notices sent to marketplaces and clients, and the controls every process obeys
-- (an isolated workflow or connection, the instance's lockdown). Free text here (title,
-- notes, root cause) is refused when it looks like an email, a phone number or a token.
CREATE TABLE incidents (
    id              INTEGER PRIMARY KEY,
    title           TEXT    NOT NULL,
    severity        TEXT    NOT NULL,  -- low | medium | high | critical
    drill           INTEGER NOT NULL,  -- 1: a drill (nothing real is revoked or locked)
    detected_at_ms  INTEGER NOT NULL,
    opened_at_ms    INTEGER NOT NULL,
    opened_by       TEXT    NOT NULL,
    closed_at_ms    INTEGER,
    closed_by       TEXT,
    root_cause      TEXT
);
CREATE TABLE incident_timeline (
    id              INTEGER PRIMARY KEY,
    incident_id     INTEGER NOT NULL REFERENCES incidents(id),
    at_ms           INTEGER NOT NULL,
    actor           TEXT    NOT NULL,
    step            TEXT    NOT NULL,  -- open | revoke | isolate | release | lockdown | note | notify | close
    target          TEXT    NOT NULL,  -- e.g. api_keys:all, workflow:NAME, '' for none
    detail          TEXT    NOT NULL,
    affected        INTEGER            -- how many things it touched (or would have, in a drill)
);
CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, id);
CREATE TABLE incident_notices (
    incident_id     INTEGER NOT NULL REFERENCES incidents(id),
    party           TEXT    NOT NULL,  -- amazon | tiktok | ebay | clients
    notified_at_ms  INTEGER NOT NULL,
    actor           TEXT    NOT NULL,
    note            TEXT    NOT NULL,
    PRIMARY KEY (incident_id, party)
);
-- One row per control in force; every server process reads them at least every second.
CREATE TABLE incident_controls (
    kind            TEXT    NOT NULL,  -- lockdown | workflow | connection
    name            TEXT    NOT NULL,  -- '' for lockdown
    drill           INTEGER NOT NULL,  -- drill rows are recorded, never enforced
    incident_id     INTEGER NOT NULL REFERENCES incidents(id),
    since_ms        INTEGER NOT NULL,
    actor           TEXT    NOT NULL,
    PRIMARY KEY (kind, name, drill)
);
