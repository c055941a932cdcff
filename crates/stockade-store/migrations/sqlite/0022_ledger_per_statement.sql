-- PostgreSQL only: its ledger moves stock once per statement (see the PostgreSQL
-- migration of the same number). SQLite applies each ledger row as it is inserted, on
-- the one writer thread, where no other transaction waits on the rows; nothing changes.
SELECT 1;
