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
    objects,
    proration::ChangeTerms,
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
    RawQuery(q): RawQuery,
    call: Call,
) -> Response {
    let params = query_params(q.as_deref());
    sim.api(&call, |_, state, _| {
        let (status, mut sub) = found(
            state.subscriptions.get(&id).map(|s| &s.object),
            "subscription",
            &id,
        )?;
        // `expand[]`: the payment method and the schedule come as objects.
        for (k, v) in &params {
            if !k.starts_with("expand") {
                continue;
            }
            let table = match v.as_str() {
                "default_payment_method" => &state.payment_methods,
                "schedule" => &state.schedules,
                _ => return Err(bad_param(k)),
            };
            if let Some(object) = sub[v.as_str()].as_str().and_then(|i| table.get(i)) {
                sub[v.as_str()] = object.clone();
            }
        }
        Ok((status, sub))
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
        let Some(sub) = state.subscriptions.get(&id) else {
            return Err(missing("subscription", &id));
        };
        let cancel = f.get("cancel_at_period_end").map(String::as_str);
        if let (Some(_), Some(schedule)) = (cancel, sub.object["schedule"].as_str()) {
            return Err(stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("The subscription is managed by the subscription schedule `{schedule}`, and updating any cancelation behavior directly is not allowed. Please update the schedule instead."),
                None,
            ));
        }
        let terms = ChangeTerms::read(f, "")?;
        match (f.get("items[0][id]"), f.get("items[0][price]")) {
            (Some(item), Some(price)) => {
                if objects::ended(sub.object["status"].as_str()) {
                    return Err(stripe_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "A canceled subscription can only update its cancellation_details and metadata.".into(),
                        None,
                    ));
                }
                sim.change_price(state, &id, item, price, &terms, now)?;
            }
            // Without `items[0][id]` the price is added as another item (and billed too).
            (None, Some(price)) => sim.change_items(state, &id, None, price, now)?,
            (Some(_), None) => return Err(bad_param("items[0][price]")),
            (None, None) if cancel.is_none() => return Err(bad_param("cancel_at_period_end")),
            (None, None) => {}
        }
        let action = match cancel {
            Some("true") => Some("cancel_at_period_end"),
            Some("false") => Some("resume"),
            Some(_) => return Err(bad_param("cancel_at_period_end")),
            None => None,
        };
        if let Some(action) = action {
            sim.portal_action(state, &id, action, None, now).map_err(|m| {
                stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", m, None)
            })?;
        }
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
