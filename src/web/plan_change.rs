//! Plan changes in the browser: the preview page (what changes, when, and what is charged today)
//! with its confirmation form, the cancellation page with its confirmation, and resuming. Every
//! outcome lands on the billing page with a sentence saying what happened.

use axum::{
    Extension, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use minijinja::context;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use super::{
    csrf::CsrfToken,
    dates::Locale,
    page::{CsrfForm, NoFields, PageError, member},
    render,
};
use crate::{
    billing::{
        changes::{self, Effective, summary},
        money,
    },
    error::AppError,
    state::AppState,
};

/// The preview and confirmation of a change, cancelling and resuming.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/billing/change", get(show_change).post(submit_change))
        .route("/billing/cancel", get(show_cancel).post(submit_cancel))
        .route("/billing/resume", post(submit_resume))
}

/// The billing page's sentence for a refused change (`?notice=` the error code).
pub(super) const REFUSALS: &[(&str, &str)] = &[
    (
        "already_subscribed",
        "You already have a subscription. Choose another plan on the pricing page to switch.",
    ),
    (
        "card_declined",
        "Your card was declined, so your plan did not change. Update your payment method and try again.",
    ),
    (
        "payment_past_due",
        "Your last payment failed. Update your payment method before changing plan.",
    ),
    (
        "subscription_cancelling",
        "Your subscription is set to cancel. Resume it before changing plan.",
    ),
    (
        "no_subscription",
        "You have no subscription to change. Choose a plan to subscribe.",
    ),
    ("same_plan", "You are already on that plan."),
    (
        "change_in_progress",
        "Another change to your subscription is still being made. Try again in a moment.",
    ),
    (
        "subscription_managed",
        "Your subscription was arranged by our billing team. Contact support to change it.",
    ),
    (
        "preview_expired",
        "That price is no longer valid (it was shown too long ago, or your billing period has renewed since). Look at the change again before confirming.",
    ),
];

/// The billing page's sentence for what was done (`?notice=`).
pub(super) const DONE: &[(&str, &str)] = &[
    ("changed", "Your plan has changed. It applies from now on."),
    (
        "scheduled",
        "Your plan change is scheduled: you keep your current plan until the end of the period you paid for.",
    ),
    (
        "kept",
        "The scheduled change is off: you stay on your plan.",
    ),
    (
        "cancelling",
        "Your subscription is cancelled: you keep your plan until the end of the period you paid for, and you will not be charged again.",
    ),
    (
        "resumed",
        "Your subscription continues: it renews as before.",
    ),
];

#[derive(Deserialize)]
struct ChangeQuery {
    plan: Option<String>,
    interval: Option<String>,
}

/// A refusal as a way back to the billing page that explains it, or the error page.
fn back_to_billing(err: AppError) -> PageError {
    let code = err.status_and_code().1;
    if REFUSALS.iter().any(|(k, _)| *k == code) {
        PageError::Page(Redirect::to(&format!("/billing?notice={code}")).into_response())
    } else if matches!(err, AppError::UnknownPlan) {
        PageError::Page(Redirect::to("/pricing").into_response())
    } else {
        PageError::App(err)
    }
}

#[derive(Serialize)]
struct Line {
    description: String,
    amount: String,
}

async fn show_change(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    locale: Locale,
    Query(q): Query<ChangeQuery>,
    session: Session,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/pricing").await?;
    let (plan, interval) = (
        q.plan.unwrap_or_default(),
        q.interval.unwrap_or_else(|| "month".into()),
    );
    let preview = changes::preview(&state, &user.user, &plan, &interval)
        .await
        .map_err(back_to_billing)?;
    let current = user
        .access
        .plan
        .as_deref()
        .and_then(|p| state.catalog.plan(p))
        .map_or_else(String::new, |p| p.name.clone());
    let lines: Vec<Line> = preview
        .lines
        .iter()
        .map(|l| Line {
            description: l.description.clone(),
            amount: money(l.amount, &preview.currency),
        })
        .collect();
    Ok(render(
        &state,
        StatusCode::OK,
        "change_plan.html",
        Some(&user),
        Some(&token),
        context! {
            plan => preview.plan,
            plan_name => preview.plan_name,
            interval => preview.interval.as_str(),
            now => preview.effective == Effective::Now,
            date => locale.date(preview.effective_at),
            due => money(preview.amount_due, &preview.currency),
            charged => preview.amount_due > 0,
            credit => (preview.credit > 0).then(|| money(preview.credit, &preview.currency)),
            ends_trial => preview.ends_trial,
            lines,
            recurring => money(preview.recurring_amount, &preview.currency),
            proration_date => preview.proration_date,
            current_plan => current,
        },
    ))
}

#[derive(Deserialize)]
struct ChangeForm {
    plan: String,
    interval: String,
    proration_date: Option<String>,
}

async fn submit_change(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<ChangeForm>,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/billing").await?;
    let date = match form.proration_date.as_deref() {
        None | Some("") => None,
        Some(d) => Some(
            d.parse::<i64>()
                .map_err(|_| back_to_billing(AppError::PreviewExpired))?,
        ),
    };
    let changed = changes::change(&state, &user.user, &form.plan, &form.interval, date)
        .await
        .map_err(back_to_billing)?;
    let notice = match changed.effective {
        Effective::PeriodEnd => "scheduled",
        Effective::Now if changed.scheduled_change_dropped => "kept",
        Effective::Now => "changed",
    };
    Ok(Redirect::to(&format!("/billing?notice={notice}")).into_response())
}

async fn show_cancel(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    locale: Locale,
    session: Session,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/billing/cancel").await?;
    let summary = summary::summary(&state, &user.user)
        .await?
        .ok_or_else(|| back_to_billing(AppError::NoSubscription))?;
    if summary.cancel_at_period_end {
        return Ok(Redirect::to("/billing?notice=cancelling").into_response());
    }
    let plan_name = summary
        .plan
        .as_deref()
        .and_then(|p| state.catalog.plan(p))
        .map_or_else(|| "your plan".to_owned(), |p| p.name.clone());
    let free = state.catalog.free_plan().map(|p| p.name.clone());
    Ok(render(
        &state,
        StatusCode::OK,
        "cancel.html",
        Some(&user),
        Some(&token),
        context! {
            plan_name,
            free,
            until => locale.date(summary.current_period_end),
        },
    ))
}

async fn submit_cancel(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    set_cancel(state, session, true).await
}

async fn submit_resume(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    set_cancel(state, session, false).await
}

async fn set_cancel(
    state: AppState,
    session: Session,
    cancel: bool,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/billing").await?;
    changes::set_cancel(&state, &user.user, cancel)
        .await
        .map_err(back_to_billing)?;
    let notice = if cancel { "cancelling" } else { "resumed" };
    Ok(Redirect::to(&format!("/billing?notice={notice}")).into_response())
}
