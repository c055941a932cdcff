-- PostgreSQL only: its SKU triggers act once per statement (see the PostgreSQL migration
-- of the same number). SQLite applies them per row on the one writer thread, where no
-- other transaction waits on the rows; nothing changes.
SELECT 1;
