//! In-app plan changes (upgrade, downgrade, monthly ↔ yearly) with a preview of what they cost,
//! and cancelling or resuming at the period end.
//!
//! Every decision is made on the subscription as Stripe has it at that moment (fetched, never the
//! local row alone), and what Stripe answers is applied through the webhook's code path at once, so
//! the gate follows without waiting for the event.
//!
//! - An upgrade (a higher tier, or monthly to yearly) takes effect at once: Stripe invoices the
//!   prorated difference immediately (`always_invoice`) and charges the card; a declined card
//!   changes nothing (`error_if_incomplete`, 402 `card_declined`). The preview is Stripe's own
//!   (`POST /v1/invoices/create_preview`) for the same `proration_date` the change then uses, so
//!   the amount shown is the amount charged.
//! - A downgrade (a lower tier, or yearly to monthly) waits for the period end by default: the
//!   subscription gets a schedule whose second phase is the cheaper price, and the plan paid for
//!   runs to its end. `TOLLGATE_DOWNGRADES_AT=now` makes it immediate, with the unused time
//!   credited to the customer's balance.
//! - During a trial a change is immediate and charges nothing; the trial goes on.

mod schedule;
pub mod summary;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use stripe::{StripeError, StripeRequest as _};
use stripe_billing::{Subscription, SubscriptionStatus};
use stripe_billing::{
    invoice::{
        CreatePreviewInvoice, CreatePreviewInvoiceSubscriptionDetails,
        CreatePreviewInvoiceSubscriptionDetailsItems,
        CreatePreviewInvoiceSubscriptionDetailsProrationBehavior,
    },
    subscription::{
        RetrieveSubscription, UpdateSubscription, UpdateSubscriptionItems,
        UpdateSubscriptionPaymentBehavior, UpdateSubscriptionProrationBehavior,
    },
};

use crate::{
    auth::users::User,
    billing::{
        Billing,
        catalog::{Interval, Plan},
        checkout::sync_subscription,
        customers,
        stripe::{absent_as_none, idempotent, is_missing, retrying, retrying_with_key},
        subscriptions,
    },
    error::AppError,
    ids::new_id,
};

/// How old a preview's `proration_date` may be when the change is confirmed.
pub const PREVIEW_LIFETIME_SECS: i64 = 600;

/// When a change takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effective {
    /// At once.
    Now,
    /// At the end of the period paid for.
    PeriodEnd,
}

/// The user's live subscription as Stripe has it now.
pub(crate) struct Live {
    pub(crate) sub: Subscription,
    pub(crate) item: String,
    pub(crate) price: String,
    pub(crate) quantity: u64,
    pub(crate) period: (i64, i64),
}

impl Live {
    pub(crate) fn id(&self) -> &str {
        self.sub.id.as_str()
    }

    /// The schedule attached to it, if any.
    pub(crate) fn schedule(&self) -> Option<&str> {
        self.sub.schedule.as_ref().map(|s| s.id().as_str())
    }
}

/// The user's live subscription, fetched from Stripe (with its schedule and payment method), or
/// `None` when they have none.
pub(crate) async fn live(state: &Billing, user: &User) -> Result<Option<Live>, AppError> {
    let Some(customer) = customers::customer_of(state, &user.id).await? else {
        return Ok(None);
    };
    let rows = subscriptions::for_user(&state.db, &user.id).await?;
    let Some(row) = rows.iter().rev().find(|r| !r.status.is_terminal()) else {
        return Ok(None);
    };
    let request = RetrieveSubscription::new(row.id.as_str())
        .expand(vec!["schedule".into(), "default_payment_method".into()]);
    let fetched =
        retrying(|| async { absent_as_none(request.send(&state.stripe.client).await, is_missing) })
            .await?;
    let Some(sub) = fetched else {
        return Ok(None);
    };
    let ended = matches!(
        sub.status,
        SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired
    );
    if ended || sub.customer.id().as_str() != customer {
        return Ok(None);
    }
    let Some(item) = sub.items.data.first() else {
        return Ok(None);
    };
    let live = Live {
        item: item.id.to_string(),
        price: item.price.id.to_string(),
        quantity: item.quantity.unwrap_or(1),
        period: (item.current_period_start, item.current_period_end),
        sub,
    };
    Ok(Some(live))
}

/// The schedule attached to subscription `id` now, if any.
pub(crate) async fn live_schedule(
    state: &Billing,
    id: &str,
) -> Result<Option<stripe_billing::SubscriptionSchedule>, AppError> {
    let request = RetrieveSubscription::new(id).expand(vec!["schedule".into()]);
    let sub = retrying(|| request.send(&state.stripe.client)).await?;
    Ok(sub.schedule.and_then(|s| s.into_object()))
}

/// The plan and price a change asks for.
struct Target<'a> {
    plan: &'a Plan,
    interval: Interval,
    price: String,
    amount: i64,
    currency: String,
}

