-- `stock low`: a SKU's available stock (on_hand - reserved) crossed down to the low-stock
-- threshold (`stockade_meta` key `sync.low_stock_threshold`, written from `[sync]
-- low_stock_threshold` when the sync engine starts; 5 if unset). Written by the statement
-- that changed the stock, so it is in the same commit, and only on the crossing: OLD and
-- NEW are the values before and after that statement, so a stock that stays low raises
-- nothing more until it rises above the threshold and falls again. The columns are the
-- ones `Event::StockLow` writes (stockade-core `event`).
CREATE TRIGGER skus_low_stock AFTER UPDATE OF on_hand, reserved ON skus
WHEN NEW.on_hand - NEW.reserved < OLD.on_hand - OLD.reserved
BEGIN
    INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
    SELECT NEW.updated_at_ms, 'stock', 'low', 'sku:' || NEW.sku, '', '', 'stock', NULL,
           json_object('available', NEW.on_hand - NEW.reserved, 'sku', NEW.sku, 'threshold', t.threshold)
      FROM (SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM stockade_meta WHERE key = 'sync.low_stock_threshold'), 5) AS threshold) t
     WHERE OLD.on_hand - OLD.reserved > t.threshold AND NEW.on_hand - NEW.reserved <= t.threshold;
END;
