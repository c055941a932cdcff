-- Indexes the console's pages and API lists read through, so each stays within its
-- 50 ms budget with a million orders (measured by `stockade bench console`).

-- Orders, newest first, paged by (created_at_ms, id): all, per channel, per status,
-- per channel and status.
CREATE INDEX orders_created ON orders(created_at_ms, id);
CREATE INDEX orders_connection_created ON orders(connection_id, created_at_ms, id);
CREATE INDEX orders_status_created ON orders(status, created_at_ms, id);
CREATE INDEX orders_connection_status_created ON orders(connection_id, status, created_at_ms, id);
-- Search by the marketplace's order id without naming the channel.
CREATE INDEX orders_external_id ON orders(external_id);
-- The overview: orders per minute per channel, oversold units.
CREATE INDEX orders_connection_ingested ON orders(connection_id, ingested_at_ms);
CREATE INDEX orders_oversold ON orders(oversold_units) WHERE oversold_units <> 0;
-- Each channel's last confirmed push.
CREATE INDEX listings_connection_acked ON listings(connection_id, acked_at_ms);
-- An order's status history (its audit rows) and the audit page's resource filter.
CREATE INDEX audit_resource ON audit(resource, seq);
-- The connections page: a connection's authorization notices.
CREATE INDEX events_caller_kind ON events(caller, kind);
