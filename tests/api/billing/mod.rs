//! Billing against the built-in Stripe simulator, through the real async-stripe client and the
//! real webhook endpoint, split by flow. The simulator is as strict as Stripe (slow webhooks,
//! in-flight idempotency keys, deleted customers, hanging calls, failed re-fetches); each test
//! names the behaviour it stands for.

mod catalog;
mod change_pages;
mod change_races;
mod changes;
mod checkout;
mod deletion;
mod follow_ups;
mod grace;
mod idempotency;
mod immediate_downgrades;
mod ordering;
mod outages;
mod portal;
mod simulator;
mod sync;
mod ties;
mod webhooks;
