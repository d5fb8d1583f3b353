-- One trail of security and billing events (src/audit.rs), appended in the transaction of the
-- change each records. `seq` orders them (outbound deliveries follow it): taken from the counter
-- row below in the same transaction, so a later number never commits before an earlier one.
-- actor and subject are user ids (actor `system` for tollgate itself, `stripe` for Stripe's
-- events); no foreign keys, so an account's trail outlives it until it is pruned.
CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL CONSTRAINT audit_events_seq_key UNIQUE,
    type        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    subject     TEXT,
    at          BIGINT NOT NULL,
    request_id  TEXT,
    client_ip   TEXT,
    payload     TEXT NOT NULL
);
CREATE INDEX audit_events_subject ON audit_events (subject, seq);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TABLE audit_sequence (
    name   TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);
INSERT INTO audit_sequence (name, value) VALUES ('audit_events', 0);
