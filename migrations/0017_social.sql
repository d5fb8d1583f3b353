-- Social sign-in: provider identities linked to accounts, sign-ins on their way through a
-- provider, and links waiting for the account owner's confirmation.
--
-- `social_identities`: a provider's account (`provider` is google, github or oidc; `issuer` who
-- vouches for it: the OpenID Connect issuer, or GitHub's address; `subject` its stable id there:
-- the ID token's `sub`, GitHub's numeric user id) linked to one of ours. A subject is unique only
-- at its issuer, so an identity is found by all three: pointing a provider at another issuer
-- matches none of the old ones. An identity signs in the account it is linked to and no other;
-- an account links one identity per provider. `email` is what the provider said when it was
-- linked (shown on the account page).
CREATE TABLE social_identities (
    provider      TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    PRIMARY KEY (provider, issuer, subject),
    UNIQUE (user_id, provider)
);

-- A sign-in (or a link) sent to a provider and not back yet: keyed by a SHA-256 hash of the
-- OAuth `state`, bound to the browser that started it (`binding_hash`: the hash of a random
-- value in that browser's cookie), with the PKCE verifier and the OpenID Connect nonce. Taken once
-- by the callback; lives 10 minutes. `link_user_id`: the signed-in account a link is for;
-- `next_path`: where to go after; `plan`: a paid plan chosen before signing up (`pro/month`),
-- whose Checkout follows the sign-in.
CREATE TABLE oauth_flows (
    state_hash    TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    binding_hash  TEXT NOT NULL,
    verifier      TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    next_path     TEXT NOT NULL,
    link_user_id  TEXT REFERENCES users (id) ON DELETE CASCADE,
    plan          TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX oauth_flows_expiry ON oauth_flows (expires_at);

-- A provider identity whose verified email matches an existing account: it is linked only once
-- the owner confirms, with the link mailed to that address (`token_hash`: SHA-256 of the
-- `tgl_…` token), in the browser that started the sign-in (`binding_hash`). Lives 30 minutes.
CREATE TABLE pending_links (
    token_hash    TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider      TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    email         TEXT NOT NULL,
    binding_hash  TEXT NOT NULL,
    next_path     TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX pending_links_expiry ON pending_links (expires_at);
