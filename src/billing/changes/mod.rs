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

mod cancel;
mod lease;
mod live;
mod schedule;
pub mod summary;

pub use cancel::set_cancel;
pub(crate) use live::{Live, SCHEDULE_TAG, live};

use serde::{Deserialize, Serialize};
use stripe::{StripeError, StripeRequest as _};
use stripe_billing::{
    SubscriptionStatus,
    invoice::{
        CreatePreviewInvoice, CreatePreviewInvoiceSubscriptionDetails,
        CreatePreviewInvoiceSubscriptionDetailsItems,
        CreatePreviewInvoiceSubscriptionDetailsProrationBehavior,
        CreatePreviewInvoiceSubscriptionDetailsTrialEnd,
    },
    subscription::{
        UpdateSubscription, UpdateSubscriptionItems, UpdateSubscriptionPaymentBehavior,
        UpdateSubscriptionProrationBehavior, UpdateSubscriptionTrialEnd,
    },
};

use crate::{
    auth::users::User,
    billing::{
        Billing,
        catalog::{Interval, Plan},
        checkout::sync_subscription,
        stripe::{idempotent, retrying, retrying_with_key, within_deadline},
    },
    error::AppError,
    ids::new_id,
};

/// How old a preview's `proration_date` may be when the change is confirmed.
pub const PREVIEW_LIFETIME_SECS: i64 = 600;

/// How far ahead of tollgate's clock a preview's `proration_date` (Stripe's clock) may be.
const CLOCK_SKEW_SECS: i64 = 60;

/// When a change takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effective {
    /// At once.
    Now,
    /// At the end of the period paid for.
    PeriodEnd,
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

/// How a change of `live` to `target` is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// At once, prorated and charged now.
    Now,
    /// At once during a trial to a plan with a trial: the trial goes on, nothing is charged.
    InTrial,
    /// At once during a trial to a plan without one: the trial ends and the new price is charged.
    EndingTrial,
    /// At the end of the period paid for, on a schedule.
    PeriodEnd,
}

fn way(state: &Billing, live: &Live, target: &Target) -> Way {
    if live.sub.status == SubscriptionStatus::Trialing {
        // A trial is the trial of a plan: moving to a plan without one ends it.
        return if target.plan.trial_days.is_some() {
            Way::InTrial
        } else {
            Way::EndingTrial
        };
    }
    let current = state
        .catalog
        .offer(&live.price)
        .map(|(plan, interval, _)| (plan.tier, interval));
    // A price the catalog does not offer (a legacy price): any catalog plan is a step up.
    let Some((tier, interval)) = current else {
        return Way::Now;
    };
    let upgrade = target.plan.tier > tier
        || (target.plan.tier == tier
            && interval == Interval::Month
            && target.interval == Interval::Year);
    if upgrade || !state.config.downgrades_at_period_end {
        Way::Now
    } else {
        Way::PeriodEnd
    }
}

/// Refuses a change `live` cannot take: a payment outstanding, a cancellation set, or a schedule
/// made outside tollgate.
fn changeable(live: &Live) -> Result<(), AppError> {
    if live.arranged_elsewhere() {
        return Err(AppError::SubscriptionManaged);
    }
    match live.sub.status {
        SubscriptionStatus::Active | SubscriptionStatus::Trialing => {}
        _ => return Err(AppError::PaymentPastDue),
    }
    if live.sub.cancel_at_period_end || live.sub.cancel_at.is_some() {
        return Err(AppError::SubscriptionCancelling);
    }
    live.own_schedule()?;
    Ok(())
}

/// One line of a preview.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PreviewLine {
    /// Stripe's description ("Unused time on Pro after …").
    pub description: String,
    /// Minor units; negative for a credit.
    pub amount: i64,
}

/// What a plan change would do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
    /// Left on the account as credit now (minor units): unused time worth more than the change
    /// costs. Stripe applies it to the next invoices; it is not refunded.
    pub credit: i64,
    /// ISO currency, lower case.
    pub currency: String,
    /// The lines of the charge made now (empty when nothing is charged now).
    pub lines: Vec<PreviewLine>,
    /// The recurring price from then on (minor units per interval).
    pub recurring_amount: i64,
    /// Whether the change ends a free trial.
    pub ends_trial: bool,
    /// Pass back to confirm: the moment (Stripe's clock) the proration is computed for.
    pub proration_date: i64,
}

