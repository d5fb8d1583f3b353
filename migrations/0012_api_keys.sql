-- API keys for scripts, CLIs and integrations. Only a SHA-256 hash of the key is stored (the key
-- has 256 random bits, so a fast hash is enough); `hint` is its last four characters, to tell keys
-- apart in a list. Scopes are a space-separated list. A revoked key keeps its row (revoked_at);
-- every key goes with its user.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    secret_hash   TEXT NOT NULL CONSTRAINT api_keys_secret_hash_key UNIQUE,
    hint          TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id);
