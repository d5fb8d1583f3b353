//! Billing pages: pricing, the billing overview, the Checkout and portal form posts, and the
//! Checkout success page.
//!
//! The success page is the one documented exception to "a GET changes nothing": it pulls the
//! Checkout Session and its subscription from Stripe and applies them through the webhook's code
//! path, so it never depends on the webhook having arrived. It is idempotent and only ever applies
//! the signed-in user's own session.

use axum::{
    Extension,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use minijinja::context;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use super::{NoFields, csrf::CsrfToken, error_response, member, member_form, page_user, render};
use crate::{
    billing::{
        catalog::Interval,
        checkout::{self, CheckoutOutcome},
        customers,
    },
    error::AppError,
    gate::{self, Access},
    state::AppState,
};

/// A plan's status in words, for people.
fn status_words(access: &Access) -> String {
    let date = |s: &Option<String>| {
        s.as_deref()
            .and_then(|d| d.get(..10))
            .unwrap_or("")
            .to_owned()
    };
    match access.status.as_str() {
        "none" => "No subscription".into(),
        "active" | "trialing" if access.cancels => {
            format!("Cancels on {}", date(&access.until))
        }
        "trialing" => format!("Free trial until {}", date(&access.until)),
        "active" => format!("Renews on {}", date(&access.until)),
        "past_due" if access.until.is_some() => format!(
            "Payment failed — update your card by {}",
            date(&access.until)
        ),
        "past_due" => "Payment failed — access paused until you update your card".into(),
        "canceled" => "Canceled".into(),
        other => other.replace('_', " "),
    }
}

#[derive(Serialize)]
struct PlanView {
    id: String,
    name: String,
    free: bool,
    trial_days: Option<u32>,
    features: Vec<String>,
    price: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct PricingQuery {
    interval: Option<String>,
    canceled: Option<String>,
    required: Option<String>,
}

pub(super) async fn show_pricing(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<PricingQuery>,
    session: Session,
) -> Response {
    let user = match page_user(&state, session).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let current = user.as_ref().and_then(|u| u.access.plan.clone());
    let interval = q
        .interval
        .as_deref()
        .and_then(Interval::parse)
        .unwrap_or(Interval::Month);
    let plans: Vec<PlanView> = state
        .catalog
        .plans
        .iter()
        .map(|p| PlanView {
            id: p.id.clone(),
            name: p.name.clone(),
            free: p.is_free(),
            trial_days: p.trial_days,
            features: p.features.clone(),
            price: p
                .prices
                .get(&interval)
                .map(|pr| crate::billing::money(pr.amount, &pr.currency)),
        })
        .collect();
    let notice = if q.canceled.is_some() {
        Some("Checkout was canceled; you have not been charged.".to_owned())
    } else {
        q.required
            .as_deref()
            .and_then(|r| state.catalog.plan(r))
            .map(|p| format!("That page needs the {} plan or higher.", p.name))
    };
    render(
        &state,
        StatusCode::OK,
        "pricing.html",
        user.as_ref(),
        Some(&token),
        context! { plans, interval => interval.as_str(), current_plan => current, notice },
    )
}

#[derive(Deserialize)]
struct CheckoutForm {
    plan: String,
    interval: String,
}

pub(super) async fn submit_checkout(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, user): (CheckoutForm, _) =
        match member_form(&state, session, &headers, &body, "/pricing").await {
            Ok(v) => v,
            Err(r) => return r,
        };
    checkout_redirect(&state, &user.user, &form.plan, &form.interval).await
}

/// Starts Checkout and sends the browser there, or explains on the billing page why not.
pub(super) async fn checkout_redirect(
    state: &AppState,
    user: &crate::auth::users::User,
    plan: &str,
    interval: &str,
) -> Response {
    match checkout::start_checkout(state, user, plan, interval).await {
        Ok(r) => Redirect::to(&r.url).into_response(),
        Err(AppError::AlreadySubscribed) => {
            Redirect::to("/billing?notice=already_subscribed").into_response()
        }
        Err(e) => error_response(state, e),
    }
}

pub(super) async fn submit_portal(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (NoFields {}, user) = match member_form(&state, session, &headers, &body, "/billing").await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    match checkout::open_portal(&state, &user.user).await {
        Ok(r) => Redirect::to(&r.url).into_response(),
        Err(e) => error_response(&state, e),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct BillingQuery {
    notice: Option<String>,
}

pub(super) async fn show_billing(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<BillingQuery>,
    session: Session,
) -> Response {
    let user = match member(&state, session, "/billing").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let access = &user.access;
    let customer = match customers::customer_of(&state, &user.user.id).await {
        Ok(c) => c,
        Err(e) => return error_response(&state, e),
    };
    let invoices = match &customer {
        Some(c) => checkout::recent_invoices(&state, c).await,
        None => Vec::new(),
    };
    let plan_name = plan_name(&state, access);
    let error = (q.notice.as_deref() == Some("already_subscribed"))
        .then_some("You already have a subscription. Change plans in the billing portal.");
    render(
        &state,
        StatusCode::OK,
        "billing.html",
        Some(&user),
        Some(&token),
        context! {
            plan_name,
            status_words => status_words(access),
            has_customer => customer.is_some(),
            invoices,
            error,
            simulator_url => state.stripe.simulator_url.clone(),
        },
    )
}

fn plan_name(state: &AppState, access: &Access) -> String {
    access
        .plan
        .as_deref()
        .and_then(|p| state.catalog.plan(p))
        .map_or("None".into(), |p| p.name.clone())
}

#[derive(Deserialize)]
pub(super) struct SuccessQuery {
    session_id: Option<String>,
}

pub(super) async fn show_success(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<SuccessQuery>,
    session: Session,
) -> Response {
    let user = match member(&state, session, "/billing").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let outcome = match checkout::complete_from_success_page(
        &state,
        &user.user,
        q.session_id.as_deref().unwrap_or(""),
    )
    .await
    {
        Ok(o) => o,
        Err(e) => return error_response(&state, e),
    };
    let access = match gate::access_for(&state, &user.user.id).await {
        Ok(a) => a,
        Err(e) => return error_response(&state, e),
    };
    let (status, outcome) = match outcome {
        CheckoutOutcome::Completed => (StatusCode::OK, "completed"),
        CheckoutOutcome::Pending => (StatusCode::OK, "pending"),
        CheckoutOutcome::NotYours => (StatusCode::NOT_FOUND, "not_yours"),
    };
    render(
        &state,
        status,
        "success.html",
        Some(&user),
        Some(&token),
        context! {
            outcome,
            plan_name => plan_name(&state, &access),
            status_words => status_words(&access),
        },
    )
}
