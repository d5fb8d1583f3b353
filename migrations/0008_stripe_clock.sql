-- How far tollgate's clock may run ahead of Stripe's is read from the latest verified events
-- (received_at, tollgate's clock, against created, Stripe's), so a state fetched from Stripe is
-- never stamped later than Stripe's own clock stood when it was fetched.
CREATE INDEX stripe_events_received ON stripe_events (received_at);
