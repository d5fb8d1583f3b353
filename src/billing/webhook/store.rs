//! Step 3: store the event once (its id is the key of `stripe_events`), then apply it, in the
//! caller's transaction.

use super::{
    FollowUp, Recorded,
    apply::apply,
    event::{Event, Outcome},
};
use crate::{
    billing::{Billing, event_log},
    error::AppError,
};

/// Stores and applies one event inside `tx`.
pub(super) async fn record(
    state: &Billing,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event: &Event,
) -> Result<Recorded, AppError> {
    let customer = event.customer();
    // The event id is the key: a duplicate (or a concurrent delivery to another instance) stops
    // here. The same statement finds the customer's user, and records the outcome as `applied`
    // (corrected below, in the same transaction, when it is something else).
    let stored = event_log::Stored {
        id: &event.id,
        kind: event.kind.as_str(),
        created: event.created,
        customer: customer.as_deref(),
        received_at: state.clock.now(),
    };
    let inserted = event_log::insert(tx, &stored).await?;
    let Some(user) = inserted else {
        // Seen before. If the process that took it stopped before its Stripe work was done, or
        // its Stripe call failed (either way it was never acknowledged), this redelivery
        // finishes the work. Work taken less than a minute ago may still be under way elsewhere:
        // this delivery is not acknowledged (a 2xx would be Stripe's last), so Stripe delivers
        // it again later, when the work is done or can be taken over.
        let now = state.clock.now();
        let settled = now - FOLLOW_UP_TAKEOVER_SECS;
        let follow_up = match event_log::take_follow_up(tx, &event.id, now, settled).await? {
            event_log::Work::Done => None,
            event_log::Work::InProgress => return Err(AppError::EventInProgress),
            event_log::Work::Taken(work) => FollowUp::decode(&work),
        };
        return Ok(Recorded {
            event: event.id.clone(),
            outcome: Outcome::Duplicate,
            user: None,
            follow_up,
        });
    };
    let mut follow: Option<FollowUp> = None;
    // A test-mode event must never change what a live key's users have, nor the reverse: it is
    // recorded, not applied.
    let outcome = if event.livemode.is_some_and(|l| l != live_key(state)) {
        tracing::warn!(event = %event.id, "webhook event from the other Stripe mode not applied");
        Outcome::WrongMode
    } else {
        let applying = apply(
            state,
            tx,
            event,
            customer.as_deref(),
            user.as_deref(),
            &mut follow,
        );
        crate::telemetry::with_stripe_event(event.id.clone(), applying).await?
    };
    if outcome != Outcome::Applied {
        event_log::set_outcome(tx, &event.id, outcome.as_str()).await?;
    }
    if let Some(work) = &follow {
        event_log::set_follow_up(tx, &event.id, &work.encode()).await?;
    }
    Ok(Recorded {
        event: event.id.clone(),
        outcome,
        user,
        follow_up: follow,
    })
}

/// How old an event's unfinished follow-up must be before a redelivery takes it over: longer
/// than any request runs (the deadline is 14 s), so the first delivery has finished or died.
const FOLLOW_UP_TAKEOVER_SECS: i64 = 60;

/// True when the configured key is a live-mode key (`sk_live_…`, `rk_live_…`); the simulator and
/// test keys are test mode.
fn live_key(state: &Billing) -> bool {
    state
        .config
        .stripe_secret_key
        .as_ref()
        .is_some_and(|k| crate::config::is_live_key(k.expose()))
}
