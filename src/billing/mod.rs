//! Billing: the plan catalog, Stripe customers, paid sign-up Checkout, the customer portal, and
//! signed webhooks into the subscription-state table.

pub mod catalog;
pub mod changes;
pub mod checkout;
pub mod closing;
pub mod customers;
pub mod event_log;
pub mod portal;
pub mod status;
pub mod stripe;
pub mod subscriptions;
pub mod sync;
pub mod webhook;

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRef},
    routing::post,
};

use std::sync::Arc;

use crate::auth::Auth;

/// What the billing capability shares: auth (and everything below it), the catalog, Stripe and the webhook group commit.
///
/// One pointer: clones (every extractor and spawned task takes one) cost a reference count. It
/// dereferences to its parts, and they to the layer below ([`Auth`]), so `billing.db` and
/// `billing.config` read through.
#[derive(Clone)]
pub struct Billing(Arc<BillingParts>);

/// What a [`Billing`] holds.
pub struct BillingParts {
    /// Auth, email and the base.
    pub auth: Auth,
    /// Plans, with prices resolved to Stripe ids.
    pub catalog: catalog::Catalog,
    /// Stripe (or the simulator).
    pub stripe: stripe::StripeApi,
    /// Webhook events waiting for their group's commit (SQLite).
    pub webhook_queue: webhook::GroupCommit,
}

impl Billing {
    /// Wraps the parts.
    pub fn new(parts: BillingParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for Billing {
    type Target = BillingParts;

    fn deref(&self) -> &BillingParts {
        &self.0
    }
}

impl std::ops::Deref for BillingParts {
    type Target = Auth;

    fn deref(&self) -> &Auth {
        &self.auth
    }
}

/// `1900` `usd` → `$19.00`-style text without a locale database: `19.00 USD`.
pub fn money(amount: i64, currency: &str) -> String {
    let symbol = match currency {
        "usd" => "$",
        "eur" => "€",
        "gbp" => "£",
        _ => "",
    };
    let sign = if amount < 0 { "-" } else { "" };
    let value = format!(
        "{}.{:02}",
        amount.unsigned_abs() / 100,
        amount.unsigned_abs() % 100
    );
    if symbol.is_empty() {
        format!("{sign}{value} {}", currency.to_uppercase())
    } else {
        format!("{sign}{symbol}{value}")
    }
}

/// Body limit of `/webhooks/stripe` (docs/api.md).
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

/// Stripe's webhook route (the signed-in billing routes are in `account`).
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new().route(
        "/webhooks/stripe",
        post(webhook::receive).layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)),
    )
}
