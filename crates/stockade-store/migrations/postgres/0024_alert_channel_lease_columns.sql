-- An alert channel's sending lease is the lease row `alert_channel:<name>` (migration
-- 0021, stockade-alerts `lease`): the channel's own `holder` and `lease_until_ms`
-- columns were no longer read or written. No index, view or trigger names them.
ALTER TABLE alert_channels DROP COLUMN holder, DROP COLUMN lease_until_ms;
