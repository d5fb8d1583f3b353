-- Server-side sessions (tower-sessions records). The cookie's id is stored only as a SHA-256
-- hash, so a copy of this table cannot be replayed as cookies. `user_id` indexes sessions per
-- user: a password change or reset ends them all at once.
CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     TEXT REFERENCES users (id) ON DELETE CASCADE,
    data        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
