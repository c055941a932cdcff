-- PostgreSQL: what a stock move does to listings and `stock low` events, once per
-- statement. Since 0022 a batch's ledger rows update each SKU once, but every updated SKU
-- row still ran two row triggers (`skus_retarget` of 0004, `skus_low_stock` of
-- 0013/0014): a PL/pgSQL call and its statements per SKU, most of an ingest commit's time
-- in the database while it held the batch's stock locks. One statement-level trigger now
-- reads the statement's old and new SKU rows (transition tables) and:
--   1. retargets, in one UPDATE, every listing of the SKUs whose available stock
--      (on_hand - reserved) changed, exactly as `skus_retarget` did per SKU;
--   2. raises `stock low` for each SKU whose available stock fell across its threshold
--      (its own, else the global one, else 5), exactly as `skus_low_stock` did, in SKU
--      order.
-- A statement-level trigger with transition tables cannot name columns, so it fires on
-- every UPDATE of `skus` (and on the update half of an upsert); one that moves no stock
-- finds nothing to do.
DROP TRIGGER skus_retarget ON skus;
DROP FUNCTION skus_retarget();
DROP TRIGGER skus_low_stock ON skus;
DROP FUNCTION skus_low_stock();

CREATE FUNCTION skus_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE listings l
       SET target_qty = GREATEST(0, LEAST(n.on_hand - n.reserved - l.buffer, COALESCE(l.max_displayed, 2147483647))),
           target_version = l.target_version + 1
      FROM moved_after n JOIN moved_before o ON o.sku = n.sku
     WHERE l.sku = n.sku
       AND n.on_hand - n.reserved <> o.on_hand - o.reserved
       AND l.target_qty <> GREATEST(0, LEAST(n.on_hand - n.reserved - l.buffer, COALESCE(l.max_displayed, 2147483647)));
    INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
    SELECT n.updated_at_ms, 'stock', 'low', 'sku:' || n.sku, '', '', 'stock', NULL,
           json_build_object('available', n.on_hand - n.reserved, 'sku', n.sku, 'threshold', t.threshold)::text
      FROM moved_after n JOIN moved_before o ON o.sku = n.sku
     CROSS JOIN LATERAL (
           SELECT COALESCE(n.low_stock_threshold,
                           (SELECT CAST(value AS BIGINT) FROM stockade_meta WHERE key = 'sync.low_stock_threshold'),
                           5) AS threshold) t
     WHERE n.on_hand - n.reserved < o.on_hand - o.reserved
       AND o.on_hand - o.reserved > t.threshold
       AND n.on_hand - n.reserved <= t.threshold
     ORDER BY n.sku;
    RETURN NULL;
END;
$$;
CREATE TRIGGER skus_moved AFTER UPDATE ON skus
    REFERENCING OLD TABLE AS moved_before NEW TABLE AS moved_after
    FOR EACH STATEMENT EXECUTE FUNCTION skus_moved();
