//! `/v1/subscriptions` and `/v1/invoices`.

use axum::{
    Router,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::Response,
    routing::get,
};
use serde_json::{Value, json};

use crate::sim::{
    Simulator,
    call::Call,
    wire::{bad_param, found, list, missing, page, query_params, stripe_error},
};

/// Subscriptions (retrieved, listed, changed, canceled) and their invoices.
pub(super) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/v1/subscriptions", get(list_subscriptions))
        .route(
            "/v1/subscriptions/{id}",
            get(retrieve_subscription)
                .post(update_subscription)
                .delete(cancel_subscription),
        )
        .route("/v1/invoices", get(list_invoices))
}

async fn list_subscriptions(
    State(sim): State<Simulator>,
    RawQuery(q): RawQuery,
    call: Call,
) -> Response {
    let params = query_params(q.as_deref());
    sim.api(&call, |_, state, _| {
        let status = params.get("status").map(String::as_str).unwrap_or("");
        // The statuses Stripe lists by; any other value is its 400.
        const STATUSES: [&str; 11] = [
            "",
            "active",
            "all",
            "canceled",
            "ended",
            "incomplete",
            "incomplete_expired",
            "past_due",
            "paused",
            "trialing",
            "unpaid",
        ];
        if !STATUSES.contains(&status) {
            return Err(bad_param("status"));
        }
        let mut data: Vec<Value> = state
            .subscriptions
            .values()
            .map(|s| &s.object)
            .filter(|s| {
                params
                    .get("customer")
                    .is_none_or(|c| s["customer"] == json!(c))
            })
            .filter(|s| match status {
                "all" => true,
                // Stripe's default: every subscription that is not canceled.
                "" => s["status"] != "canceled",
                "ended" => s["status"] == "canceled" || s["status"] == "incomplete_expired",
                wanted => s["status"] == json!(wanted),
            })
            .cloned()
            .collect();
        page("/v1/subscriptions", &mut data, &params)
    })
    .await
}

async fn retrieve_subscription(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    sim.api(&call, |_, state, _| {
        found(
            state.subscriptions.get(&id).map(|s| &s.object),
            "subscription",
            &id,
        )
    })
    .await
}

async fn update_subscription(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    let f = &call.form;
    sim.api(&call, |sim, state, now| {
        if !state.subscriptions.contains_key(&id) {
            return Err(missing("subscription", &id));
        }
        let action = match (
            f.get("cancel_at_period_end").map(String::as_str),
            f.get("items[0][price]"),
        ) {
            (Some("true"), _) => ("cancel_at_period_end", None),
            (Some("false"), _) => ("resume", None),
            (_, Some(price)) => {
                // As the API does: `items[0][id]` names the item whose price changes;
                // without it the price is added as another item (and billed too).
                sim.change_items(state, &id, f.get("items[0][id]"), price, now)?;
                return Ok((StatusCode::OK, state.subscriptions[&id].object.clone()));
            }
            _ => return Err(bad_param("cancel_at_period_end")),
        };
        sim.portal_action(state, &id, action.0, action.1, now)
            .map_err(|m| stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", m, None))?;
        Ok((StatusCode::OK, state.subscriptions[&id].object.clone()))
    })
    .await
}

async fn cancel_subscription(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    sim.api(&call, |sim, state, now| {
        if !state.subscriptions.contains_key(&id) {
            return Err(missing("subscription", &id));
        }
        sim.portal_action(state, &id, "cancel_now", None, now)
            .map_err(|m| stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", m, None))?;
        Ok((StatusCode::OK, state.subscriptions[&id].object.clone()))
    })
    .await
}

async fn list_invoices(
    State(sim): State<Simulator>,
    RawQuery(q): RawQuery,
    call: Call,
) -> Response {
    let params = query_params(q.as_deref());
    sim.api(&call, |_, state, _| {
        let mut data: Vec<Value> = state
            .invoices
            .values()
            .filter(|i| {
                params
                    .get("customer")
                    .is_none_or(|c| i["customer"] == json!(c))
            })
            .cloned()
            .collect();
        data.sort_by_key(|i| std::cmp::Reverse(i["created"].as_i64()));
        let limit = params
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(10);
        data.truncate(limit);
        Ok((StatusCode::OK, list("/v1/invoices", data)))
    })
    .await
}
