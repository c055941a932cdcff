-- The event stream: each subscriber of `events` (the alert router; workflow triggers
-- next) keeps its position here and moves it in the same transaction as the effects of
-- the events it handled, so none is lost or handled twice across a restart.
CREATE TABLE event_cursors (
    subscriber     TEXT    PRIMARY KEY,
    last_id        BIGINT  NOT NULL,
    updated_at_ms  BIGINT  NOT NULL
);
-- The alert router resumes before the first event it has not routed.
INSERT INTO event_cursors (subscriber, last_id, updated_at_ms)
SELECT 'alerts',
       COALESCE((SELECT MIN(id) - 1 FROM events WHERE delivered_at_ms IS NULL),
                (SELECT MAX(id) FROM events), 0),
       CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT);

-- An event's id is its stream position, so ids must become visible in ascending order:
-- a subscriber that has read id 11 never sees an id 10 commit later. The id is drawn
-- under a transaction-scoped advisory lock ("stockade" events), held until COMMIT, so
-- transactions that append events commit in id order. (The audit chain's lock is taken
-- after a transaction's data mutations, so the two are always taken in this order.)
CREATE FUNCTION events_in_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(91621572168451);
    NEW.id := nextval(pg_get_serial_sequence('events', 'id'));
    RETURN NEW;
END;
$$;
CREATE TRIGGER events_in_commit_order BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_in_commit_order();
