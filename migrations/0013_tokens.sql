-- Access tokens (JWTs) and their refresh tokens.
--
-- `signing_keys`: the Ed25519 keys access tokens are signed with. The current key is the newest
-- one not retired; a retired key still verifies (and is published at /.well-known/jwks.json)
-- until the last token it signed has expired. `private_key` is the PKCS#8 document, base64; it is
-- NULL for a key given by TOLLGATE_JWT_SIGNING_KEY, which stays in the setting only.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    algorithm    TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    private_key  TEXT,
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT
);

-- A family is one sign-in of a token client: every refresh token it is ever given belongs to it.
-- It ends (ended_at) at logout, or when a used refresh token comes back (reuse), and it is dead
-- when the user's session epoch has moved past the one it was created under (password change or
-- reset, sign out everywhere). It goes with its user.
CREATE TABLE token_families (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_epoch  BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    ended_at       BIGINT,
    ended_reason   TEXT
);
CREATE INDEX token_families_user ON token_families (user_id);

-- Refresh tokens: single use. Only a SHA-256 hash of the token is stored; `used_at` is set when
-- it is exchanged, and a used token presented again ends its family.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    family_id   TEXT NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