fn target<'a>(state: &'a Billing, plan: &str, interval: &str) -> Result<Target<'a>, AppError> {
    let interval = Interval::parse(interval).ok_or(AppError::UnknownPlan)?;
    let plan = state.catalog.plan(plan).ok_or(AppError::UnknownPlan)?;
    let price = plan.prices.get(&interval).ok_or(AppError::UnknownPlan)?;
    Ok(Target {
        plan,
        interval,
        price: price.stripe_id.clone(),
        amount: price.amount,
        currency: price.currency.clone(),
    })
}

/// When moving `live` to `target` takes effect.
fn effective(state: &Billing, live: &Live, target: &Target) -> Effective {
    if live.sub.status == SubscriptionStatus::Trialing {
        return Effective::Now;
    }
    let current = state.catalog.plans.iter().find_map(|p| {
        p.prices
            .iter()
            .find(|(_, pr)| pr.stripe_id == live.price)
            .map(|(i, _)| (p.tier, *i))
    });
    // A price the catalog does not offer (a legacy price): any catalog plan is a step up.
    let Some((tier, interval)) = current else {
        return Effective::Now;
    };
    let upgrade = target.plan.tier > tier
        || (target.plan.tier == tier
            && interval == Interval::Month
            && target.interval == Interval::Year);
    if upgrade || !state.config.downgrades_at_period_end {
        Effective::Now
    } else {
        Effective::PeriodEnd
    }
}

/// Refuses a change `live` cannot take: a payment outstanding, or a cancellation set.
fn changeable(live: &Live) -> Result<(), AppError> {
    match live.sub.status {
        SubscriptionStatus::Active | SubscriptionStatus::Trialing => {}
        _ => return Err(AppError::PaymentPastDue),
    }
    if live.sub.cancel_at_period_end || live.sub.cancel_at.is_some() {
        return Err(AppError::SubscriptionCancelling);
    }
    Ok(())
}

/// One line of a preview.
#[derive(Debug, Serialize)]
pub struct PreviewLine {
    /// Stripe's description ("Unused time on Pro after …").
    pub description: String,
    /// Minor units; negative for a credit.
    pub amount: i64,
}

/// What a plan change would do.
#[derive(Debug, Serialize)]
pub struct Preview {
    /// The plan asked for.
    pub plan: String,
    /// Its name.
    pub plan_name: String,
    /// `month` or `year`.
    pub interval: Interval,
    /// When it takes effect.
    pub effective: Effective,
    /// When (Unix seconds).
    pub effective_at: i64,
    /// Charged now (minor units): the prorated difference, after any credit.
    pub amount_due: i64,
    /// ISO currency, lower case.
    pub currency: String,
    /// The lines of the charge made now (empty when nothing is charged now).
    pub lines: Vec<PreviewLine>,
    /// The recurring price from then on (minor units per interval).
    pub recurring_amount: i64,
    /// Pass back to confirm: the moment the proration is computed for.
    pub proration_date: i64,
}

/// Previews moving the user's subscription to `plan` billed every `interval`.
pub async fn preview(
    state: &Billing,
    user: &User,
    plan: &str,
    interval: &str,
) -> Result<Preview, AppError> {
    let target = target(state, plan, interval)?;
    let live = live(state, user).await?.ok_or(AppError::NoSubscription)?;
    changeable(&live)?;
    if live.price == target.price {
        return Err(AppError::SamePlan);
    }
    let now = state.clock.now();
    let when = effective(state, &live, &target);
    let mut preview = Preview {
        plan: target.plan.id.clone(),
        plan_name: target.plan.name.clone(),
        interval: target.interval,
        effective: when,
        effective_at: now,
        amount_due: 0,
        currency: target.currency.clone(),
        lines: Vec::new(),
        recurring_amount: target.amount * live.quantity as i64,
        proration_date: now,
    };
    if when == Effective::PeriodEnd {
        preview.effective_at = live.period.1;
        return Ok(preview);
    }
    let customer = live.sub.customer.id().to_string();
    let mut details = CreatePreviewInvoiceSubscriptionDetails::new();
    details.items = Some(vec![CreatePreviewInvoiceSubscriptionDetailsItems {
        id: Some(live.item.clone()),
        price: Some(target.price.clone()),
        ..CreatePreviewInvoiceSubscriptionDetailsItems::new()
    }]);
    details.proration_behavior =
        Some(CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::AlwaysInvoice);
    details.proration_date = Some(now);
    let request = CreatePreviewInvoice::new()
        .customer(customer)
        .subscription(live.id())
        .subscription_details(details);
    let invoice = retrying(|| request.send(&state.stripe.client)).await?;
    preview.amount_due = invoice.amount_due;
    preview.currency = invoice.currency.to_string();
    preview.lines = invoice
        .lines
        .data
        .iter()
        .map(|l| PreviewLine {
            description: l.description.clone().unwrap_or_default(),
            amount: l.amount,
        })
        .collect();
    Ok(preview)
}

