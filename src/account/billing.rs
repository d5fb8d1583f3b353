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
        catalog::Interval,
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

/// The catalog: plans by tier with their prices, trials and features.
#[utoipa::path(get, path = "/api/plans", tag = "billing", responses((status = 200, description = "The catalog", body = super::openapi::schemas::PlanList)))]
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

#[derive(Deserialize, utoipa::ToSchema)]
struct CheckoutRequest {
    /// A paid plan's id from `/api/plans`.
    #[schema(example = "pro")]
    plan: String,
    /// `month` or `year`.
    #[schema(value_type = Interval)]
    interval: String,
}

/// Starts Stripe Checkout for a plan and interval (or returns the open one).
#[utoipa::path(post, path = "/api/billing/checkout", tag = "billing", request_body = CheckoutRequest, responses((status = 200, description = "Send the browser to Stripe Checkout", body = RedirectUrl)))]
async fn create_checkout_session(
    State(state): State<Billing>,
    BillingUser(current): BillingUser,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> Result<Json<RedirectUrl>> {
    checkout::start_checkout(&state, &current.user, &body.plan, &body.interval)
        .await
        .map(Json)
}

/// Opens Stripe's customer portal (payment methods, invoices).
#[utoipa::path(post, path = "/api/billing/portal", tag = "billing", responses((status = 200, description = "Send the browser to Stripe's customer portal", body = RedirectUrl)))]
async fn create_portal_session(
    State(state): State<Billing>,
    BillingUser(current): BillingUser,
) -> Result<Json<RedirectUrl>> {
    crate::billing::portal::open_portal(&state, &current.user)
        .await
        .map(Json)
}

/// The live subscription as Stripe has it now: price, next charge, card, scheduled change.
#[utoipa::path(get, path = "/api/billing/subscription", tag = "billing", responses((status = 200, description = "The subscription as Stripe has it now", body = super::openapi::schemas::SubscriptionAnswer)))]
async fn show_subscription(
    State(state): State<Billing>,
    BillingUser(current): BillingUser,
) -> Result<Json<Value>> {
    let summary = summary::summary(&state, &current.user).await?;
    Ok(Json(json!({ "subscription": summary })))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ChangeRequest {
    /// A paid plan's id from `/api/plans`.
    #[schema(example = "team")]
    plan: String,
    /// `month` or `year`.
    #[schema(value_type = Interval)]
    interval: String,
    /// A preview's `proration_date`, to be charged exactly what it showed; absent: now.
    #[serde(default)]
    proration_date: Option<i64>,
}

/// Previews a plan change: Stripe's prorated amount, and when it takes effect.
#[utoipa::path(post, path = "/api/billing/change/preview", tag = "billing", request_body = ChangeRequest, responses((status = 200, description = "What the change would charge, from Stripe's invoice preview", body = Preview)))]
async fn preview_change(
    State(state): State<Billing>,
    BillingUser(current): BillingUser,
    ApiJson(body): ApiJson<ChangeRequest>,
) -> Result<Json<Preview>> {
    changes::preview(&state, &current.user, &body.plan, &body.interval)
        .await
        .map(Json)
}

/// Changes plan: upgrades at once (charged the prorated amount), downgrades at the period end.
#[utoipa::path(post, path = "/api/billing/change", tag = "billing", request_body = ChangeRequest, responses((status = 200, description = "Changed, or scheduled for the period end", body = Changed)))]
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
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = EmptyObject)]
struct NoFields {}

/// Sets the subscription to cancel at the end of the period paid for.
#[utoipa::path(post, path = "/api/billing/cancel", tag = "billing", request_body = NoFields, responses((status = 200, description = "Set to cancel at the period end", body = super::openapi::schemas::SubscriptionAnswer)))]
async fn cancel(
    State(state): State<Billing>,
    BillingUser(current): BillingUser,
    ApiJson(NoFields {}): ApiJson<NoFields>,
) -> Result<Json<Value>> {
    set_cancel(&state, &current, true).await
}

/// Withdraws a cancellation set for the period end.
#[utoipa::path(post, path = "/api/billing/resume", tag = "billing", request_body = NoFields, responses((status = 200, description = "The cancellation is withdrawn", body = super::openapi::schemas::SubscriptionAnswer)))]
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
