//! The signed-in billing routes: the plans, Checkout, the customer portal, the subscription as
//! Stripe has it, plan changes with their preview, and cancelling or resuming.

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
        changes::{self, Changed, Preview, summary},
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
        .route("/api/billing/subscription", get(show_subscription))
        .route("/api/billing/change/preview", post(preview_change))
        .route("/api/billing/change", post(confirm_change))
        .route("/api/billing/cancel", post(cancel))
        .route("/api/billing/resume", post(resume))
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
                "trial_days": p.trial_days, "highlight": p.highlight, "prices": prices,
            })
        })
        .collect();
    Json(json!({ "plans": plans, "features": state.catalog.feature_list() }))
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

async fn show_subscription(
    State(state): State<Billing>,
    BillingUser(current): BillingUser,
) -> Result<Json<Value>> {
    let summary = summary::summary(&state, &current.user).await?;
    Ok(Json(json!({ "subscription": summary })))
}

#[derive(Deserialize)]
struct ChangeRequest {
    plan: String,
    interval: String,
    #[serde(default)]
    proration_date: Option<i64>,
}

async fn preview_change(
    State(state): State<Billing>,
    BillingUser(current): BillingUser,
    ApiJson(body): ApiJson<ChangeRequest>,
) -> Result<Json<Preview>> {
    changes::preview(&state, &current.user, &body.plan, &body.interval)
        .await
        .map(Json)
}

async fn confirm_change(
    State(state): State<Billing>,
    BillingUser(current): BillingUser,
    ApiJson(body): ApiJson<ChangeRequest>,
) -> Result<Json<Changed>> {
    changes::change(
        &state,
        &current.user,
        &body.plan,
        &body.interval,
        body.proration_date,
    )
    .await
    .map(Json)
}

/// The body of cancel and resume: a JSON object (its fields are ignored).
#[derive(Deserialize)]
struct NoFields {}

async fn cancel(
    State(state): State<Billing>,
    BillingUser(current): BillingUser,
    ApiJson(NoFields {}): ApiJson<NoFields>,
) -> Result<Json<Value>> {
    set_cancel(&state, &current, true).await
}

async fn resume(
    State(state): State<Billing>,
    BillingUser(current): BillingUser,
    ApiJson(NoFields {}): ApiJson<NoFields>,
) -> Result<Json<Value>> {
    set_cancel(&state, &current, false).await
}

async fn set_cancel(
    state: &Billing,
    current: &crate::gate::CurrentUser,
    cancel: bool,
) -> Result<Json<Value>> {
    changes::set_cancel(state, &current.user, cancel).await?;
    let summary = summary::summary(state, &current.user).await?;
    Ok(Json(json!({ "subscription": summary })))
}
