-- When an event's Stripe work (`follow_up`, migration 0019) was last taken: by the delivery that
-- stored the event (NULL: then it is `received_at`), or by a redelivery that took it over. Work
-- whose Stripe call failed is released (0), so Stripe's next redelivery takes it at once; the
-- event itself stays stored and applied, so what it applied (an audit event, a completed
-- checkout) is never applied twice.
ALTER TABLE stripe_events ADD COLUMN follow_up_taken BIGINT;
