-- The access watch's look (src/gate/watch.rs, `users_to_recheck`) finds the subscriptions that
-- changed, or whose grace, cancellation or trial ends in a window, by one range each.
CREATE INDEX subscriptions_updated_at ON subscriptions (updated_at);
CREATE INDEX subscriptions_past_due_since ON subscriptions (past_due_since);
CREATE INDEX subscriptions_cancel_at ON subscriptions (cancel_at);
CREATE INDEX subscriptions_period_end ON subscriptions (current_period_end);
CREATE INDEX subscriptions_trial_end ON subscriptions (trial_end);
