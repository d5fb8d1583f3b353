-- Outbound webhooks (src/outbound): the product's backends that receive the audit trail's events,
-- signed as Standard Webhooks. An endpoint delivers events in `seq` order: `cursor_seq` is the
-- last event it has finished with (delivered, or not one it asked for); the next is tried until
-- it is delivered or has failed `TOLLGATE_WEBHOOK_MAX_ATTEMPTS` times, when the endpoint stops
-- (`dead_at`) until an administrator retries it. One instance at a time delivers an endpoint's
-- events: the one holding its lease.
CREATE TABLE webhook_endpoints (
    id               TEXT PRIMARY KEY,
    url              TEXT NOT NULL,
    secret           TEXT NOT NULL,
    previous_secret  TEXT,
    previous_until   BIGINT,
    event_types      TEXT NOT NULL,
    from_setting     INTEGER NOT NULL,
    created_at       BIGINT NOT NULL,
    cursor_seq       BIGINT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    dead_at          BIGINT,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_until      BIGINT NOT NULL
);

-- Each delivery attempt, for the admin area (pruned with the audit trail).
CREATE TABLE webhook_attempts (
    id           TEXT PRIMARY KEY,
    endpoint_id  TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id     TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    status       INTEGER,
    error        TEXT
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, at);
