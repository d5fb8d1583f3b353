-- Customer email changes reach Stripe eventually. A change of the user's address queues it here
-- in the same transaction (email_to_sync), and a worker on any instance pushes it to Stripe,
-- retrying with a growing delay (email_sync_at, email_sync_attempts) until Stripe has it. Every
-- queueing bumps email_sync_seq; a push clears the row only if the number is still the one it
-- read, and queues the current address again when it is not (a newer push may have landed
-- first), so the last address Stripe gets is the current one.
ALTER TABLE billing_customers ADD COLUMN email_to_sync TEXT;
ALTER TABLE billing_customers ADD COLUMN email_sync_at BIGINT;
ALTER TABLE billing_customers ADD COLUMN email_sync_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE billing_customers ADD COLUMN email_sync_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX billing_customers_email_sync ON billing_customers (email_sync_at);
