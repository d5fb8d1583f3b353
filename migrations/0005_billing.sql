-- Billing state: one Stripe customer per user, Checkout attempts, the subscription-state table and
-- the log of received Stripe events. Portable SQL (TEXT and BIGINT only, times in Unix seconds).

-- One row per user who ever started a checkout. The row is claimed (unique user_id) before Stripe
-- is called, with the idempotency key of that one creation attempt, so concurrent requests can
-- never create two customers. `deleted` keeps the mapping of a deleted account's customer so its
-- later events are recorded as orphans; user_id is then NULL.
CREATE TABLE billing_customers (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT CONSTRAINT billing_customers_user_key UNIQUE REFERENCES users (id) ON DELETE SET NULL,
    stripe_customer_id  TEXT CONSTRAINT billing_customers_stripe_key UNIQUE,
    idempotency_key     TEXT NOT NULL,
    deleted             BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

-- Checkout attempts: the id is the idempotency key of the Stripe call that creates the session.
CREATE TABLE checkout_attempts (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan_id             TEXT NOT NULL,
    price_interval      TEXT NOT NULL,
    stripe_session_id   TEXT CONSTRAINT checkout_attempts_session_key UNIQUE,
    url                 TEXT,
    status              TEXT NOT NULL,
    expires_at          BIGINT,
    created_at          BIGINT NOT NULL
);
CREATE INDEX checkout_attempts_user ON checkout_attempts (user_id, status);
-- At most one live attempt per user: concurrent checkouts share it instead of racing.
CREATE UNIQUE INDEX checkout_attempts_one_live ON checkout_attempts (user_id)
    WHERE status IN ('creating', 'open');

-- The subscription-state table: one row per Stripe subscription, following Stripe.
-- stripe_updated is the Stripe timestamp (event.created) of the state the row reflects; an older
-- event never overwrites a newer state.
CREATE TABLE subscriptions (
    id                    TEXT PRIMARY KEY,
    user_id               TEXT REFERENCES users (id) ON DELETE SET NULL,
    customer_id           TEXT NOT NULL,
    status                TEXT NOT NULL,
    plan_id               TEXT,
    price_id              TEXT,
    quantity              BIGINT NOT NULL DEFAULT 1,
    current_period_end    BIGINT,
    cancel_at_period_end  BIGINT NOT NULL DEFAULT 0,
    cancel_at             BIGINT,
    trial_end             BIGINT,
    canceled_at           BIGINT,
    ended_at              BIGINT,
    past_due_since        BIGINT,
    stripe_updated        BIGINT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX subscriptions_user ON subscriptions (user_id);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

-- Every verified Stripe event, stored once (the primary key is Stripe's event id) in the same
-- transaction that applies it. outcome: applied, stale, ignored, orphan.
CREATE TABLE stripe_events (
    id           TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    created      BIGINT NOT NULL,
    customer_id  TEXT,
    outcome      TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);
