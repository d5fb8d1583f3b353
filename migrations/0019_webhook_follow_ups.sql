-- The Stripe work an event still needs after its commit (re-fetching a subscription, cancelling
-- a deleted account's subscription), written in the event's own transaction and cleared when
-- the work is done. A process that stops in between leaves it here; Stripe's redelivery of the
-- event (never acknowledged) then finishes it instead of counting as a duplicate.
-- Encoded as `refetch:<subscription>:<tie stamp or empty>` or `cancel:<subscription>`.
ALTER TABLE stripe_events ADD COLUMN follow_up TEXT;
