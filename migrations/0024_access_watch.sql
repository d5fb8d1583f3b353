-- The access each user was last seen to have (src/gate/watch.rs), so a change of plan or a grace
-- period that starts or ends, by a Stripe event or by time alone, becomes one audit event
-- (billing.access_granted / access_revoked / grace_started / grace_ended). A user without a row
-- has the free plan, as at sign-up. `version` makes the update a compare-and-set: of two
-- instances seeing the same change, one records it.
CREATE TABLE access_states (
    user_id   TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    plan      TEXT,
    in_grace  INTEGER NOT NULL,
    version   BIGINT NOT NULL,
    seen_at   BIGINT NOT NULL
);

-- Where the last look got to: Stripe's clock (for times that pass) and the wall clock (for rows
-- that changed). One instance at a time looks (the lease, on the wall clock), so instances
-- whose catalogs or clocks differ for a while (a deploy) do not record each other's view back
-- and forth.
CREATE TABLE access_sweeps (
    name         TEXT PRIMARY KEY,
    clock_at     BIGINT NOT NULL,
    wall_at      BIGINT NOT NULL,
    owner        TEXT,
    lease_until  BIGINT NOT NULL
);
