-- What each process forgot from its in-process cache, for the other processes on one SQLite file
-- (src/cache/poll.rs): each publishes its forgets here in batches and reads the others' every
-- 100 ms. `keys` holds the forgets, space-separated: `u:<user id>`, `s:<hex SHA-256 of a session
-- id>` or `*`. Rows older than two minutes are removed. PostgreSQL uses NOTIFY instead and leaves
-- this table empty.
CREATE TABLE cache_forgets (
    seq       BIGINT PRIMARY KEY,
    instance  TEXT NOT NULL,
    keys      TEXT NOT NULL,
    at        BIGINT NOT NULL
);
