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
    extract::{DefaultBodyLimit, State},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{app::AppState, auth::CurrentUser, error::Result, extract::ApiJson};
use checkout::RedirectUrl;

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
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/plans", get(list_plans))
        .route("/api/billing/checkout", post(create_checkout_session))
        .route("/api/billing/portal", post(create_portal_session))
        .route(
            "/webhooks/stripe",
            post(webhook::receive).layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)),
        )
}

async fn list_plans(State(state): State<AppState>) -> Json<Value> {
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
    State(state): State<AppState>,
    current: CurrentUser,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> Result<Json<RedirectUrl>> {
    checkout::start_checkout(&state, &current.user, &body.plan, &body.interval)
        .await
        .map(Json)
}

async fn create_portal_session(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Json<RedirectUrl>> {
    checkout::open_portal(&state, &current.user).await.map(Json)
}
