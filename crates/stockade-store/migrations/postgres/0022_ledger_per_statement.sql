-- Stock moves once per statement (PostgreSQL). A batch of orders writes its ledger rows
-- with one multi-row INSERT; the row trigger of 0004 then updated the SKU once per row
-- (and, through `skus_retarget`, every listing of it), tens of updates of the same rows
-- per batch while every other ingest waited on their locks. Now one statement-level
-- trigger reads the statement's new rows (a transition table) and:
--   1. locks the SKU rows it moves in SKU order (the order every writer takes them in);
--   2. finds the oversells exactly as the row trigger did, row by row in ledger order:
--      after each reservation, reserved - on_hand of its SKU (the stock before the
--      statement plus the running sum of the statement's rows) over zero is short,
--      at most the reservation's units; the order is flagged and an `oversell` event
--      raised per row, as before;
--   3. updates each SKU once with the sums of its rows (`updated_at_ms` from its last
--      row), so `skus_retarget` and `skus_low_stock` fire once per SKU per statement.
-- What differs from per-row application: a listing's target_version grows once per
-- statement, not once per row (a version is only compared, never counted), and a
-- `stock low` event carries the available stock after the statement.
DROP TRIGGER stock_ledger_apply ON stock_ledger;
DROP FUNCTION stock_ledger_apply();

CREATE FUNCTION stock_ledger_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM skus WHERE sku IN (SELECT sku FROM moved) ORDER BY sku FOR NO KEY UPDATE;
    WITH r AS (
        SELECT m.id, m.sku, m.connection_id, m.external_id, m.movement, m.reserved_delta, m.at_ms,
               (s.reserved - s.on_hand)
                 + SUM(m.reserved_delta - m.on_hand_delta) OVER (PARTITION BY m.sku ORDER BY m.id) AS short
          FROM moved m JOIN skus s ON s.sku = m.sku
    ), o AS (
        SELECT r.id, r.sku, r.connection_id, r.external_id, r.at_ms,
               LEAST(r.reserved_delta, r.short) AS units
          FROM r WHERE r.movement = 'reserve' AND r.short > 0
    ), flagged AS (
        UPDATE orders x SET oversold_units = x.oversold_units + t.units
          FROM (SELECT connection_id, external_id, SUM(units) AS units FROM o GROUP BY 1, 2) t
         WHERE x.connection_id = t.connection_id AND x.external_id = t.external_id
    )
    INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
    SELECT o.at_ms, 'sync', 'oversell', 'connection:' || c.name, '', '', 'order.ingest', NULL,
           json_build_object('connection', c.name, 'order', o.external_id, 'sku', o.sku,
                             'units', o.units)::text
      FROM o JOIN connections c ON c.id = o.connection_id
     ORDER BY o.id;
    UPDATE skus s SET on_hand = s.on_hand + d.oh, reserved = s.reserved + d.rs, updated_at_ms = d.at
      FROM (SELECT sku, SUM(on_hand_delta) AS oh, SUM(reserved_delta) AS rs,
                   (array_agg(at_ms ORDER BY id DESC))[1] AS at
              FROM moved GROUP BY sku) d
     WHERE s.sku = d.sku;
    RETURN NULL;
END;
$$;
CREATE TRIGGER stock_ledger_apply AFTER INSERT ON stock_ledger
    REFERENCING NEW TABLE AS moved
    FOR EACH STATEMENT EXECUTE FUNCTION stock_ledger_apply();
