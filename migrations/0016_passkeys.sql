-- Passkeys (WebAuthn credentials) and the ceremonies that make and use them.
--
-- `passkey_users`: the WebAuthn user handle of each account that registered a passkey, 32
-- random bytes (base64url). The handle, not the user id, is what authenticators hold and hand
-- back at a sign-in without a username, so it tells nothing about the account.
CREATE TABLE passkey_users (
    user_id      TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    user_handle  TEXT NOT NULL UNIQUE
);

-- `passkeys`: one registered credential. `credential_id` is its raw id (base64url), unique across
-- accounts; `credential` the verified public key and its properties (JSON); `sign_count` the
-- authenticator's signature counter last seen (0 for authenticators that keep none): an assertion
-- whose counter does not go up is refused as a cloned or replayed one, and the counter moves by
-- a guarded update so two racing assertions cannot both pass.
CREATE TABLE passkeys (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    credential_id  TEXT NOT NULL UNIQUE,
    credential     TEXT NOT NULL,
    sign_count     BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT
);
CREATE INDEX passkeys_user ON passkeys (user_id);

-- A WebAuthn ceremony begun and not finished: the challenge sent and what the answer must match
-- (`state`, JSON). Only a SHA-256 hash of its token (`tgw_…`) is stored. `purpose` is what it may
-- finish (register, sign_in, second_step, reauth); `user_id` the account it is for (none for a
-- sign-in without a username); `pending_hash` binds a second step to its pending sign-in. A
-- ceremony is taken by one DELETE … RETURNING, so an answer is accepted once, and lives 5
-- minutes.
CREATE TABLE webauthn_ceremonies (
    token_hash    TEXT PRIMARY KEY,
    purpose       TEXT NOT NULL,
    user_id       TEXT REFERENCES users (id) ON DELETE CASCADE,
    pending_hash  TEXT,
    state         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_at);
