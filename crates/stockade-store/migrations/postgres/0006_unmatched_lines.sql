-- Orders before the catalog: an order line whose SKU is not in the catalog when it
-- arrives is stored as an unmatched line (unmatched_since_ms set) and raised as an
-- `unmatched_sku` event for the alert pipeline. `stockade sku import` of that SKU
-- reserves the line at once (if its order is still open) and clears the mark.
ALTER TABLE order_lines ADD COLUMN unmatched_since_ms BIGINT;
CREATE INDEX order_lines_sku ON order_lines(sku);
CREATE INDEX order_lines_unmatched ON order_lines(sku) WHERE unmatched_since_ms IS NOT NULL;
-- Lines stored before this migration whose SKU is still unknown are unmatched from now.
UPDATE order_lines SET unmatched_since_ms = CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)
 WHERE NOT EXISTS (SELECT 1 FROM skus s WHERE s.sku = order_lines.sku);

CREATE FUNCTION order_lines_unmatched() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
    SELECT NEW.unmatched_since_ms, 'sync', 'unmatched_sku', 'connection:' || c.name, '', '', 'order.ingest', NULL,
           json_build_object('connection', c.name, 'order', NEW.external_id, 'sku', NEW.sku,
                             'units', NEW.quantity)::text
      FROM connections c WHERE c.id = NEW.connection_id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER order_lines_unmatched AFTER INSERT ON order_lines
    FOR EACH ROW WHEN (NEW.unmatched_since_ms IS NOT NULL)
    EXECUTE FUNCTION order_lines_unmatched();
