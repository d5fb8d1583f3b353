-- Email: a durable outbox and single-use email tokens. Portable SQL (TEXT and BIGINT only).

-- Messages are written here in the same transaction as the change that causes them; a worker
-- sends them with retries. locked_until is the lease of the instance sending a message, so several
-- instances never send one message twice; dedupe_key makes "once per Stripe event" notices unique.
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    text_body        TEXT NOT NULL,
    html_body        TEXT NOT NULL,
    dedupe_key       TEXT CONSTRAINT outbox_dedupe_key UNIQUE,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    sent_at          BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Email tokens: only a SHA-256 hash of the token (and of the one-time code) is stored. Each is
-- bound to a purpose and to the address it was sent to, used once, and short-lived.
CREATE TABLE email_tokens (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose          TEXT NOT NULL,
    token_hash       TEXT NOT NULL CONSTRAINT email_tokens_hash_key UNIQUE,
    code_hash        TEXT,
    email_norm       TEXT NOT NULL,
    new_email        TEXT,
    failed_attempts  BIGINT NOT NULL DEFAULT 0,
    expires_at       BIGINT NOT NULL,
    used_at          BIGINT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose);
