//! What the billing page (and `GET /api/billing/subscription`) shows of a live subscription, read
//! from Stripe when asked: plan and price, the next charge (Stripe's own preview of the next
//! invoice), the card, and a downgrade waiting for the period end.

use serde::Serialize;
use stripe_billing::invoice::CreatePreviewInvoice;

use super::{Live, live};
use crate::{
    auth::users::User,
    billing::{
        Billing,
        catalog::Interval,
        stripe::{absent_as_none, retrying, within_deadline},
    },
    error::AppError,
};

/// The card a subscription is charged to (never more than brand, last four and expiry).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Card {
    /// `visa`, `mastercard`, …
    pub brand: String,
    /// The last four digits.
    pub last4: String,
    /// Expiry month (1–12).
    pub exp_month: i64,
    /// Expiry year.
    pub exp_year: i64,
}

/// The next invoice.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NextCharge {
    /// Minor units.
    pub amount: i64,
    /// ISO currency, lower case.
    pub currency: String,
    /// When it is charged (Unix seconds).
    pub at: i64,
}

/// A downgrade waiting for the period end.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Scheduled {
    /// The plan it moves to (`null` for a price the catalog does not offer).
    pub plan: Option<String>,
    /// `month` or `year`.
    pub interval: Option<Interval>,
    /// When (Unix seconds).
    pub at: i64,
}

/// A live subscription as the billing page shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SubscriptionSummary)]
pub struct Summary {
    /// `sub_…`.
    pub id: String,
    /// Stripe's status.
    pub status: String,
    /// The catalog plan of its price (`null` for a price the catalog does not offer).
    pub plan: Option<String>,
    /// `month` or `year`.
    pub interval: Option<Interval>,
    /// The price per interval (minor units, all items).
    pub amount: i64,
    /// ISO currency, lower case.
    pub currency: String,
    /// Start and end of the current period (Unix seconds).
    pub current_period_start: i64,
    /// End of the current period.
    pub current_period_end: i64,
    /// Whether it ends at the period end.
    pub cancel_at_period_end: bool,
    /// End of the trial, while trialing.
    pub trial_end: Option<i64>,
    /// The next charge; `null` when none is coming (it cancels) or Stripe could not say.
    pub next_charge: Option<NextCharge>,
    /// The card charged, when Stripe has one on the subscription.
    pub card: Option<Card>,
    /// A downgrade waiting for the period end.
    pub scheduled_change: Option<Scheduled>,
}

/// The user's live subscription, or `None`; within the request deadline.
pub async fn summary(state: &Billing, user: &User) -> Result<Option<Summary>, AppError> {
    within_deadline(read(state, user)).await
}

async fn read(state: &Billing, user: &User) -> Result<Option<Summary>, AppError> {
    let Some(live) = live(state, user).await? else {
        return Ok(None);
    };
    let plan_of = |price: &str| {
        state
            .catalog
            .offer(price)
            .map(|(plan, interval, _)| (plan.id.clone(), interval))
    };
    let current = plan_of(&live.price);
    let sub = &live.sub;
    let amount = sub
        .items
        .data
        .iter()
        .map(|i| i.price.unit_amount.unwrap_or(0) * i.quantity.unwrap_or(1) as i64)
        .sum();
    let card = sub
        .default_payment_method
        .as_ref()
        .and_then(|pm| pm.as_object())
        .and_then(|pm| pm.card.as_ref())
        .map(|c| Card {
            brand: c.brand.clone(),
            last4: c.last4.clone(),
            exp_month: c.exp_month,
            exp_year: c.exp_year,
        });
    let scheduled_change = scheduled(&live).map(|(price, at)| {
        let plan = plan_of(&price);
        Scheduled {
            plan: plan.as_ref().map(|p| p.0.clone()),
            interval: plan.map(|p| p.1),
            at,
        }
    });
    Ok(Some(Summary {
        id: live.id().to_owned(),
        status: sub.status.as_str().to_owned(),
        plan: current.as_ref().map(|p| p.0.clone()),
        interval: current.map(|p| p.1),
        amount,
        currency: sub.currency.to_string(),
        current_period_start: live.period.0,
        current_period_end: live.period.1,
        cancel_at_period_end: sub.cancel_at_period_end,
        trial_end: sub.trial_end,
        next_charge: next_charge(state, &live).await,
        card,
        scheduled_change,
    }))
}

/// The price `live`'s schedule moves it to after this period, if any.
pub(super) fn scheduled_price(live: &Live) -> Option<String> {
    scheduled(live).map(|(price, _)| price)
}

/// The price a schedule moves the subscription to after this period, and when.
fn scheduled(live: &Live) -> Option<(String, i64)> {
    let schedule = live.sub.schedule.as_ref()?.as_object()?;
    let next = schedule
        .phases
        .iter()
        .find(|p| p.start_date >= live.period.1)?;
    let price = next.items.first()?.price.id().to_string();
    (price != live.price).then_some((price, next.start_date))
}

/// Stripe's preview of the subscription's next invoice; `None` when none is coming or Stripe
/// cannot be asked (the page still renders).
async fn next_charge(state: &Billing, live: &Live) -> Option<NextCharge> {
    if live.sub.cancel_at_period_end {
        return None;
    }
    let request = CreatePreviewInvoice::new()
        .customer(live.sub.customer.id().as_str())
        .subscription(live.id());
    let none_coming = |e: &stripe::StripeError| {
        matches!(e, stripe::StripeError::Stripe(api, _)
            if api.code.as_ref().is_some_and(|c| c.as_str() == "invoice_upcoming_none"))
    };
    let invoice = retrying(|| async {
        absent_as_none(request.send(&state.stripe.client).await, none_coming)
    })
    .await
    .ok()??;
    Some(NextCharge {
        amount: invoice.amount_due,
        currency: invoice.currency.to_string(),
        at: invoice
            .next_payment_attempt
            .unwrap_or(invoice.period_end.max(live.period.1)),
    })
}
