//! Step 4: apply an event by kind, one function each, inside the transaction that stored it. A
//! function that needs Stripe after the commit says so in `follow`.

use serde_json::Value;

use super::{
    FollowUp,
    event::{Event, Kind, Outcome},
};
use crate::{
    billing::{
        Billing,
        checkout::{self, AttemptState},
        customers,
        subscriptions::{self, Applied, Snapshot, id_of},
    },
    email,
    error::AppError,
};

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Applies one stored event. `customer` is the customer it names, `user` that customer's user.
pub(super) async fn apply(
    state: &Billing,
    tx: &mut Tx,
    event: &Event,
    customer: Option<&str>,
    user: Option<&str>,
    follow: &mut Option<FollowUp>,
) -> Result<Outcome, AppError> {
    match &event.kind {
        Kind::SubscriptionChanged(_) | Kind::TrialWillEnd => {
            subscription_changed(state, tx, event, user, follow).await
        }
        Kind::CheckoutCompleted(_) => checkout_completed(tx, event, user, follow).await,
        Kind::CheckoutExpired => checkout_expired(tx, event).await,
        Kind::PaymentFailed | Kind::PaymentActionRequired => {
            payment_failed(state, tx, event, user).await
        }
        // Renewal state arrives with customer.subscription.updated, and Stripe never changes the
        // login identity (the user's email is not touched by customer.updated): recorded.
        Kind::InvoicePaid(_) | Kind::CustomerUpdated => Ok(if user.is_some() {
            Outcome::Recorded
        } else {
            Outcome::Orphan
        }),
        Kind::CustomerDeleted => customer_deleted(tx, event, customer).await,
        Kind::Other(_) => Ok(Outcome::Ignored),
    }
}

/// `customer.subscription.*`: the state in the event, ordered against the stored one.
async fn subscription_changed(
    state: &Billing,
    tx: &mut Tx,
    event: &Event,
    user: Option<&str>,
    follow: &mut Option<FollowUp>,
) -> Result<Outcome, AppError> {
    let Some(snap) = Snapshot::from_json(&event.object) else {
        return Ok(Outcome::Ignored);
    };
    let Some(user) = user else {
        // A deleted account is never charged: what still appears for it is canceled.
        if !snap.status.is_terminal() && customers::of_deleted_account(tx, &snap.customer).await? {
            *follow = Some(FollowUp::CancelOrphan(snap.id));
        }
        return Ok(Outcome::Orphan);
    };
    let stamp = subscriptions::Stamp::event(event.created);
    let outcome = match subscriptions::apply(tx, &state.catalog, &snap, user, stamp).await? {
        Applied::Applied => Outcome::Applied,
        Applied::Stale => Outcome::Stale,
        Applied::Tie(at) => {
            *follow = Some(FollowUp::Refetch(snap.id.clone(), Some(at)));
            Outcome::Refetched
        }
    };
    // The notice says what happens next by the state as it now stands (a cancellation made
    // after Stripe sent the event included), not by the event's copy.
    if event.kind == Kind::TrialWillEnd {
        notify(state, tx, user, event, &snap.id).await?;
    }
    Ok(outcome)
}

/// `checkout.session.completed`: the attempt is complete, and the subscription it made is
/// fetched from Stripe after the commit.
async fn checkout_completed(
    tx: &mut Tx,
    event: &Event,
    user: Option<&str>,
    follow: &mut Option<FollowUp>,
) -> Result<Outcome, AppError> {
    let Some(user) = user else {
        return Ok(Outcome::Orphan);
    };
    let object = &event.object;
    let reference = object.get("client_reference_id").and_then(Value::as_str);
    if reference.is_some_and(|r| r != user) {
        // Never attach to a guess: the customer and the reference disagree.
        tracing::warn!(event = %event.id, "checkout session reference does not match its customer");
        return Ok(Outcome::Orphan);
    }
    if let Some(session) = object.get("id").and_then(Value::as_str) {
        checkout::mark_session(tx, session, AttemptState::Complete).await?;
    }
    let subscription = object.get("subscription").and_then(id_of);
    let entry = crate::audit::Entry {
        kind: crate::audit::Kind::CheckoutCompleted,
        actor: "stripe",
        subject: Some(user),
        payload: serde_json::json!({
            "session": object.get("id"),
            "subscription": subscription,
            "stripe_event": event.id,
        }),
    };
    crate::audit::record(tx, event.created, entry).await?;
    *follow = subscription.map(|s| FollowUp::Refetch(s, None));
    Ok(Outcome::Applied)
}

/// `checkout.session.expired`: the attempt is over.
async fn checkout_expired(tx: &mut Tx, event: &Event) -> Result<Outcome, AppError> {
    if let Some(session) = event.object.get("id").and_then(Value::as_str) {
        checkout::mark_session(tx, session, AttemptState::Expired).await?;
    }
    Ok(Outcome::Applied)
}

