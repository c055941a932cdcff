-- A low-stock threshold per SKU: `skus.low_stock_threshold` (NULL: the global one,
-- `stockade_meta` key `sync.low_stock_threshold`, 5 if unset). Set by `stockade sku
-- threshold` and the catalog CSV's `low_stock_threshold` column. The `stock low` trigger
-- of 0013 is replaced by one that reads the SKU's own threshold first; otherwise it is
-- unchanged (fires only on the crossing, in the statement's commit).
ALTER TABLE skus ADD COLUMN low_stock_threshold INTEGER;
DROP TRIGGER skus_low_stock;
CREATE TRIGGER skus_low_stock AFTER UPDATE OF on_hand, reserved ON skus
WHEN NEW.on_hand - NEW.reserved < OLD.on_hand - OLD.reserved
BEGIN
    INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
    SELECT NEW.updated_at_ms, 'stock', 'low', 'sku:' || NEW.sku, '', '', 'stock', NULL,
           json_object('available', NEW.on_hand - NEW.reserved, 'sku', NEW.sku, 'threshold', t.threshold)
      FROM (SELECT COALESCE(NEW.low_stock_threshold,
                            (SELECT CAST(value AS INTEGER) FROM stockade_meta WHERE key = 'sync.low_stock_threshold'),
                            5) AS threshold) t
     WHERE OLD.on_hand - OLD.reserved > t.threshold AND NEW.on_hand - NEW.reserved <= t.threshold;
END;
