//! `/v1/customers`: create, retrieve, update, delete, list and search.

use axum::{
    Router,
    extract::{Path, Query, RawQuery, State},
    http::StatusCode,
    response::Response,
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sim::{
    Simulator,
    call::Call,
    new_id, objects,
    wire::{bad_param, found, live_customer, metadata, missing, page, query_params},
};

/// Customers: created and changed by tollgate, searched by its metadata.
pub(super) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/v1/customers", post(create_customer).get(list_customers))
        .route("/v1/customers/search", get(search_customers))
        .route(
            "/v1/customers/{id}",
            get(retrieve_customer)
                .post(update_customer)
                .delete(delete_customer),
        )
}

async fn create_customer(State(sim): State<Simulator>, call: Call) -> Response {
    let f = &call.form;
    sim.api(&call, |_, state, now| {
        let id = new_id("cus");
        let mut c = objects::customer(
            &id,
            f.get("email").map(String::as_str),
            metadata(f, "metadata"),
            now,
        );
        // A test clock is attached at creation or never, as in Stripe.
        if let Some(clock) = f.get("test_clock") {
            if !clock.starts_with("clock_") {
                return Err(missing("test_clock", clock));
            }
            c["test_clock"] = json!(clock);
        }
        state.customers.insert(id, c.clone());
        Ok((StatusCode::OK, c))
    })
    .await
}

async fn retrieve_customer(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    sim.api(&call, |_, state, _| {
        found(state.customers.get(&id), "customer", &id)
    })
    .await
}

async fn update_customer(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    let f = &call.form;
    sim.api(&call, |sim, state, now| {
        let customer = live_customer(state, &id)?;
        let mut previous = json!({});
        if let Some(email) = f.get("email") {
            previous["email"] = customer["email"].clone();
            customer["email"] = json!(email);
        }
        let meta = metadata(f, "metadata");
        if let Some(m) = meta.as_object().filter(|m| !m.is_empty()) {
            for (k, v) in m {
                customer["metadata"][k] = v.clone();
            }
        }
        let c = customer.clone();
        sim.emit(state, "customer.updated", c.clone(), Some(previous), now);
        Ok((StatusCode::OK, c))
    })
    .await
}

async fn delete_customer(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    sim.api(&call, |sim, state, now| {
        let customer = live_customer(state, &id)?.clone();
        let stub = json!({"id": id, "object": "customer", "deleted": true});
        // Stripe keeps answering GET with the deleted stub; everything else is resource_missing.
        state.customers.insert(id.clone(), stub.clone());
        let subs: Vec<String> = state
            .subscriptions
            .iter()
            .filter(|(_, s)| s.object["customer"] == json!(id))
            .map(|(k, _)| k.clone())
            .collect();
        for sub in subs {
            let _ = sim.portal_action(state, &sub, "cancel_now", None, now);
        }
        // Its open Checkout Sessions go with it.
        for session in state.checkout_sessions.values_mut() {
            if session.object["customer"] == json!(id) && session.object["status"] == "open" {
                session.object["status"] = json!("expired");
            }
        }
        sim.emit(state, "customer.deleted", customer, None, now);
        Ok((StatusCode::OK, stub))
    })
    .await
}

/// Customers, newest first, paged like every Stripe list; deleted ones are not listed.
async fn list_customers(
    State(sim): State<Simulator>,
    RawQuery(q): RawQuery,
    call: Call,
) -> Response {
    let params = query_params(q.as_deref());
    sim.api(&call, |_, state, _| {
        let mut data: Vec<Value> = state
            .customers
            .values()
            .filter(|c| c["deleted"] != json!(true))
            .cloned()
            .collect();
        page("/v1/customers", &mut data, &params)
    })
    .await
}

#[derive(Deserialize)]
struct SearchQuery {
    /// Required, as Stripe requires it: its absence is Stripe's 400, not a framework's.
    query: Option<String>,
}

async fn search_customers(
    State(sim): State<Simulator>,
    Query(q): Query<SearchQuery>,
    call: Call,
) -> Response {
    // Supports the one query shape tollgate uses: metadata['key']:'value'.
    let wanted = q
        .query
        .as_deref()
        .unwrap_or_default()
        .strip_prefix("metadata['")
        .and_then(|r| r.split_once("']:'"))
        .map(|(k, v)| (k.to_owned(), v.trim_end_matches('\'').to_owned()));
    sim.api(&call, |_, state, _| {
        let (key, value) = wanted.clone().ok_or_else(|| bad_param("query"))?;
        let data: Vec<Value> = state
            .customers
            .values()
            .filter(|c| c["metadata"][&key] == json!(value))
            .cloned()
            .collect();
        Ok((
            StatusCode::OK,
            json!({"object": "search_result", "data": data, "has_more": false, "next_page": null, "url": "/v1/customers/search"}),
        ))
    }).await
}