/// Previews moving the user's subscription to `plan` billed every `interval`.
pub async fn preview(
    state: &Billing,
    user: &User,
    plan: &str,
    interval: &str,
) -> Result<Preview, AppError> {
    within_deadline(preview_now(state, user, plan, interval)).await
}

async fn preview_now(
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
    let way = way(state, &live, &target);
    let mut preview = Preview {
        plan: target.plan.id.clone(),
        plan_name: target.plan.name.clone(),
        interval: target.interval,
        effective: Effective::Now,
        effective_at: now,
        amount_due: 0,
        credit: 0,
        currency: target.currency.clone(),
        lines: Vec::new(),
        recurring_amount: target.amount * live.quantity as i64,
        ends_trial: way == Way::EndingTrial,
        proration_date: now,
    };
    if way == Way::PeriodEnd {
        preview.effective = Effective::PeriodEnd;
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
    if way == Way::EndingTrial {
        details.trial_end = Some(CreatePreviewInvoiceSubscriptionDetailsTrialEnd::Now);
    }
    // No proration date is sent: Stripe prorates from its own clock and says which moment it
    // used, and the confirmation sends that moment back.
    let request = CreatePreviewInvoice::new()
        .customer(customer)
        .subscription(live.id())
        .subscription_details(details);
    let invoice = retrying(|| request.send(&state.stripe.client)).await?;
    preview.amount_due = invoice.amount_due;
    preview.credit = (-invoice.total).max(0);
    preview.currency = invoice.currency.to_string();
    preview.proration_date = invoice
        .parent
        .as_ref()
        .and_then(|p| p.subscription_details.as_ref())
        .and_then(|d| d.subscription_proration_date)
        .unwrap_or(now);
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Changed {
    /// The plan now held or scheduled.
    pub plan: String,
    /// `month` or `year`.
    pub interval: Interval,
    /// When it takes (or took) effect.
    pub effective: Effective,
    /// When (Unix seconds).
    pub effective_at: i64,
    /// True when the request asked for the plan already held and dropped a scheduled downgrade.
    pub scheduled_change_dropped: bool,
}

/// Moves the user's subscription to `plan` billed every `interval`, prorated from
/// `proration_date` (a preview's, at most [`PREVIEW_LIFETIME_SECS`] old and within the current
/// period; Stripe's now when absent). Asking for the price the subscription already has drops a
/// scheduled downgrade, if there is one. One change per user at a time (a lease, across
/// instances), all of it within the request deadline.
pub async fn change(
    state: &Billing,
    user: &User,
    plan: &str,
    interval: &str,
    proration_date: Option<i64>,
) -> Result<Changed, AppError> {
    let target = target(state, plan, interval)?;
    let (changed, sub_id) = within_deadline(async {
        let lease = lease::take(&state.db, &user.id).await?;
        let changed = change_held(state, user, &target, proration_date).await;
        lease.release().await;
        changed
    })
    .await?;
    // Stripe has taken the change: the answer is success whatever the local follow-up meets (the
    // webhook brings the same state if this cannot).
    if let Err(e) = sync_subscription(state, &sub_id, None).await {
        tracing::warn!(error = %e, "subscription not re-read after a plan change; the webhook will bring it");
    }
    Ok(changed)
}

/// Whether a preview's moment `date` may be charged now: not more than 10 minutes old nor more
/// than a minute ahead by tollgate's clock (Stripe's is the same within seconds), and inside the
/// current period. A subscription on a Stripe test clock runs on that clock, which only Stripe
/// knows: there the period alone bounds it, and Stripe refuses a moment in its future.
fn date_valid(state: &Billing, live: &Live, date: i64) -> bool {
    let now = state.clock.now();
    let on_test_clock = live.sub.test_clock.is_some();
    date >= live.period.0
        && (on_test_clock
            || (date <= now.saturating_add(CLOCK_SKEW_SECS)
                && date >= now.saturating_sub(PREVIEW_LIFETIME_SECS)))
}

async fn change_held(
    state: &Billing,
    user: &User,
    target: &Target<'_>,
    date: Option<i64>,
) -> Result<(Changed, String), AppError> {
    let live = live(state, user).await?.ok_or(AppError::NoSubscription)?;
    changeable(&live)?;
    let sub_id = live.id().to_owned();
    let mut changed = Changed {
        plan: target.plan.id.clone(),
        interval: target.interval,
        effective: Effective::Now,
        effective_at: state.clock.now(),
        scheduled_change_dropped: false,
    };
    if live.price == target.price {
        let Some(schedule) = live.own_schedule()? else {
            return Err(AppError::SamePlan);
        };
        schedule::release(state, schedule).await?;
        changed.scheduled_change_dropped = true;
        return Ok((changed, sub_id));
    }
    if date.is_some_and(|d| !date_valid(state, &live, d)) {
        return Err(AppError::PreviewExpired);
    }
    match way(state, &live, target) {
        Way::PeriodEnd => {
            schedule::at_period_end(state, &live, &target.price).await?;
            changed.effective = Effective::PeriodEnd;
            changed.effective_at = live.period.1;
        }
        way => {
            let scheduled = released_for(state, &live).await?;
            if let Err(e) = switch_now(state, &live, &target.price, date, way).await {
                restore(state, user, scheduled).await;
                return Err(e);
            }
        }
    }
    Ok((changed, sub_id))
}

/// Releases `live`'s own schedule, if it has one, before a change Stripe makes on the
/// subscription itself; returns the price it was moving to, so a refused change can put the
/// downgrade back ([`restore`]).
pub(super) async fn released_for(state: &Billing, live: &Live) -> Result<Option<String>, AppError> {
    let Some(schedule) = live.own_schedule()? else {
        return Ok(None);
    };
    let next = summary::scheduled_price(live);
    schedule::release(state, schedule).await?;
    Ok(next)
}

/// Schedules again the downgrade to `price` that a refused change released: a refusal changes
/// nothing the user can see. Logged when it cannot be done.
pub(super) async fn restore(state: &Billing, user: &User, price: Option<String>) {
    let Some(price) = price else {
        return;
    };
    let restored = async {
        let live = live(state, user).await?.ok_or(AppError::NoSubscription)?;
        schedule::at_period_end(state, &live, &price).await
    };
    if let Err(e) = restored.await {
        tracing::error!(error = %e, "a scheduled downgrade released for a refused change was not put back");
    }
}

/// What Stripe said to a price change.
enum Switched {
    Done,
    Declined,
    DateRefused,
}

/// The price change itself: prorated from `date`, invoiced and charged at once; a declined card
/// changes nothing. Each attempt has its own idempotency key: the lease makes changes one at a
/// time, and a retry after a declined card (fixed since) must reach Stripe, not a replay.
async fn switch_now(
    state: &Billing,
    live: &Live,
    price: &str,
    date: Option<i64>,
    way: Way,
) -> Result<(), AppError> {
    let mut request = UpdateSubscription::new(live.id())
        .items(vec![UpdateSubscriptionItems {
            id: Some(live.item.clone()),
            price: Some(price.to_owned()),
            ..UpdateSubscriptionItems::new()
        }])
        .proration_behavior(UpdateSubscriptionProrationBehavior::AlwaysInvoice)
        .payment_behavior(UpdateSubscriptionPaymentBehavior::ErrorIfIncomplete);
    if let Some(date) = date {
        request = request.proration_date(date);
    }
    if way == Way::EndingTrial {
        request = request.trial_end(UpdateSubscriptionTrialEnd::Now);
    }
    let key = new_id("idem_change");
    let answer = retrying_with_key(&key, |key| {
        let sent = request
            .customize()
            .request_strategy(idempotent(key))
            .send(&state.stripe.client);
        async move {
            match sent.await {
                Ok(_) => Ok(Switched::Done),
                Err(StripeError::Stripe(api, 402))
                    if api.type_ == stripe::ApiErrorsType::CardError =>
                {
                    Ok(Switched::Declined)
                }
                // Stripe's clock or period disagrees with the preview's moment.
                Err(StripeError::Stripe(api, 400))
                    if api.param.as_deref() == Some("proration_date") =>
                {
                    Ok(Switched::DateRefused)
                }
                Err(e) => Err(e),
            }
        }
    })
    .await?;
    match answer {
        Switched::Done => Ok(()),
        Switched::Declined => Err(AppError::CardDeclined),
        Switched::DateRefused => Err(AppError::PreviewExpired),
    }
}