/// What a confirmed change did.
#[derive(Debug, Serialize)]
pub struct Changed {
    /// The plan now held or scheduled.
    pub plan: String,
    /// `month` or `year`.
    pub interval: Interval,
    /// When it takes (or took) effect.
    pub effective: Effective,
    /// When (Unix seconds).
    pub effective_at: i64,
}

/// Moves the user's subscription to `plan` billed every `interval`, prorated from
/// `proration_date` (a preview's, at most [`PREVIEW_LIFETIME_SECS`] old; now when absent). Asking
/// for the price the subscription already has drops a scheduled downgrade, if there is one.
pub async fn change(
    state: &Billing,
    user: &User,
    plan: &str,
    interval: &str,
    proration_date: Option<i64>,
) -> Result<Changed, AppError> {
    let target = target(state, plan, interval)?;
    let now = state.clock.now();
    let date = proration_date.unwrap_or(now);
    if date > now || date < now.saturating_sub(PREVIEW_LIFETIME_SECS) {
        return Err(AppError::PreviewExpired);
    }
    let live = live(state, user).await?.ok_or(AppError::NoSubscription)?;
    changeable(&live)?;
    let mut changed = Changed {
        plan: target.plan.id.clone(),
        interval: target.interval,
        effective: Effective::Now,
        effective_at: now,
    };
    if live.price == target.price {
        let Some(schedule) = live.schedule() else {
            return Err(AppError::SamePlan);
        };
        schedule::release(state, schedule).await?;
        sync_subscription(state, live.id(), None).await?;
        return Ok(changed);
    }
    match effective(state, &live, &target) {
        Effective::PeriodEnd => {
            schedule::at_period_end(state, &live, &target.price).await?;
            changed.effective = Effective::PeriodEnd;
            changed.effective_at = live.period.1;
        }
        Effective::Now => {
            if let Some(schedule) = live.schedule() {
                schedule::release(state, schedule).await?;
            }
            switch_now(state, user, &live, &target.price, date).await?;
        }
    }
    sync_subscription(state, live.id(), None).await?;
    Ok(changed)
}

/// The price change itself: prorated from `date`, invoiced and charged at once; a declined card
/// changes nothing. The idempotency key names the change (who, which subscription, from and to
/// which price, from when), so a double submit is one change, and a retry after a decline (a new
/// preview, a new date) is a new one.
async fn switch_now(
    state: &Billing,
    user: &User,
    live: &Live,
    price: &str,
    date: i64,
) -> Result<(), AppError> {
    let digest = Sha256::digest(
        format!(
            "{}|{}|{}|{}|{price}|{date}",
            user.id,
            live.id(),
            live.item,
            live.price
        )
        .as_bytes(),
    );
    let key = format!("chg_{}", hex::encode(&digest[..16]));
    let request = UpdateSubscription::new(live.id())
        .items(vec![UpdateSubscriptionItems {
            id: Some(live.item.clone()),
            price: Some(price.to_owned()),
            ..UpdateSubscriptionItems::new()
        }])
        .proration_behavior(UpdateSubscriptionProrationBehavior::AlwaysInvoice)
        .proration_date(date)
        .payment_behavior(UpdateSubscriptionPaymentBehavior::ErrorIfIncomplete);
    let answer = retrying_with_key(&key, |key| {
        let sent = request
            .customize()
            .request_strategy(idempotent(key))
            .send(&state.stripe.client);
        async move {
            match sent.await {
                Err(StripeError::Stripe(api, 402))
                    if api.type_ == stripe::ApiErrorsType::CardError =>
                {
                    Ok(None)
                }
                other => other.map(Some),
            }
        }
    })
    .await?;
    answer.map(|_| ()).ok_or(AppError::CardDeclined)
}

/// Sets (or clears) cancellation at the period end. Cancelling drops a scheduled downgrade (the
/// subscription ends instead). Asking for what is already so changes nothing. A cancellation on
/// a set date (made in Stripe's dashboard, not at the period end) is left to the portal.
pub async fn set_cancel(state: &Billing, user: &User, cancel: bool) -> Result<(), AppError> {
    let live = live(state, user).await?.ok_or(AppError::NoSubscription)?;
    if live.sub.cancel_at_period_end == cancel {
        return Ok(());
    }
    if cancel && let Some(schedule) = live.schedule() {
        schedule::release(state, schedule).await?;
    }
    let request = UpdateSubscription::new(live.id()).cancel_at_period_end(cancel);
    let key = new_id("idem_cancel");
    retrying_with_key(&key, |key| {
        request
            .customize()
            .request_strategy(idempotent(key))
            .send(&state.stripe.client)
    })
    .await?;
    sync_subscription(state, live.id(), None).await?;
    Ok(())
}
