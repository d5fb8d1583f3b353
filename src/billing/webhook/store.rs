//! Step 3: store the event once (its id is the key of `stripe_events`), then apply it, in the
//! caller's transaction.

use super::{
    FollowUp, Recorded,
    apply::apply,
    event::{Event, Outcome},
};
use crate::{billing::Billing, error::AppError};

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
    let inserted: Option<(Option<String>,)> = sqlx::query_as(
        "INSERT INTO stripe_events (id, type, created, customer_id, outcome, received_at) \
         VALUES ($1, $2, $3, $4, 'applied', $5) ON CONFLICT (id) DO NOTHING \
         RETURNING (SELECT user_id FROM billing_customers \
                    WHERE stripe_customer_id = $4 AND deleted = 0)",
    )
    .bind(&event.id)
    .bind(event.kind.as_str())
    .bind(event.created)
    .bind(&customer)
    // Tollgate's clock, as the moments of asking Stripe are (see `subscriptions::clock_lead`).
    .bind(state.clock.now())
    .fetch_optional(&mut **tx)
    .await?;
    let Some((user,)) = inserted else {
        return Ok(Recorded {
            event: event.id.clone(),
            outcome: Outcome::Duplicate,
            user: None,
            follow_up: None,
        });
    };
    let mut follow: Option<FollowUp> = None;
    // A test-mode event must never change what a live key's users have, nor the reverse: it is
    // recorded, not applied.
    let outcome = if event.livemode.is_some_and(|l| l != live_key(state)) {
        tracing::warn!(event = %event.id, "webhook event from the other Stripe mode not applied");
        Outcome::WrongMode
    } else {
        apply(
            state,
            tx,
            event,
            customer.as_deref(),
            user.as_deref(),
            &mut follow,
        )
        .await?
    };
    if outcome != Outcome::Applied {
        sqlx::query("UPDATE stripe_events SET outcome = $1 WHERE id = $2")
            .bind(outcome.as_str())
            .bind(&event.id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(Recorded {
        event: event.id.clone(),
        outcome,
        user,
        follow_up: follow,
    })
}

/// True when the configured key is a live-mode key (`sk_live_…`, `rk_live_…`); the simulator and
/// test keys are test mode.
fn live_key(state: &Billing) -> bool {
    state
        .config
        .stripe_secret_key
        .as_ref()
        .is_some_and(|k| crate::config::is_live_key(k.expose()))
}
