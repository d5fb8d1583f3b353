-- Whether a row's stripe_updated came from a state fetched from Stripe rather than from an event.
-- A fetched state is stamped by an estimate of Stripe's clock; if tollgate's clock was stepped
-- since the estimate, the stamp can be ahead of Stripe's, so an event that loses to such a row is
-- not dropped: the subscription is fetched again (Stripe, the authority, settles it).
ALTER TABLE subscriptions ADD COLUMN stamp_fetched BIGINT NOT NULL DEFAULT 0;
