//! The `/v1` HTTP API: the part of Stripe's API tollgate uses, one file per kind of object.

mod checkout;
mod customers;
mod prices;
mod schedules;
mod subscriptions;

use axum::Router;

use super::Simulator;

/// Every `/v1` route.
pub(super) fn router() -> Router<Simulator> {
    Router::new()
        .merge(customers::routes())
        .merge(prices::routes())
        .merge(checkout::routes())
        .merge(subscriptions::routes())
        .merge(schedules::routes())
}
