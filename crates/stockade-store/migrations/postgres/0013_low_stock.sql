-- `stock low`: a SKU's available stock (on_hand - reserved) crossed down to the low-stock
-- threshold (`stockade_meta` key `sync.low_stock_threshold`, written from `[sync]
-- low_stock_threshold` when the sync engine starts; 5 if unset). Written by the statement
-- that changed the stock, so it is in the same commit, and only on the crossing: OLD and
-- NEW are the values before and after that statement, so a stock that stays low raises
-- nothing more until it rises above the threshold and falls again. The columns are the
-- ones `Event::StockLow` writes (stockade-core `event`).
CREATE FUNCTION skus_low_stock() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    threshold BIGINT;
BEGIN
    SELECT COALESCE((SELECT CAST(value AS BIGINT) FROM stockade_meta WHERE key = 'sync.low_stock_threshold'), 5)
      INTO threshold;
    IF OLD.on_hand - OLD.reserved > threshold AND NEW.on_hand - NEW.reserved <= threshold THEN
        INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
        VALUES (NEW.updated_at_ms, 'stock', 'low', 'sku:' || NEW.sku, '', '', 'stock', NULL,
                json_build_object('available', NEW.on_hand - NEW.reserved, 'sku', NEW.sku, 'threshold', threshold)::text);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER skus_low_stock AFTER UPDATE OF on_hand, reserved ON skus
    FOR EACH ROW WHEN (NEW.on_hand - NEW.reserved < OLD.on_hand - OLD.reserved)
    EXECUTE FUNCTION skus_low_stock();
