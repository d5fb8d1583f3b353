-- Every write to a subscription row counts itself in `changes`, so the access watch
-- (src/gate/watch.rs) looks at each change once: it finds changed rows by `updated_at` with a
-- margin for instances' clocks, and skips a row whose count and stamp it has already looked at
-- within that margin.
ALTER TABLE subscriptions ADD COLUMN changes BIGINT NOT NULL DEFAULT 0;
