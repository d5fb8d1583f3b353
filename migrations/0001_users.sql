-- Accounts. Portable SQL for SQLite and PostgreSQL: TEXT and BIGINT only (see src/db.rs).
-- `email` is stored as typed; `email_norm` (trimmed, NFC, lower-cased) is what logins match on,
-- and its unique constraint is what makes concurrent duplicate registrations create one account.
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL,
    email_norm      TEXT NOT NULL CONSTRAINT users_email_norm_key UNIQUE,
    password_hash   TEXT,
    email_verified  BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
