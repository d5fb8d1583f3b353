//! `/v1/checkout/sessions` and `/v1/billing_portal/sessions`.

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
    routing::{get, post},
};
use serde_json::{Value, json};

use crate::sim::{
    Simulator,
    call::Call,
    new_id, objects,
    state::{CheckoutState, SimState},
    wire::{Form, bad_param, found, live_customer, metadata, missing, stripe_error},
};

/// Checkout Sessions and billing portal sessions (their hosted pages are in `pages`).
pub(super) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/v1/checkout/sessions", post(create_checkout_session))
        .route("/v1/checkout/sessions/{id}", get(retrieve_checkout_session))
        .route(
            "/v1/checkout/sessions/{id}/expire",
            post(expire_checkout_session),
        )
        .route("/v1/billing_portal/sessions", post(create_portal_session))
}

async fn create_checkout_session(State(sim): State<Simulator>, call: Call) -> Response {
    let f = &call.form;
    sim.api(&call, |sim, state, now| {
        if f.get("mode").map(String::as_str) != Some("subscription") {
            return Err(bad_param("mode"));
        }
        let items = line_items(state, f)?;
        let customer = f.get("customer").cloned();
        if let Some(c) = &customer {
            live_customer(state, c)?;
        }
        let success_url = f
            .get("success_url")
            .ok_or_else(|| bad_param("success_url"))?;
        let cancel_url = f.get("cancel_url").cloned().unwrap_or_default();
        let id = new_id("cs_test");
        let url = format!("{}checkout/{id}", sim.base_url());
        let session = objects::checkout_session(
            &id,
            customer.as_deref(),
            f.get("client_reference_id").map(String::as_str),
            success_url,
            &cancel_url,
            &url,
            objects::amount_of(&items),
            items[0].0["currency"].as_str().unwrap_or("usd"),
            metadata(f, "metadata"),
            now,
        );
        state.checkout_sessions.insert(
            id,
            CheckoutState {
                object: session.clone(),
                price: items[0].0["id"].as_str().unwrap_or_default().to_owned(),
                items: items
                    .iter()
                    .map(|(p, q)| (p["id"].as_str().unwrap_or_default().to_owned(), *q))
                    .collect(),
                trial_days: f
                    .get("subscription_data[trial_period_days]")
                    .and_then(|d| d.parse().ok())
                    .filter(|d| *d > 0),
                subscription_metadata: metadata(f, "subscription_data[metadata]"),
            },
        );
        Ok((StatusCode::OK, session))
    })
    .await
}

/// The `line_items[i][price]` / `[quantity]` of a Checkout Session: at least one, each an active
/// recurring price, all billed at one interval (Stripe refuses the rest).
fn line_items(state: &SimState, f: &Form) -> Result<Vec<(Value, i64)>, (StatusCode, Value)> {
    let mut items = Vec::new();
    while let Some(id) = f.get(&format!("line_items[{}][price]", items.len())) {
        let price = state
            .prices
            .get(id)
            .ok_or_else(|| missing("price", id))?
            .clone();
        if price["active"] != json!(true) {
            return Err(stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!(
                    "The price specified is inactive. This field only accepts active prices. ({id})"
                ),
                None,
            ));
        }
        let quantity = f
            .get(&format!("line_items[{}][quantity]", items.len()))
            .map(|q| q.parse::<i64>().ok().filter(|q| *q > 0))
            .unwrap_or(Some(1))
            .ok_or_else(|| bad_param("line_items[][quantity]"))?;
        items.push((price, quantity));
    }
    let Some((first, _)) = items.first() else {
        return Err(bad_param("line_items[0][price]"));
    };
    if items
        .iter()
        .any(|(p, _)| p["recurring"]["interval"] != first["recurring"]["interval"])
    {
        return Err(stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Checkout does not support multiple prices with different billing intervals.".into(),
            None,
        ));
    }
    Ok(items)
}

async fn retrieve_checkout_session(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    sim.api(&call, |_, state, _| {
        let session = state.checkout_sessions.get(&id).map(|s| &s.object);
        found(session, "checkout.session", &id)
    })
    .await
}

async fn expire_checkout_session(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    sim.api(&call, |sim, state, now| {
        let session = state
            .checkout_sessions
            .get_mut(&id)
            .ok_or_else(|| missing("checkout.session", &id))?;
        if session.object["status"] != "open" {
            return Err(stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "Only open sessions can be expired.".into(),
                None,
            ));
        }
        session.object["status"] = json!("expired");
        let object = session.object.clone();
        sim.emit(state, "checkout.session.expired", object.clone(), None, now);
        Ok((StatusCode::OK, object))
    })
    .await
}

async fn create_portal_session(State(sim): State<Simulator>, call: Call) -> Response {
    let f = &call.form;
    sim.api(&call, |sim, state, now| {
        let customer = f.get("customer").ok_or_else(|| bad_param("customer"))?;
        live_customer(state, customer)?;
        let id = new_id("bps");
        let url = format!("{}portal/{id}", sim.base_url());
        let session = objects::portal_session(
            &id,
            customer,
            f.get("return_url").map(String::as_str).unwrap_or(""),
            &url,
            now,
        );
        state.portal_sessions.insert(id, session.clone());
        Ok((StatusCode::OK, session))
    })
    .await
}
