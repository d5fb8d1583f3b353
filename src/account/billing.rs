//! The signed-in billing routes: the plans, Checkout and the customer portal.

use axum::{
    Json, Router,
    extract::{FromRef, State},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    auth::Auth,
    billing::{
        Billing,
        checkout::{self, RedirectUrl},
    },
    error::Result,
    extract::ApiJson,
    gate::BillingUser,
};

/// The routes.
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
    BillingUser(current): BillingUser,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> Result<Json<RedirectUrl>> {
    checkout::start_checkout(&state, &current.user, &body.plan, &body.interval)
        .await
        .map(Json)
}

async fn create_portal_session(
    State(state): State<Billing>,
    BillingUser(current): BillingUser,
) -> Result<Json<RedirectUrl>> {
    crate::billing::portal::open_portal(&state, &current.user)
        .await
        .map(Json)
}