/// `invoice.payment_failed` / `invoice.payment_action_required`: the past-due episode starts (and
/// a failed payment is mailed to the user).
async fn payment_failed(
    state: &Billing,
    tx: &mut Tx,
    event: &Event,
    user: Option<&str>,
) -> Result<Outcome, AppError> {
    let Some(user) = user else {
        return Ok(Outcome::Orphan);
    };
    let Some(sub) = invoice_subscription(&event.object) else {
        return Ok(Outcome::Ignored);
    };
    let marked = subscriptions::mark_payment_failed(tx, &sub, event.created).await?;
    if marked == 0 && subscriptions::paid_since(tx, &sub, event.created).await? {
        // A failure from before a state that shows the subscription paid for (a retry went
        // through, and its events came first): no past-due episode, and no email asking for a
        // new card. A newer past-due or ended state still gets the notice.
        return Ok(Outcome::Stale);
    }
    if event.kind == Kind::PaymentFailed {
        notify(state, tx, user, event, &sub).await?;
    }
    let entry = crate::audit::Entry {
        kind: crate::audit::Kind::PaymentFailed,
        actor: "stripe",
        subject: Some(user),
        payload: serde_json::json!({
            "subscription": sub,
            "invoice": event.object.get("id"),
            "action_required": event.kind == Kind::PaymentActionRequired,
            "stripe_event": event.id,
        }),
    };
    crate::audit::record(tx, event.created, entry).await?;
    Ok(Outcome::Applied)
}

/// `customer.deleted`: the customer is gone, and its subscriptions with it.
async fn customer_deleted(
    tx: &mut Tx,
    event: &Event,
    customer: Option<&str>,
) -> Result<Outcome, AppError> {
    let Some(customer) = customer else {
        return Ok(Outcome::Ignored);
    };
    customers::mark_deleted(tx, customer).await?;
    subscriptions::cancel_for_deleted_customer(tx, customer, event.created).await?;
    Ok(Outcome::Applied)
}

/// Queues the billing notice of `event` about subscription `sub_id` for `user_id`, once per
/// Stripe event id, worded for the subscription's state as tollgate now knows it: a trial that
/// ends in a cancellation says no charge follows, one that goes on says what is charged; a failed
/// payment of a subscription that has ended says so instead of asking for a new card. A trial
/// notice for a subscription that has already ended is not sent.
async fn notify(
    state: &Billing,
    tx: &mut Tx,
    user_id: &str,
    event: &Event,
    sub_id: &str,
) -> Result<(), AppError> {
    let Some(user) = crate::auth::users::find_by_id_on(tx, user_id).await? else {
        return Ok(());
    };
    let priced = subscriptions::priced_on(tx, sub_id).await?;
    let row = priced.as_ref().map(|p| &p.row);
    let ended = row.is_some_and(|r| r.status.is_terminal());
    let cancelling = row.is_some_and(|r| r.cancel_at_period_end || r.cancel_at.is_some());
    let plan = row
        .and_then(|r| r.plan_id.as_deref())
        .and_then(|p| state.catalog.plan(p));
    let plan_name = plan.map_or("your".to_owned(), |p| p.name.clone());
    let free_name = state.catalog.free_plan().map(|p| p.name.clone());
    let (kind, context) = match event.kind {
        Kind::TrialWillEnd => {
            if ended {
                return Ok(());
            }
            let trial_end = row
                .and_then(|r| r.trial_end)
                .map(crate::clock::date)
                .unwrap_or_default();
            // What the card is charged when the trial ends: the catalog's price for the
            // subscription's Stripe price.
            let price = priced
                .as_ref()
                .and_then(|p| p.price_id.as_deref())
                .and_then(|id| state.catalog.offer(id))
                .map(|(_, interval, pr)| {
                    (
                        crate::billing::money(pr.amount, &pr.currency),
                        interval.as_str(),
                    )
                });
            (
                email::Kind::TrialWillEnd,
                minijinja::context! {
                    plan_name,
                    trial_end,
                    cancelling,
                    free_name,
                    price => price.as_ref().map(|p| p.0.clone()),
                    interval => price.map(|p| p.1),
                },
            )
        }
        _ => (
            email::Kind::PaymentFailed,
            minijinja::context! { plan_name, ended, free_name },
        ),
    };
    email::enqueue(
        state,
        tx,
        email::Outgoing {
            kind,
            to: &user.email,
            context,
            dedupe_key: Some(format!("{}:{}", kind.as_str(), event.id)),
        },
    )
    .await?;
    Ok(())
}

/// The subscription an invoice belongs to, in current (`parent.subscription_details`) and older
/// (`subscription`) API versions.
fn invoice_subscription(invoice: &Value) -> Option<String> {
    invoice
        .pointer("/parent/subscription_details/subscription")
        .and_then(id_of)
        .or_else(|| invoice.get("subscription").and_then(id_of))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invoices_name_their_subscription_in_both_shapes() {
        let current = json!({"parent": {"subscription_details": {"subscription": "sub_1"}}});
        let older = json!({"subscription": "sub_2"});
        assert_eq!(invoice_subscription(&current).as_deref(), Some("sub_1"));
        assert_eq!(invoice_subscription(&older).as_deref(), Some("sub_2"));
    }
}
