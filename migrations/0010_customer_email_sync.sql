-- Customer email changes reach Stripe eventually. A change of the user's address queues it here
-- in the same transaction (email_to_sync), and a worker on any instance pushes it to Stripe,
-- retrying with a growing delay (email_sync_at, email_sync_attempts) until Stripe has it. The
-- queued address is cleared only if it is still the one sent, so a later change is never lost.
ALTER TABLE billing_customers ADD COLUMN email_to_sync TEXT;
ALTER TABLE billing_customers ADD COLUMN email_sync_at BIGINT;
ALTER TABLE billing_customers ADD COLUMN email_sync_attempts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX billing_customers_email_sync ON billing_customers (email_sync_at);
