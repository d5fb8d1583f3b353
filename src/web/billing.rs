//! Billing pages: pricing, the billing overview, the Checkout and portal form posts, and the
//! Checkout success page.
//!
//! The success page is the one documented exception to "a GET changes nothing": it pulls the
//! Checkout Session and its subscription from Stripe and applies them through the webhook's code
//! path, so it never depends on the webhook having arrived. It is idempotent and only ever applies
//! the signed-in user's own session.

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
    page::{CsrfForm, NoFields, NoticeQuery, PageError, member, page_user},
    plan_change, render,
};
use crate::{
    billing::{
        catalog::Interval,
        changes::summary,
        checkout::{self, CheckoutOutcome},
        customers,
    },
    error::AppError,
    gate::{self, Access},
    state::AppState,
};

/// Pricing, the billing overview, Checkout, the portal and the success page.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/pricing", get(show_pricing))
        .route("/billing", get(show_billing))
        .route("/billing/checkout", post(submit_checkout))
        .route("/billing/portal", post(submit_portal))
        .route("/billing/success", get(show_success))
}

/// A plan's status in words, for people.
fn status_words(access: &Access, locale: Locale) -> String {
    let date = |s: &Option<String>| locale.date_of(s.as_deref());
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
    highlight: bool,
    trial_days: Option<u32>,
    features: Vec<crate::billing::catalog::Feature>,
    price: Option<String>,
    saving: Option<String>,
}

/// One row of the pricing page's comparison table: a feature and, per plan, whether it has it.
#[derive(Serialize)]
struct ComparisonRow {
    name: String,
    description: Option<String>,
    included: Vec<bool>,
}

#[derive(Deserialize, Default)]
struct PricingQuery {
    interval: Option<String>,
    canceled: Option<String>,
    required: Option<String>,
}

async fn show_pricing(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<PricingQuery>,
    session: Session,
) -> Result<Response, PageError> {
    let user = page_user(&state, session).await?;
    let current = user.as_ref().and_then(|u| u.access.plan.clone());
    // A subscriber changes plan (with a preview) instead of starting another Checkout; a trial
    // is offered only to someone who never subscribed (it is for a first subscription).
    let (subscribed, trial_eligible) = match &user {
        Some(u) => current_price(&state, &u.user.id).await?,
        None => (None, true),
    };
    let interval = q
        .interval
        .as_deref()
        .and_then(Interval::parse)
        .unwrap_or(Interval::Month);
    let features = state.catalog.feature_list();
    let plans: Vec<PlanView> = state
        .catalog
        .plans
        .iter()
        .map(|p| PlanView {
            id: p.id.clone(),
            name: p.name.clone(),
            free: p.is_free(),
            highlight: p.highlight,
            trial_days: p.trial_days.filter(|_| trial_eligible),
            features: features
                .iter()
                .filter(|f| p.features.contains(&f.id))
                .cloned()
                .collect(),
            price: p
                .prices
                .get(&interval)
                .map(|pr| crate::billing::money(pr.amount, &pr.currency)),
            saving: yearly_saving(p).filter(|_| interval == Interval::Year),
        })
        .collect();
    // The free plan's price, in the catalog's currency.
    let zero = state
        .catalog
        .plans
        .iter()
        .flat_map(|p| p.prices.values())
        .next()
        .map_or_else(|| "0".to_owned(), |p| crate::billing::money(0, &p.currency));
    let comparison: Vec<ComparisonRow> = features
        .iter()
        .map(|f| ComparisonRow {
            name: f.name.clone(),
            description: f.description.clone(),
            included: state
                .catalog
                .plans
                .iter()
                .map(|p| p.features.contains(&f.id))
                .collect(),
        })
        .collect();
    let notice = q
        .canceled
        .is_some()
        .then(|| "Checkout was canceled; you have not been charged.".to_owned());
    let prompt = q
        .required
        .as_deref()
        .and_then(|r| state.catalog.plan(r))
        .map(|p| format!("That page needs the {} plan or higher.", p.name));
    let (subscribed_plan, subscribed_interval) = subscribed.unzip();
    Ok(render(
        &state,
        StatusCode::OK,
        "pricing.html",
        user.as_ref(),
        Some(&token),
        context! {
            plans,
            comparison,
            zero,
            interval => interval.as_str(),
            current_plan => current,
            subscribed_plan,
            subscribed_interval,
            notice,
            prompt,
        },
    ))
}

/// What yearly billing saves against twelve months of `plan`, in words, when it saves anything.
fn yearly_saving(plan: &crate::billing::catalog::Plan) -> Option<String> {
    let month = plan.prices.get(&Interval::Month)?;
    let year = plan.prices.get(&Interval::Year)?;
    let saved = month.amount * 12 - year.amount;
    (saved > 0 && month.currency == year.currency).then(|| {
        format!(
            "Save {} a year against monthly billing",
            crate::billing::money(saved, &year.currency)
        )
    })
}

