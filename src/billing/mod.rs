//! Billing: the plan catalog, Stripe customers, paid sign-up Checkout, the customer portal, and
//! signed webhooks into the subscription-state table.

pub mod catalog;
pub mod checkout;
pub mod closing;
pub mod customers;
pub mod stripe;
pub mod subscriptions;
pub mod sync;
pub mod webhook;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, FromRef, State},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use std::sync::Arc;

use crate::{auth::Auth, error::Result, extract::ApiJson, gate::CurrentUser};
use checkout::RedirectUrl;

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
    let value = format!("{}.{:02}", amount / 100, amount % 100);
    if symbol.is_empty() {
        format!("{value} {}", currency.to_uppercase())
    } else {
        format!("{symbol}{value}")
    }
}

/// Body limit of `/webhooks/stripe` (docs/api.md).
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

/// The billing routes.
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    Auth: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/plans", get(list_plans))
        .route("/api/billing/checkout", post(create_checkout_session))
        .route("/api/billing/portal", post(create_portal_session))
        .route(
            "/webhooks/stripe",
            post(webhook::receive).layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)),
        )
}

async fn list_plans(State(state): State<Billing>) -> Json<Value> {
    let plans: Vec<Value> = state
        .catalog
        .plans
        .iter()
        .map(|p| {
            let prices: serde_json::Map<String, Value> = p
                .prices
                .iter()
                .map(|(interval, price)| {
                    (
                        interval.as_str().to_owned(),
                        json!({"amount": price.amount, "currency": price.currency}),
                    )
                })
                .collect();
            json!({
                "id": p.id, "name": p.name, "tier": p.tier, "features": p.features,
                "trial_days": p.trial_days, "prices": prices,
            })
        })
        .collect();
    Json(json!({ "plans": plans }))
}

#[derive(Deserialize)]
struct CheckoutRequest {
    plan: String,
    interval: String,
}

async fn create_checkout_session(
    State(state): State<Billing>,
    current: CurrentUser,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> Result<Json<RedirectUrl>> {
    checkout::start_checkout(&state, &current.user, &body.plan, &body.interval)
        .await
        .map(Json)
}

async fn create_portal_session(
    State(state): State<Billing>,
    current: CurrentUser,
) -> Result<Json<RedirectUrl>> {
    checkout::open_portal(&state, &current.user).await.map(Json)
}
