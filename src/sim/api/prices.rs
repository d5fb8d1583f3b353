//! `/v1/prices`: list (by lookup key), create, retrieve, archive and restore.

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
    new_id, objects,
    wire::{bad_param, found, list, missing, stripe_error},
};

/// Prices: looked up by key at start-up, added and archived by tests.
pub(super) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/v1/prices", get(list_prices).post(create_price))
        .route("/v1/prices/{id}", get(retrieve_price).post(update_price))
}

/// `GET /v1/prices`: filtered by `lookup_keys[]` (at most 10, as Stripe allows) and `active`.
async fn list_prices(State(sim): State<Simulator>, RawQuery(q): RawQuery, call: Call) -> Response {
    let query = serde_urlencoded::from_str::<Vec<(String, String)>>(q.as_deref().unwrap_or(""))
        .unwrap_or_default();
    let keys: Vec<String> = query
        .iter()
        .filter(|(k, _)| k.starts_with("lookup_keys"))
        .map(|(_, v)| v.clone())
        .collect();
    let active = query
        .iter()
        .find(|(k, _)| k == "active")
        .map(|(_, v)| v == "true");
    sim.api(&call, |_, state, _| {
        if keys.len() > 10 {
            let (status, mut body) = stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "You may only specify up to 10 lookup keys.".into(),
                None,
            );
            body["error"]["param"] = json!("lookup_keys");
            return Err((status, body));
        }
        let data = state
            .prices
            .values()
            .filter(|p| {
                keys.is_empty()
                    || p["lookup_key"]
                        .as_str()
                        .is_some_and(|k| keys.iter().any(|w| w == k))
            })
            .filter(|p| active.is_none_or(|a| p["active"].as_bool() == Some(a)))
            .cloned()
            .collect();
        Ok((StatusCode::OK, list("/v1/prices", data)))
    })
    .await
}

async fn create_price(State(sim): State<Simulator>, call: Call) -> Response {
    let f = &call.form;
    sim.api(&call, |_, state, now| {
        // A non-negative integer, as Stripe requires.
        let amount: i64 = f
            .get("unit_amount")
            .and_then(|a| a.parse().ok())
            .filter(|a: &i64| *a >= 0)
            .ok_or_else(|| bad_param("unit_amount"))?;
        let currency = f.get("currency").ok_or_else(|| bad_param("currency"))?;
        let interval = f
            .get("recurring[interval]")
            .filter(|i| matches!(i.as_str(), "day" | "week" | "month" | "year"))
            .ok_or_else(|| bad_param("recurring[interval]"))?;
        let product = match (f.get("product"), f.get("product_data[name]")) {
            (Some(p), _) if state.products.contains_key(p) => p.clone(),
            (Some(p), _) => return Err(missing("product", p)),
            (None, Some(name)) => {
                let id = new_id("prod");
                state
                    .products
                    .insert(id.clone(), objects::product(&id, name, now));
                id
            }
            (None, None) => return Err(bad_param("product")),
        };
        let id = new_id("price");
        let lookup = f.get("lookup_key").map(String::as_str);
        // A lookup key names one price: taking it from another needs `transfer_lookup_key`.
        if let Some(key) = lookup {
            let holder = state.prices.values_mut().find(|p| p["lookup_key"] == key);
            match (holder, f.get("transfer_lookup_key").map(String::as_str)) {
                (Some(p), Some("true")) => p["lookup_key"] = Value::Null,
                (Some(p), _) => {
                    let (s, mut v) = stripe_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        format!("A price (`{}`) already uses that lookup key.", p["id"]),
                        None,
                    );
                    v["error"]["param"] = json!("lookup_key");
                    return Err((s, v));
                }
                (None, _) => {}
            }
        }
        let price = objects::price(&id, &product, amount, currency, interval, lookup, now);
        state.prices.insert(id, price.clone());
        Ok((StatusCode::OK, price))
    })
    .await
}

async fn retrieve_price(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    sim.api(&call, |_, state, _| {
        found(state.prices.get(&id), "price", &id)
    })
    .await
}

/// Archives (`active=false`) or restores a price; amounts cannot change, as in Stripe.
async fn update_price(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    let f = &call.form;
    sim.api(&call, |_, state, _| {
        let price = state
            .prices
            .get_mut(&id)
            .ok_or_else(|| missing("price", &id))?;
        match f.get("active").map(String::as_str) {
            Some("true") => price["active"] = json!(true),
            Some("false") => price["active"] = json!(false),
            Some(_) => return Err(bad_param("active")),
            None => {}
        }
        Ok((StatusCode::OK, price.clone()))
    })
    .await
}
