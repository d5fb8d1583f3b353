//! The user's live subscription as Stripe has it when asked: the one thing every change decides
//! on.

use stripe_billing::{Subscription, SubscriptionStatus, subscription::RetrieveSubscription};

use crate::{
    auth::users::User,
    billing::{
        Billing, customers,
        stripe::{absent_as_none, is_missing, retrying},
        subscriptions,
    },
    error::AppError,
};

/// The metadata a schedule tollgate made carries.
pub(crate) const SCHEDULE_TAG: (&str, &str) = ("tollgate", "plan_change");

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

    /// The schedule attached to it, if any, and whether tollgate may change or release it: one
    /// tollgate made (its metadata says so), or a bare mirror of the subscription as
    /// `from_subscription` makes it (no metadata, one phase of the subscription's one price to the
    /// period end, no discount, no trial, then release), which changes nothing when released. Any
    /// other (a price rise, a coupon's or a trial's phase set in Stripe's dashboard) is left
    /// alone.
    pub(crate) fn schedule(&self) -> Option<(&str, bool)> {
        let schedule = self.sub.schedule.as_ref()?;
        let ours = schedule.as_object().is_some_and(|s| {
            let metadata = s.metadata.as_ref();
            let tagged = metadata
                .and_then(|m| m.get(SCHEDULE_TAG.0))
                .is_some_and(|v| v == SCHEDULE_TAG.1);
            let mirror = metadata.is_none_or(|m| m.is_empty())
                && s.end_behavior == stripe_billing::SubscriptionScheduleEndBehavior::Release
                && matches!(s.phases.as_slice(), [phase]
                    if phase.end_date == self.period.1
                        && phase.discounts.is_empty()
                        && phase.trial_end.is_none()
                        && matches!(phase.items.as_slice(), [item]
                            if item.price.id().as_str() == self.price && item.discounts.is_empty()));
            tagged || mirror
        });
        Some((schedule.id().as_str(), ours))
    }

    /// Whether the subscription was arranged outside tollgate in a way tollgate must not undo: a
    /// cancellation on a set date (not at the period end), or several items.
    pub(crate) fn arranged_elsewhere(&self) -> bool {
        (self.sub.cancel_at.is_some() && !self.sub.cancel_at_period_end)
            || self.sub.items.data.len() != 1
    }

    /// The schedule tollgate may release, if one is attached; a foreign one is 409
    /// `subscription_managed`.
    pub(crate) fn own_schedule(&self) -> Result<Option<&str>, AppError> {
        match self.schedule() {
            None => Ok(None),
            Some((id, true)) => Ok(Some(id)),
            Some((_, false)) => Err(AppError::SubscriptionManaged),
        }
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
