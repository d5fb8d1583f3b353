//! A downgrade at the period end, kept by Stripe: the subscription gets a schedule (made from it)
//! with two phases, the current price to the period end, then the new price, after which the
//! schedule releases the subscription to go on by itself. Dropping the downgrade releases the
//! schedule at once. Only a schedule tollgate made (tagged in its metadata) is reused or
//! released; one made in Stripe's dashboard is left alone (see `Live::schedule`).

use stripe::StripeRequest as _;
use stripe_billing::subscription_schedule::{
    CreateSubscriptionSchedule, ReleaseSubscriptionSchedule, UpdateSubscriptionSchedule,
    UpdateSubscriptionSchedulePhases, UpdateSubscriptionSchedulePhasesDuration,
    UpdateSubscriptionSchedulePhasesDurationInterval, UpdateSubscriptionSchedulePhasesEndDate,
    UpdateSubscriptionSchedulePhasesItems, UpdateSubscriptionSchedulePhasesProrationBehavior,
    UpdateSubscriptionSchedulePhasesStartDate,
};
use stripe_billing::{SubscriptionSchedule, SubscriptionScheduleEndBehavior};

use super::Live;
use crate::{
    billing::{
        Billing,
        catalog::Interval,
        stripe::{idempotent, retrying, retrying_with_key},
    },
    error::AppError,
    ids::new_id,
};

/// Schedules `live`'s move to `price` at the end of its period.
pub(super) async fn at_period_end(
    state: &Billing,
    live: &Live,
    price: &str,
) -> Result<(), AppError> {
    let schedule = match live.sub.schedule.as_ref().and_then(|s| s.as_object()) {
        Some(schedule) => schedule.clone(),
        // The user's lease keeps another of their requests from attaching one meanwhile.
        None => create(state, live).await?,
    };
    // The current phase keeps its start; it ends with the period paid for.
    let start = schedule
        .current_phase
        .as_ref()
        .map(|p| p.start_date)
        .or_else(|| schedule.phases.first().map(|p| p.start_date))
        .unwrap_or(live.period.0);
    let item = |price: &str| UpdateSubscriptionSchedulePhasesItems {
        price: Some(price.to_owned()),
        quantity: Some(live.quantity),
        ..UpdateSubscriptionSchedulePhasesItems::new()
    };
    let mut current = UpdateSubscriptionSchedulePhases::new(vec![item(&live.price)]);
    current.start_date = Some(UpdateSubscriptionSchedulePhasesStartDate::Timestamp(start));
    current.end_date = Some(UpdateSubscriptionSchedulePhasesEndDate::Timestamp(
        live.period.1,
    ));
    current.proration_behavior = Some(UpdateSubscriptionSchedulePhasesProrationBehavior::None);
    let interval = match state.catalog.offer(price).map(|(_, i, _)| i) {
        Some(Interval::Year) => UpdateSubscriptionSchedulePhasesDurationInterval::Year,
        _ => UpdateSubscriptionSchedulePhasesDurationInterval::Month,
    };
    let mut next = UpdateSubscriptionSchedulePhases::new(vec![item(price)]);
    next.duration = Some(UpdateSubscriptionSchedulePhasesDuration::new(interval));
    next.proration_behavior = Some(UpdateSubscriptionSchedulePhasesProrationBehavior::None);
    let tag = std::collections::HashMap::from([(
        super::SCHEDULE_TAG.0.to_owned(),
        super::SCHEDULE_TAG.1.to_owned(),
    )]);
    let request = UpdateSubscriptionSchedule::new(schedule.id.as_str())
        .phases(vec![current, next])
        .end_behavior(SubscriptionScheduleEndBehavior::Release)
        .metadata(tag);
    // Setting the same phases twice is harmless; each attempt has its own key.
    let key = new_id("idem_sched");
    retrying_with_key(&key, |key| {
        request
            .customize()
            .request_strategy(idempotent(key))
            .send(&state.stripe.client)
    })
    .await?;
    Ok(())
}

/// A schedule made from `live`: one phase, as the subscription is.
async fn create(state: &Billing, live: &Live) -> Result<SubscriptionSchedule, AppError> {
    let request = CreateSubscriptionSchedule::new().from_subscription(live.id());
    // Stripe attaches at most one schedule to a subscription, so a second attempt is refused,
    // never a second schedule; a key per attempt (a fixed one would replay a schedule released
    // since).
    let key = new_id("idem_mksched");
    retrying_with_key(&key, |key| {
        request
            .customize()
            .request_strategy(idempotent(key))
            .send(&state.stripe.client)
    })
    .await
}

/// Releases schedule `id`: the subscription goes on as it is now.
pub(super) async fn release(state: &Billing, id: &str) -> Result<(), AppError> {
    let request = ReleaseSubscriptionSchedule::new(id);
    retrying(|| request.send(&state.stripe.client)).await?;
    Ok(())
}
