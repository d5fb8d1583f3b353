-- In-app plan changes: one change (or cancellation, or resumption) of a user's subscription at a
-- time, across every instance. A row is a lease on the user's billing changes: taken with an
-- insert (a taken lease whose `expires_at` has passed may be taken over), deleted when the change
-- is done. `holder` is a random id of the request that holds it.
CREATE TABLE billing_change_leases (
    user_id     TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