/// The catalog plan and interval of the user's newest live subscription, if any, and whether
/// the user never subscribed (so a trial is theirs to take).
async fn current_price(
    state: &AppState,
    user_id: &str,
) -> Result<(Option<(String, &'static str)>, bool), PageError> {
    let member = crate::billing::subscriptions::member(&state.db, user_id)
        .await
        .map_err(AppError::from)?;
    let Some(subs) = member.map(|m| m.subscriptions) else {
        return Ok((None, false));
    };
    let never_subscribed = subs.is_empty();
    let price = subs
        .iter()
        .rev()
        .find(|s| !s.row.status.is_terminal())
        .and_then(|s| s.price_id.clone());
    let current = price.and_then(|price| {
        state
            .catalog
            .offer(&price)
            .map(|(plan, interval, _)| (plan.id.clone(), interval.as_str()))
    });
    Ok((current, never_subscribed))
}

#[derive(Deserialize)]
struct CheckoutForm {
    plan: String,
    interval: String,
}

async fn submit_checkout(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<CheckoutForm>,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/pricing").await?;
    checkout_redirect(&state, &user.user, &form.plan, &form.interval).await
}

/// Starts Checkout and sends the browser there, or explains on the billing page why not.
pub(super) async fn checkout_redirect(
    state: &AppState,
    user: &crate::auth::users::User,
    plan: &str,
    interval: &str,
) -> Result<Response, PageError> {
    match checkout::start_checkout(state, user, plan, interval).await {
        Ok(r) => Ok(Redirect::to(&r.url).into_response()),
        Err(AppError::AlreadySubscribed) => {
            Ok(Redirect::to("/billing?notice=already_subscribed").into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn submit_portal(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/billing").await?;
    let portal = crate::billing::portal::open_portal(&state, &user.user).await?;
    Ok(Redirect::to(&portal.url).into_response())
}

async fn show_billing(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    locale: Locale,
    Query(q): Query<NoticeQuery>,
    session: Session,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/billing").await?;
    let access = &user.access;
    let customer = customers::customer_of(&state, &user.user.id).await?;
    let invoices = match &customer {
        Some(c) => crate::billing::portal::recent_invoices(&state, c).await,
        None => Vec::new(),
    };
    // Stripe's view of the subscription; the page still renders, from tollgate's own state, when
    // Stripe cannot be asked.
    let (subscription, unavailable) = match summary::summary(&state, &user.user).await {
        Ok(s) => (s.map(|s| SubscriptionView::of(&state, &s, locale)), false),
        Err(AppError::PaymentProviderUnavailable) => (None, true),
        Err(e) => return Err(e.into()),
    };
    Ok(render(
        &state,
        StatusCode::OK,
        "billing.html",
        Some(&user),
        Some(&token),
        context! {
            plan_name => plan_name(&state, access),
            status_words => status_words(access, locale),
            has_customer => customer.is_some(),
            subscription,
            unavailable,
            invoices,
            error => q.text(plan_change::REFUSALS),
            notice => q.text(plan_change::DONE),
            simulator_url => state.stripe.simulator_url.clone(),
        },
    ))
}

/// A live subscription as the billing page words it.
#[derive(Serialize)]
struct SubscriptionView {
    plan: Option<String>,
    interval: Option<String>,
    price: String,
    cancelling: bool,
    next_charge: Option<String>,
    card: Option<String>,
    scheduled: Option<String>,
}

impl SubscriptionView {
    fn of(state: &AppState, s: &summary::Summary, locale: Locale) -> Self {
        let name = |plan: &Option<String>| {
            plan.as_deref()
                .and_then(|p| state.catalog.plan(p))
                .map_or_else(|| "another plan".to_owned(), |p| p.name.clone())
        };
        let per = |interval: Option<Interval>| match interval {
            Some(Interval::Year) => "per year",
            _ => "per month",
        };
        Self {
            plan: s.plan.clone(),
            interval: s.interval.map(|i| i.as_str().to_owned()),
            price: format!(
                "{} {}",
                crate::billing::money(s.amount, &s.currency),
                per(s.interval)
            ),
            cancelling: s.cancel_at_period_end,
            next_charge: s.next_charge.as_ref().map(|c| {
                format!(
                    "{} on {}",
                    crate::billing::money(c.amount, &c.currency),
                    locale.date(c.at)
                )
            }),
            card: s.card.as_ref().map(|c| {
                format!(
                    "{} ending in {} (expires {:02}/{})",
                    brand(&c.brand),
                    c.last4,
                    c.exp_month,
                    c.exp_year
                )
            }),
            scheduled: s.scheduled_change.as_ref().map(|c| {
                format!(
                    "Changes to {} ({}) on {}",
                    name(&c.plan),
                    per(c.interval),
                    locale.date(c.at)
                )
            }),
        }
    }
}

/// A card brand as people write it.
fn brand(brand: &str) -> String {
    match brand {
        "visa" => "Visa".into(),
        "mastercard" => "Mastercard".into(),
        "amex" => "American Express".into(),
        "discover" => "Discover".into(),
        "diners" => "Diners Club".into(),
        "jcb" => "JCB".into(),
        "unionpay" => "UnionPay".into(),
        other => {
            let mut chars = other.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_else(|| "Card".into())
        }
    }
}

fn plan_name(state: &AppState, access: &Access) -> String {
    access
        .plan
        .as_deref()
        .and_then(|p| state.catalog.plan(p))
        .map_or("None".into(), |p| p.name.clone())
}

#[derive(Deserialize)]
struct SuccessQuery {
    session_id: Option<String>,
}

async fn show_success(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    locale: Locale,
    Query(q): Query<SuccessQuery>,
    session: Session,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/billing").await?;
    let session_id = q.session_id.as_deref().unwrap_or("");
    let outcome = checkout::complete_from_success_page(&state, &user.user, session_id).await?;
    let access = gate::access_for(&state, &user.user.id).await?;
    let (status, outcome) = match outcome {
        CheckoutOutcome::Completed => (StatusCode::OK, "completed"),
        CheckoutOutcome::Pending => (StatusCode::OK, "pending"),
        CheckoutOutcome::NotYours => (StatusCode::NOT_FOUND, "not_yours"),
    };
    Ok(render(
        &state,
        status,
        "success.html",
        Some(&user),
        Some(&token),
        context! {
            outcome,
            plan_name => plan_name(&state, &access),
            status_words => status_words(&access, locale),
        },
    ))
}
