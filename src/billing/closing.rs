//! Account deletion leaves nothing billing behind: open Checkout Sessions are expired, and every
//! live subscription Stripe lists for the customer (not only those stored here) is canceled.
//! A subscription that still shows up later for a deleted account's customer is canceled in
//! Stripe when its event arrives, and the event is recorded as `orphan_canceled`.

use stripe::StripeRequest as _;
use stripe_billing::subscription::{CancelSubscription, RetrieveSubscription};
use stripe_checkout::checkout_session::ExpireCheckoutSession;

use super::status::Status;
use crate::{
    billing::Billing,
    billing::{
        checkout::attempts::{self, Attempt, AttemptState},
        customers, event_log,
        stripe::{
            absent_as_none, idempotent, is_missing, retrying, retrying_with_key, within_deadline,
        },
        subscriptions, sync,
    },
    error::AppError,
};

/// Expires the user's open Checkout Sessions and cancels every live subscription of the user,
/// in Stripe first, then here. Stripe unreachable: 503 with nothing changed locally beyond what
/// Stripe already did (a retry finishes the job).
pub async fn close_for_deletion(state: &Billing, user_id: &str) -> Result<(), AppError> {
    within_deadline(close(state, user_id)).await
}

async fn close(state: &Billing, user_id: &str) -> Result<(), AppError> {
    // Open ones, and those tollgate let go as expired while Stripe's clock may still hold them
    // open (a session lives at most a day; an hour of slack for the clocks).
    let open = attempts::closable(&state.db, user_id, state.clock.now() - 3_600).await?;
    for Attempt {
        session,
        state: was,
        ..
    } in open
    {
        let Some(session) = session else { continue };
        let request = ExpireCheckoutSession::new(session.as_str());
        let let_go = was == AttemptState::Expired;
        let expired = retrying(|| async {
            match request.send(&state.stripe.client).await {
                // Not open any more (paid, or expired): a paid one's subscription is listed below.
                // Stripe says so with a 400 that carries no code; a coded 400 is a real error,
                // unless tollgate had already let the session go (then any 400 says it is over).
                Err(stripe::StripeError::Stripe(api, 400)) if api.code.is_none() || let_go => {
                    Ok(())
                }
                // A session Stripe no longer knows has nothing left to expire.
                Err(e) if is_missing(&e) => Ok(()),
                answer => answer.map(|_| ()),
            }
        })
        .await;
        expired?;
    }
    let mut ids: Vec<String> = subscriptions::for_user(&state.db, user_id)
        .await?
        .into_iter()
        .filter(|s| !s.status.is_terminal())
        .map(|s| s.id)
        .collect();
    // Stripe's list, not only ours: a subscription whose webhooks have not landed is charged too.
    if let Some(customer) = customers::customer_of(state, user_id).await? {
        for snap in sync::list_subscriptions(state, &customer).await? {
            if !snap.status.is_terminal() && !ids.contains(&snap.id) {
                ids.push(snap.id);
            }
        }
    }
    for id in ids {
        cancel_in_stripe(state, &id, &format!("delete_{user_id}_{id}")).await?;
        subscriptions::cancel_locally(state, &id, user_id, state.clock.now()).await?;
    }
    Ok(())
}

/// Cancels a subscription in Stripe at once. One Stripe does not know (`resource_missing`) is
/// as good as canceled.
pub async fn cancel_in_stripe(state: &Billing, id: &str, key: &str) -> Result<(), AppError> {
    let request = CancelSubscription::new(id);
    retrying_with_key(key, |key| {
        let sent = request
            .customize()
            .request_strategy(idempotent(key))
            .send(&state.stripe.client);
        async move { absent_as_none(sent.await, is_missing) }
    })
    .await
    .map(|_| ())
}

/// A subscription event for the customer of a deleted account: if Stripe still has the
/// subscription live, cancel it there, and record that on the event.
pub async fn cancel_orphan(state: &Billing, event: &str, id: &str) -> Result<(), AppError> {
    let request = RetrieveSubscription::new(id);
    let found =
        retrying(|| async { absent_as_none(request.send(&state.stripe.client).await, is_missing) })
            .await?;
    if found.is_none_or(|s| Status::parse(s.status.as_str()).is_terminal()) {
        return Ok(());
    }
    cancel_in_stripe(state, id, &format!("orphan_{id}")).await?;
    event_log::set_outcome(
        &mut *state.db.pool.acquire().await?,
        event,
        "orphan_canceled",
    )
    .await?;
    tracing::info!(
        subscription = id,
        "subscription of a deleted account canceled in Stripe"
    );
    Ok(())
}
