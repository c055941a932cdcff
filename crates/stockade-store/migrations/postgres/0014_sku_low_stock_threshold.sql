-- A low-stock threshold per SKU: `skus.low_stock_threshold` (NULL: the global one,
-- `stockade_meta` key `sync.low_stock_threshold`, 5 if unset). Set by `stockade sku
-- threshold` and the catalog CSV's `low_stock_threshold` column. The `stock low` trigger
-- function of 0013 is replaced by one that reads the SKU's own threshold first; otherwise
-- it is unchanged (fires only on the crossing, in the statement's commit).
ALTER TABLE skus ADD COLUMN low_stock_threshold BIGINT;
CREATE OR REPLACE FUNCTION skus_low_stock() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    threshold BIGINT;
BEGIN
    SELECT COALESCE(NEW.low_stock_threshold,
                    (SELECT CAST(value AS BIGINT) FROM stockade_meta WHERE key = 'sync.low_stock_threshold'),
                    5)
      INTO threshold;
    IF OLD.on_hand - OLD.reserved > threshold AND NEW.on_hand - NEW.reserved <= threshold THEN
        INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
        VALUES (NEW.updated_at_ms, 'stock', 'low', 'sku:' || NEW.sku, '', '', 'stock', NULL,
                json_build_object('available', NEW.on_hand - NEW.reserved, 'sku', NEW.sku, 'threshold', threshold)::text);
    END IF;
    RETURN NULL;
END;
$$;
