//! Stripe's wire format: its error envelope, form-encoded requests with bracketed keys, query
//! parameters, metadata and lists paged as Stripe pages them.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::state::SimState;

pub(super) type ApiResult = Result<(StatusCode, Value), (StatusCode, Value)>;

pub(super) fn stripe_error(
    status: StatusCode,
    kind: &str,
    message: String,
    code: Option<&str>,
) -> (StatusCode, Value) {
    (
        status,
        json!({"error": {"type": kind, "message": message, "code": code}}),
    )
}

pub(super) fn missing(what: &str, id: &str) -> (StatusCode, Value) {
    let (status, mut body) = stripe_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("No such {what}: '{id}'"),
        Some("resource_missing"),
    );
    // Stripe names the parameter that pointed at the missing object.
    body["error"]["param"] = json!(what.rsplit('.').next().unwrap_or(what));
    (status, body)
}

/// A retrieved object, or Stripe's `resource_missing` for `what` `id`.
pub(super) fn found(object: Option<&Value>, what: &str, id: &str) -> ApiResult {
    object
        .map(|o| (StatusCode::OK, o.clone()))
        .ok_or_else(|| missing(what, id))
}

/// A customer that exists and was not deleted (Stripe answers `resource_missing` for both).
pub(super) fn live_customer<'a>(
    state: &'a mut SimState,
    id: &str,
) -> Result<&'a mut Value, (StatusCode, Value)> {
    state
        .customers
        .get_mut(id)
        .filter(|c| c["deleted"] != json!(true))
        .ok_or_else(|| missing("customer", id))
}

pub(super) fn bad_param(param: &str) -> (StatusCode, Value) {
    let (status, mut body) = stripe_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        format!("Missing or invalid parameter: {param}"),
        Some("parameter_missing"),
    );
    body["error"]["param"] = json!(param);
    (status, body)
}

/// Form fields with bracketed keys, as Stripe clients send them.
pub(super) type Form = HashMap<String, String>;

pub(super) fn form(body: &[u8]) -> Form {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A query string's parameters (the last of a repeated name wins).
pub(super) fn query_params(q: Option<&str>) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q.unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// `metadata[k]=v` (under `prefix`) as a JSON object.
pub(super) fn metadata(form: &Form, prefix: &str) -> Value {
    let mut out = serde_json::Map::new();
    let head = format!("{prefix}[");
    for (k, v) in form {
        if let Some(rest) = k.strip_prefix(&head).and_then(|r| r.strip_suffix(']'))
            && !rest.contains('[')
        {
            out.insert(rest.to_owned(), json!(v));
        }
    }
    Value::Object(out)
}

pub(super) fn list(url: &str, data: Vec<Value>) -> Value {
    json!({"object": "list", "data": data, "has_more": false, "url": url})
}

/// One page of `data`, newest first, as Stripe pages lists: `limit` (default 10, at most 100),
/// `starting_after` an id of the previous page, `has_more` when more follow.
pub(super) fn page(
    url: &str,
    data: &mut Vec<Value>,
    params: &HashMap<String, String>,
) -> ApiResult {
    data.sort_by(|a, b| {
        (b["created"].as_i64(), b["id"].as_str()).cmp(&(a["created"].as_i64(), a["id"].as_str()))
    });
    let limit: usize = match params.get("limit").map(|l| l.parse()) {
        None => 10,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        Some(_) => return Err(bad_param("limit")),
    };
    let start = match params.get("starting_after") {
        None => 0,
        Some(after) => {
            data.iter()
                .position(|o| o["id"] == json!(after))
                .ok_or_else(|| missing("object", after))?
                + 1
        }
    };
    let rest: Vec<Value> = data.drain(start.min(data.len())..).collect();
    let has_more = rest.len() > limit;
    let mut out = list(url, rest.into_iter().take(limit).collect());
    out["has_more"] = json!(has_more);
    Ok((StatusCode::OK, out))
}
