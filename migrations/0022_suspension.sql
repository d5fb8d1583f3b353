-- A suspended account (set by an administrator or the operator): no sign-in by any method, and
-- its sessions, keys and tokens count as gone while it lasts. NULL when not suspended.
ALTER TABLE users ADD COLUMN suspended_at BIGINT;
