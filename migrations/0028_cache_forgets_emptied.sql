-- An emptied `cache_forgets` (an operator's `DELETE FROM cache_forgets`, then perhaps its
-- numbering reset in `sqlite_sequence`) must not hide the forgets written after it: a reader
-- remembers the last number it read, and new rows numbered from 1 again could reach it before
-- the reader looks, so that it never sees them. So when the last row goes, a forget-everything
-- row takes its place, numbered after every row deleted: every reader applies it, and the
-- numbering goes on above it. tollgate's own pruning always keeps the newest row and never
-- fires this. PostgreSQL publishes forgets by NOTIFY and does not use the table.
--
-- @sqlite
CREATE TRIGGER cache_forgets_emptied AFTER DELETE ON cache_forgets
WHEN NOT EXISTS (SELECT 1 FROM cache_forgets) BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', '*', CAST(strftime('%s', 'now') AS INTEGER));
END;
-- @postgres
SELECT 1;
