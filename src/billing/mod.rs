//! Billing: the plan catalog now; Stripe customers, Checkout, the portal and webhooks next.

pub mod catalog;
