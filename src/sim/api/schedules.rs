//! `/v1/subscription_schedules`, `/v1/invoices/create_preview` and `/v1/payment_methods`.

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
    routing::{get, post},
};

use crate::sim::{Simulator, call::Call, wire::found};

/// Schedules (created from a subscription, retrieved, updated, released), invoice previews and
/// payment methods.
pub(super) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/v1/subscription_schedules", post(create_schedule))
        .route(
            "/v1/subscription_schedules/{id}",
            get(retrieve_schedule).post(update_schedule),
        )
        .route(
            "/v1/subscription_schedules/{id}/release",
            post(release_schedule),
        )
        .route("/v1/invoices/create_preview", post(preview_invoice))
        .route("/v1/payment_methods/{id}", get(retrieve_payment_method))
}

async fn create_schedule(State(sim): State<Simulator>, call: Call) -> Response {
    sim.api(&call, |sim, state, now| {
        sim.create_schedule(state, &call.form, now)
            .map(|s| (StatusCode::OK, s))
    })
    .await
}

async fn retrieve_schedule(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    sim.api(&call, |_, state, _| {
        found(state.schedules.get(&id), "subscription_schedule", &id)
    })
    .await
}

async fn update_schedule(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    sim.api(&call, |sim, state, now| {
        sim.update_schedule(state, &id, &call.form, now)
            .map(|s| (StatusCode::OK, s))
    })
    .await
}

async fn release_schedule(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    sim.api(&call, |sim, state, now| {
        sim.release_schedule(state, &id, now)
            .map(|s| (StatusCode::OK, s))
    })
    .await
}

async fn preview_invoice(State(sim): State<Simulator>, call: Call) -> Response {
    sim.api(&call, |sim, state, now| {
        sim.preview_invoice(state, &call.form, now)
            .map(|i| (StatusCode::OK, i))
    })
    .await
}

async fn retrieve_payment_method(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    sim.api(&call, |_, state, _| {
        found(state.payment_methods.get(&id), "payment_method", &id)
    })
    .await
}
