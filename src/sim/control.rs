//! The `/_sim/` control endpoints (tests and the developer page only): the test clock and its
//! skew, failing cards, outages, latency, injected failures, webhook chaos and the event log.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Simulator, delivery, dev_page};

pub(super) fn router() -> Router<Simulator> {
    Router::new()
        .route("/_sim/", get(dev_page::show).post(dev_page::submit))
        .route("/_sim/clock", get(show_clock))
        .route("/_sim/clock/advance", post(advance))
        .route("/_sim/clock/skew", post(set_skew))
        .route("/_sim/customers/{id}/card", post(set_card))
        .route("/_sim/outage", post(set_outage))
        .route("/_sim/latency", post(set_latency))
        .route("/_sim/fail", post(set_fail))
        .route("/_sim/chaos", post(set_chaos))
        .route("/_sim/events", get(list_events))
}

async fn show_clock(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"now": sim.clock().now(), "offset": sim.clock().offset()}))
}

#[derive(Deserialize)]
struct Skew {
    seconds: i64,
}

/// Runs the simulator's clock `seconds` ahead of tollgate's (behind when negative), as Stripe's
/// clock may: ordering must not depend on the two agreeing.
async fn set_skew(State(sim): State<Simulator>, Json(s): Json<Skew>) -> StatusCode {
    sim.set_clock_skew(s.seconds);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Advance {
    seconds: i64,
}

async fn advance(State(sim): State<Simulator>, Json(a): Json<Advance>) -> Json<Value> {
    sim.advance_clock(a.seconds);
    Json(json!({"now": sim.clock().now()}))
}

#[derive(Deserialize)]
struct Card {
    failing: bool,
}

async fn set_card(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    Json(c): Json<Card>,
) -> StatusCode {
    let mut state = sim.lock();
    if c.failing {
        state.failing_customers.insert(id);
    } else {
        state.failing_customers.remove(&id);
    }
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Outage {
    on: bool,
}

async fn set_outage(State(sim): State<Simulator>, Json(o): Json<Outage>) -> StatusCode {
    sim.lock().outage = o.on;
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Fail {
    calls: u64,
    /// Only calls sent with an idempotency key (creating and changing calls) fail.
    #[serde(default)]
    keyed_only: bool,
}

/// The next `calls` API calls (or, with `keyed_only`, the next calls sent with an idempotency
/// key) answer 500 `api_error`, saved as their key's answer as Stripe does.
async fn set_fail(State(sim): State<Simulator>, Json(f): Json<Fail>) -> StatusCode {
    let mut state = sim.lock();
    state.fail_next = f.calls;
    state.fail_keyed_only = f.keyed_only;
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Latency {
    ms: u64,
}

/// Every API call then takes `ms` before Stripe processes it: slow or hanging Stripe, and the
/// window in which a second request with the same idempotency key gets 409.
async fn set_latency(State(sim): State<Simulator>, Json(l): Json<Latency>) -> StatusCode {
    sim.lock().latency_ms = l.ms;
    StatusCode::NO_CONTENT
}

async fn set_chaos(State(sim): State<Simulator>, Json(c): Json<delivery::Chaos>) -> StatusCode {
    sim.inner.delivery.set_chaos(c);
    StatusCode::NO_CONTENT
}

async fn list_events(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"data": sim.lock().events.clone()}))
}
