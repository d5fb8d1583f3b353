//! Cancelling at the period end, and resuming, in-app.

use stripe::StripeRequest as _;
use stripe_billing::subscription::UpdateSubscription;

use super::{lease, live, released_for, restore};
use crate::{
    auth::users::User,
    billing::{
        Billing,
        checkout::sync_subscription,
        stripe::{idempotent, retrying_with_key, within_deadline},
    },
    error::AppError,
    ids::new_id,
};

/// Sets (or clears) cancellation at the period end. Cancelling drops a scheduled downgrade (the
/// subscription ends instead). Asking for what is already so changes nothing. A cancellation on
/// a set date (made in Stripe's dashboard, not at the period end), or a schedule made there, is
/// left to the portal and the billing team.
pub async fn set_cancel(state: &Billing, user: &User, cancel: bool) -> Result<(), AppError> {
    let sub_id = within_deadline(async {
        let lease = lease::take(&state.db, &user.id).await?;
        let done = set_cancel_held(state, user, cancel).await;
        lease.release().await;
        done
    })
    .await?;
    if let Some(sub_id) = sub_id
        && let Err(e) = sync_subscription(state, &sub_id, None).await
    {
        tracing::warn!(error = %e, "subscription not re-read after a cancellation change; the webhook will bring it");
    }
    Ok(())
}

/// The cancellation change; the subscription to re-read when something changed.
async fn set_cancel_held(
    state: &Billing,
    user: &User,
    cancel: bool,
) -> Result<Option<String>, AppError> {
    let live = live(state, user).await?.ok_or(AppError::NoSubscription)?;
    if live.arranged_elsewhere() {
        return Err(AppError::SubscriptionManaged);
    }
    if live.sub.cancel_at_period_end == cancel {
        return Ok(None);
    }
    // Stripe refuses cancellation changes on a subscription a schedule manages.
    let scheduled = released_for(state, &live).await?;
    let request = UpdateSubscription::new(live.id()).cancel_at_period_end(cancel);
    let key = new_id("idem_cancel");
    let sent = retrying_with_key(&key, |key| {
        request
            .customize()
            .request_strategy(idempotent(key))
            .send(&state.stripe.client)
    })
    .await;
    if let Err(e) = sent {
        restore(state, user, scheduled).await;
        return Err(e);
    }
    Ok(Some(live.id().to_owned()))
}
