-- Second factors: a TOTP authenticator, its recovery codes, and sign-ins waiting for a code.
--
-- `totp_factors`: one per user. A row with no `confirmed_at` is an enrolment in progress (it
-- grants and asks nothing); a confirmed one makes every sign-in two steps. `id` is new at every
-- enrolment, so trusted-device cookies made for an earlier one stop counting. `secret` is the
-- base32 shared secret the authenticator app holds (treat the database as secret). `last_step`
-- is the last 30-second step whose code was used: a code is never accepted twice.
CREATE TABLE totp_factors (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    id            TEXT NOT NULL,
    secret        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    confirmed_at  BIGINT,
    last_step     BIGINT
);

-- Recovery codes: ten per enrolment, single use, stored as SHA-256 hashes of 80-bit codes.
CREATE TABLE recovery_codes (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    used_at     BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- A sign-in whose first factor (password, magic link) passed and which waits for the second.
-- It grants nothing. Only a SHA-256 hash of its token (`tgp_…`) is stored; it lives 5 minutes,
-- takes a few attempts, and dies when the user's session epoch moves. `remember` and `tokens`
-- (BIGINT 0/1) carry what the first step asked for: a persistent cookie, or a token pair.
CREATE TABLE pending_sign_ins (
    token_hash     TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_epoch  BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    attempts       BIGINT NOT NULL DEFAULT 0,
    remember       BIGINT NOT NULL,
    tokens         BIGINT NOT NULL
);
CREATE INDEX pending_sign_ins_user ON pending_sign_ins (user_id);
