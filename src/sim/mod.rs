//! The built-in Stripe simulator: a stateful, in-memory implementation of the part of Stripe's
//! HTTP API that tollgate uses, with hosted Checkout and portal pages, signed webhook delivery with
//! retries, a test clock and a chaos switch.
//!
//! It speaks Stripe's wire format (form-encoded requests with bracketed keys, JSON objects shaped
//! like Stripe's own examples, Stripe's error envelope, `Idempotency-Key` replay), so the real
//! async-stripe client and tollgate's real webhook verifier run against it. It only exists in
//! development without Stripe keys, or alone as `tollgate stripe-sim`. Its control endpoints live
//! under `/_sim/`.
//!
//! Simplifications, documented for people reading test results: months are 30 days and years 365;
//! a subscription has one item; a failing card fails every charge until it is fixed, and a
//! subscription that fails three renewal attempts in a row is canceled.

pub mod delivery;
mod objects;
mod pages;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::clock::Clock;
pub use objects::new_id;

/// A running simulator.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<SimState>,
    clock: Clock,
    base_url: String,
    delivery: delivery::Deliverer,
}

#[derive(Default)]
struct SimState {
    customers: BTreeMap<String, Value>,
    products: BTreeMap<String, Value>,
    prices: BTreeMap<String, Value>,
    checkout_sessions: BTreeMap<String, CheckoutState>,
    portal_sessions: BTreeMap<String, Value>,
    subscriptions: BTreeMap<String, SubState>,
    invoices: BTreeMap<String, Value>,
    events: Vec<Value>,
    idempotency: HashMap<String, Idempotency>,
    failing_customers: HashSet<String>,
    outage: bool,
    fail_next: u64,
    fail_keyed_only: bool,
    latency_ms: u64,
    requests: u64,
}

/// What Stripe knows of an idempotency key.
enum Idempotency {
    /// Its first request is still being processed: a concurrent one gets 409.
    InFlight,
    /// Answered at (Stripe's clock) a time: for 24 hours, the same request replays the answer
    /// and any other request with the key is refused.
    Done {
        request: String,
        at: i64,
        status: StatusCode,
        body: Value,
    },
}

/// How long Stripe keeps an idempotency key.
const IDEMPOTENCY_KEY_SECS: i64 = 24 * 3600;

/// What an idempotency key is bound to: the method and path, and the parameters sent.
fn request_of(route: String, body: &[u8]) -> String {
    format!("{route}?{}", String::from_utf8_lossy(body))
}

/// Releases an in-flight key whose request was dropped before it was processed.
struct InFlight<'a> {
    sim: &'a Simulator,
    key: Option<String>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.sim.lock().idempotency.remove(&key);
        }
    }
}

struct CheckoutState {
    object: Value,
    /// The first line item's price (the hosted page names it).
    price: String,
    /// Every line item: price id and quantity.
    items: Vec<(String, i64)>,
    trial_days: Option<i64>,
    subscription_metadata: Value,
}

struct SubState {
    object: Value,
    failed_attempts: u32,
    trial_will_end_sent: bool,
}

type ApiResult = Result<(StatusCode, Value), (StatusCode, Value)>;

fn stripe_error(
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

fn missing(what: &str, id: &str) -> (StatusCode, Value) {
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
fn found(object: Option<&Value>, what: &str, id: &str) -> ApiResult {
    object
        .map(|o| (StatusCode::OK, o.clone()))
        .ok_or_else(|| missing(what, id))
}

/// A customer that exists and was not deleted (Stripe answers `resource_missing` for both).
fn live_customer<'a>(
    state: &'a mut SimState,
    id: &str,
) -> Result<&'a mut Value, (StatusCode, Value)> {
    state
        .customers
        .get_mut(id)
        .filter(|c| c["deleted"] != json!(true))
        .ok_or_else(|| missing("customer", id))
}

fn bad_param(param: &str) -> (StatusCode, Value) {
    stripe_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        format!("Missing or invalid parameter: {param}"),
        Some("parameter_missing"),
    )
}

/// Form fields with bracketed keys, as Stripe clients send them.
type Form = HashMap<String, String>;

fn form(body: &[u8]) -> Form {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A query string's parameters (the last of a repeated name wins).
fn query_params(q: Option<&str>) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q.unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// `metadata[k]=v` (under `prefix`) as a JSON object.
fn metadata(form: &Form, prefix: &str) -> Value {
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

fn list(url: &str, data: Vec<Value>) -> Value {
    json!({"object": "list", "data": data, "has_more": false, "url": url})
}

impl Simulator {
    /// Binds `addr`, serves the simulator there and starts webhook delivery.
    pub async fn start(clock: Clock, addr: SocketAddr) -> anyhow::Result<Self> {
        // Stripe's clock is not tollgate's: the simulator's can be set off from it.
        let clock = clock.with_own_skew();
        let listener = TcpListener::bind(addr).await?;
        let base_url = format!("http://{}/", listener.local_addr()?);
        let sim = Simulator {
            inner: Arc::new(Inner {
                state: Mutex::new(SimState::default()),
                clock: clock.clone(),
                base_url,
                delivery: delivery::Deliverer::start(clock),
            }),
        };
        let router = sim.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "stripe simulator stopped");
            }
        });
        Ok(sim)
    }

    /// The simulator's base URL (`http://127.0.0.1:<port>/`): the Stripe API base and the host of
    /// the hosted pages.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The simulator's clock: tollgate's test clock, plus a skew set with `/_sim/clock/skew`.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Where signed events go, and the secret they are signed with.
    pub fn set_webhook(&self, url: String, secret: String) {
        self.inner.delivery.set_target(url, secret);
    }

    /// Creates a product and a recurring price for a catalog entry and returns the price id. A
    /// `reference` that looks like a price id is used as the id; otherwise it is the lookup key.
    pub fn seed_price(
        &self,
        product_name: &str,
        interval: &str,
        amount: i64,
        currency: &str,
        reference: Option<&str>,
    ) -> String {
        let now = self.inner.clock.now();
        let mut state = self.lock();
        // One product per plan, with a price per interval, as a Stripe account is set up.
        let existing = state
            .products
            .iter()
            .find(|(_, p)| p["name"] == product_name)
            .map(|(id, _)| id.clone());
        let product_id = existing.unwrap_or_else(|| {
            let id = new_id("prod");
            state
                .products
                .insert(id.clone(), objects::product(&id, product_name, now));
            id
        });
        let (id, lookup) = match reference {
            Some(r) if r.starts_with("price_") => (r.to_owned(), None),
            Some(r) => (new_id("price"), Some(r)),
            None => (new_id("price"), None),
        };
        let price = objects::price(&id, &product_id, amount, currency, interval, lookup, now);
        state.prices.insert(id.clone(), price);
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an event and hands it to delivery.
    fn emit(
        &self,
        state: &mut SimState,
        kind: &str,
        object: Value,
        previous: Option<Value>,
        created: i64,
    ) {
        let event = objects::event(kind, object, previous, created);
        state.events.push(event.clone());
        self.inner.delivery.send(event);
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/v1/customers", post(create_customer).get(list_customers))
            .route("/v1/customers/search", get(search_customers))
            .route(
                "/v1/customers/{id}",
                get(retrieve_customer)
                    .post(update_customer)
                    .delete(delete_customer),
            )
            .route("/v1/prices", get(list_prices).post(create_price))
            .route("/v1/prices/{id}", get(retrieve_price).post(update_price))
            .route("/v1/checkout/sessions", post(create_checkout_session))
            .route("/v1/checkout/sessions/{id}", get(retrieve_checkout_session))
            .route(
                "/v1/checkout/sessions/{id}/expire",
                post(expire_checkout_session),
            )
            .route("/v1/billing_portal/sessions", post(create_portal_session))
            .route("/v1/subscriptions", get(list_subscriptions))
            .route(
                "/v1/subscriptions/{id}",
                get(retrieve_subscription)
                    .post(update_subscription)
                    .delete(cancel_subscription),
            )
            .route("/v1/invoices", get(list_invoices))
            .merge(pages::router())
            .merge(control_router())
            .with_state(self.clone())
    }

    /// Runs one API call: outage check, authentication, idempotency (below), the configured
    /// latency, then `op` under the state lock.
    ///
    /// Idempotency, for a creating call (`request` names it) sent with an `Idempotency-Key`, as
    /// Stripe keeps it: while the key's first request runs, another gets 409; once answered, the
    /// same request replays the answer (`Idempotent-Replayed: true`) and a different one (other
    /// parameters or endpoint) is refused with 400 `idempotency_error`, for 24 hours of Stripe's
    /// clock. A request refused before it ran (a 400 `invalid_request_error`: bad parameters, a
    /// missing object) saves nothing, so the key can be used again; a 5xx once it began
    /// (`/_sim/fail`) is saved and replayed, as Stripe does.
    async fn api(
        &self,
        headers: &HeaderMap,
        request: Option<String>,
        op: impl FnOnce(&Simulator, &mut SimState, i64) -> ApiResult,
    ) -> Response {
        let authorised = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer sk_") || v.starts_with("Bearer rk_"));
        let key = request
            .is_some()
            .then(|| headers.get("idempotency-key").and_then(|v| v.to_str().ok()))
            .flatten()
            .map(str::to_owned);
        let request = request.unwrap_or_default();
        let latency = {
            let mut state = self.lock();
            state.requests += 1;
            if state.outage {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"error": {"type": "api_error", "message": "The simulator is in a simulated outage."}})),
                )
                    .into_response();
            }
            if !authorised {
                let (s, v) = stripe_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request_error",
                    "Invalid API Key provided".into(),
                    None,
                );
                return (s, Json(v)).into_response();
            }
            let now = self.inner.clock.now();
            if let Some(k) = &key {
                let expired = matches!(state.idempotency.get(k),
                    Some(Idempotency::Done { at, .. }) if now - at >= IDEMPOTENCY_KEY_SECS);
                if expired {
                    state.idempotency.remove(k);
                }
                match state.idempotency.get(k) {
                    Some(Idempotency::Done {
                        request: first,
                        status,
                        body,
                        ..
                    }) if *first == request => {
                        let mut response = (*status, Json(body.clone())).into_response();
                        response
                            .headers_mut()
                            .insert("idempotent-replayed", "true".parse().expect("static"));
                        return response;
                    }
                    Some(Idempotency::Done { .. }) => {
                        let (s, v) = stripe_error(
                            StatusCode::BAD_REQUEST,
                            "idempotency_error",
                            format!(
                                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."
                            ),
                            None,
                        );
                        return (s, Json(v)).into_response();
                    }
                    Some(Idempotency::InFlight) => {
                        let (s, v) = stripe_error(
                            StatusCode::CONFLICT,
                            "idempotency_error",
                            "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): please try again later.".into(),
                            None,
                        );
                        return (s, Json(v)).into_response();
                    }
                    None => {
                        state.idempotency.insert(k.clone(), Idempotency::InFlight);
                    }
                }
            }
            // A failure once the call has begun: Stripe keeps it as the key's answer (its 5xx
            // answers are replayed to every retry with the key for 24 hours).
            if state.fail_next > 0 && (key.is_some() || !state.fail_keyed_only) {
                state.fail_next -= 1;
                let (s, v) = stripe_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    "A simulated failure of this one call.".into(),
                    None,
                );
                if let Some(k) = &key {
                    state.idempotency.insert(
                        k.clone(),
                        Idempotency::Done {
                            request,
                            at: now,
                            status: s,
                            body: v.clone(),
                        },
                    );
                }
                return (s, Json(v)).into_response();
            }
            state.latency_ms
        };
        let mut in_flight = InFlight {
            sim: self,
            key: key.clone(),
        };
        if latency > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
        }
        let mut state = self.lock();
        let now = self.inner.clock.now();
        self.expire_due_sessions(&mut state, now);
        let (status, body) = op(self, &mut state, now).unwrap_or_else(|e| e);
        let refused_before_running =
            status == StatusCode::BAD_REQUEST || body["error"]["code"] == "resource_missing";
        if let Some(k) = in_flight.key.take() {
            if refused_before_running {
                state.idempotency.remove(&k);
            } else {
                state.idempotency.insert(
                    k,
                    Idempotency::Done {
                        request,
                        at: now,
                        status,
                        body: body.clone(),
                    },
                );
            }
        }
        (status, Json(body)).into_response()
    }

    /// Number of API requests served (tests check that nothing called Stripe).
    pub fn request_count(&self) -> u64 {
        self.lock().requests
    }

    /// Expires every open Checkout Session whose `expires_at` has passed by Stripe's clock, as
    /// Stripe does (`checkout.session.expired` is sent); run before anything looks at sessions.
    fn expire_due_sessions(&self, state: &mut SimState, now: i64) {
        let due: Vec<String> = state
            .checkout_sessions
            .iter()
            .filter(|(_, s)| {
                s.object["status"] == "open"
                    && s.object["expires_at"].as_i64().is_some_and(|e| now >= e)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(session) = state.checkout_sessions.get_mut(&id) else {
                continue;
            };
            session.object["status"] = json!("expired");
            let object = session.object.clone();
            self.emit(state, "checkout.session.expired", object, None, now);
        }
    }

    /// Completes a Checkout Session as if the customer paid (or started a trial).
    fn complete_checkout(&self, state: &mut SimState, id: &str, now: i64) -> Result<Value, String> {
        self.expire_due_sessions(state, now);
        let session = state
            .checkout_sessions
            .get(id)
            .ok_or("unknown checkout session")?;
        if session.object["status"] != "open" {
            return Err("this checkout session is no longer open".into());
        }
        let customer = session.object["customer"]
            .as_str()
            .ok_or("no customer")?
            .to_owned();
        // Stripe never charges a deleted customer (its open sessions were expired with it).
        if state
            .customers
            .get(&customer)
            .is_none_or(|c| c["deleted"] == json!(true))
        {
            return Err("this customer has been deleted".into());
        }
        let items: Vec<(Value, i64)> = session
            .items
            .iter()
            .map(|(p, q)| Some((state.prices.get(p)?.clone(), *q)))
            .collect::<Option<_>>()
            .ok_or("unknown price")?;
        let price = &items[0].0;
        let interval = price["recurring"]["interval"]
            .as_str()
            .unwrap_or("month")
            .to_owned();
        let amount = objects::amount_of(&items);
        let currency = price["currency"].as_str().unwrap_or("usd").to_owned();
        let trial = session.trial_days.map(|d| (now, now + d * 86_400));
        let period = match trial {
            Some(t) => t,
            None => (now, now + objects::interval_secs(&interval)),
        };
        let sub_id = new_id("sub");
        let status = if trial.is_some() {
            "trialing"
        } else {
            "active"
        };
        let mut subscription = objects::subscription(
            &sub_id,
            &customer,
            &items,
            status,
            period,
            trial,
            session.subscription_metadata.clone(),
            now,
        );
        let invoice = objects::invoice(
            &customer,
            &sub_id,
            if trial.is_some() { 0 } else { amount },
            &currency,
            period,
            true,
            "subscription_create",
            now,
        );
        subscription["latest_invoice"] = invoice["id"].clone();
        // A subscription runs on its customer's test clock.
        subscription["test_clock"] = state.customers[&customer]["test_clock"].clone();
        let session = state.checkout_sessions.get_mut(id).expect("checked above");
        session.object["status"] = json!("complete");
        session.object["payment_status"] = json!(if trial.is_some() {
            "no_payment_required"
        } else {
            "paid"
        });
        session.object["subscription"] = json!(sub_id);
        session.object["invoice"] = invoice["id"].clone();
        let completed = session.object.clone();
        state.invoices.insert(
            invoice["id"].as_str().unwrap_or_default().to_owned(),
            invoice.clone(),
        );
        state.subscriptions.insert(
            sub_id,
            SubState {
                object: subscription.clone(),
                failed_attempts: 0,
                trial_will_end_sent: false,
            },
        );
        self.emit(
            state,
            "checkout.session.completed",
            completed.clone(),
            None,
            now,
        );
        if trial.is_some() {
            self.emit(
                state,
                "customer.subscription.created",
                subscription,
                None,
                now,
            );
        } else {
            // As Stripe does for a paid start: the subscription is created `incomplete` and made
            // `active` once its first invoice is paid, both in the same second (a tie for
            // whoever orders events by `created`).
            let mut incomplete = subscription.clone();
            incomplete["status"] = json!("incomplete");
            self.emit(
                state,
                "customer.subscription.created",
                incomplete,
                None,
                now,
            );
            self.emit(
                state,
                "customer.subscription.updated",
                subscription,
                Some(json!({"status": "incomplete"})),
                now,
            );
        }
        self.emit(state, "invoice.paid", invoice, None, now);
        Ok(completed)
    }

    /// `POST /v1/subscriptions/{id}` with `items[0][price]`: the item `item_id` gets the price,
    /// or, without an id, the price is added as a new item.
    fn change_items(
        &self,
        state: &mut SimState,
        sub_id: &str,
        item_id: Option<&String>,
        price_id: &str,
        now: i64,
    ) -> Result<(), (StatusCode, Value)> {
        let price = state
            .prices
            .get(price_id)
            .ok_or_else(|| missing("price", price_id))?
            .clone();
        if price["active"] == false {
            let (s, mut v) = stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "The price specified is inactive. This field only accepts active prices.".into(),
                None,
            );
            v["error"]["param"] = json!("items[0][price]");
            return Err((s, v));
        }
        let mut next = state.subscriptions[sub_id].object.clone();
        if matches!(
            next["status"].as_str(),
            Some("canceled" | "incomplete_expired")
        ) {
            return Err(stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "A canceled subscription can only update its cancellation_details and metadata."
                    .into(),
                None,
            ));
        }
        let previous = json!({"items": next["items"].clone()});
        let items = next["items"]["data"]
            .as_array_mut()
            .ok_or_else(|| bad_param("items"))?;
        let period = (
            items[0]["current_period_start"].as_i64().unwrap_or(now),
            items[0]["current_period_end"].as_i64().unwrap_or(now),
        );
        match item_id {
            Some(item_id) => {
                let item = items
                    .iter_mut()
                    .find(|i| i["id"] == item_id.as_str())
                    .ok_or_else(|| missing("subscription_item", item_id))?;
                let quantity = item["quantity"].as_i64().unwrap_or(1);
                let kept = item["id"].clone();
                *item = objects::subscription_item(sub_id, &price, quantity, period, now);
                item["id"] = kept;
            }
            None => items.push(objects::subscription_item(sub_id, &price, 1, period, now)),
        }
        state.subscriptions.get_mut(sub_id).expect("present").object = next.clone();
        self.emit(
            state,
            "customer.subscription.updated",
            next,
            Some(previous),
            now,
        );
        Ok(())
    }

    /// Moves the test clock forward and runs everything that became due: trial ends, renewals
    /// (paid or failed), retries of past-due subscriptions, cancellations at period end.
    pub fn advance_clock(&self, seconds: i64) {
        self.inner.clock.advance(seconds);
        let now = self.inner.clock.now();
        let mut state = self.lock();
        let ids: Vec<String> = state.subscriptions.keys().cloned().collect();
        for id in ids {
            self.run_subscription(&mut state, &id, now);
        }
    }

    fn run_subscription(&self, state: &mut SimState, id: &str, now: i64) {
        // Bounded: a long jump still ends, one billing period per loop.
        for _ in 0..400 {
            let Some(sub) = state.subscriptions.get(id) else {
                return;
            };
            let object = &sub.object;
            let status = object["status"].as_str().unwrap_or("").to_owned();
            if matches!(status.as_str(), "canceled" | "incomplete_expired") {
                return;
            }
            let period_end = object["items"]["data"][0]["current_period_end"]
                .as_i64()
                .unwrap_or(i64::MAX);
            let trial_end = object["trial_end"].as_i64();
            if status == "trialing"
                && !sub.trial_will_end_sent
                && let Some(t) = trial_end
                && now >= t - 3 * 86_400
            {
                let at = (t - 3 * 86_400).max(object["created"].as_i64().unwrap_or(0));
                let snapshot = object.clone();
                state
                    .subscriptions
                    .get_mut(id)
                    .expect("present")
                    .trial_will_end_sent = true;
                self.emit(
                    state,
                    "customer.subscription.trial_will_end",
                    snapshot,
                    None,
                    at,
                );
                continue;
            }
            if period_end > now {
                return;
            }
            let sub = state.subscriptions.get(id).expect("present");
            let object = sub.object.clone();
            let customer = object["customer"].as_str().unwrap_or("").to_owned();
            if object["cancel_at_period_end"] == json!(true) {
                let mut next = object.clone();
                next["status"] = json!("canceled");
                next["ended_at"] = json!(period_end);
                next["canceled_at"] = json!(next["canceled_at"].as_i64().unwrap_or(period_end));
                state.subscriptions.get_mut(id).expect("present").object = next.clone();
                self.emit(
                    state,
                    "customer.subscription.deleted",
                    next,
                    None,
                    period_end,
                );
                return;
            }
            // A charge at the period boundary: trial end, renewal, or a retry while past due.
            let price = object["items"]["data"][0]["price"].clone();
            let interval = price["recurring"]["interval"]
                .as_str()
                .unwrap_or("month")
                .to_owned();
            let items: Vec<(Value, i64)> = object["items"]["data"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| (i["price"].clone(), i["quantity"].as_i64().unwrap_or(1)))
                .collect();
            let amount = objects::amount_of(&items);
            let currency = price["currency"].as_str().unwrap_or("usd").to_owned();
            let next_period = (period_end, period_end + objects::interval_secs(&interval));
            let fails = state.failing_customers.contains(&customer);
            let invoice = objects::invoice(
                &customer,
                id,
                amount,
                &currency,
                next_period,
                !fails,
                "subscription_cycle",
                period_end,
            );
            state.invoices.insert(
                invoice["id"].as_str().unwrap_or_default().to_owned(),
                invoice.clone(),
            );
            let mut next = object.clone();
            next["latest_invoice"] = invoice["id"].clone();
            for item in next["items"]["data"].as_array_mut().into_iter().flatten() {
                item["current_period_start"] = json!(next_period.0);
                item["current_period_end"] = json!(next_period.1);
            }
            let sub = state.subscriptions.get_mut(id).expect("present");
            let previous_status = status.clone();
            if fails {
                sub.failed_attempts += 1;
                if sub.failed_attempts >= 3 {
                    next["status"] = json!("canceled");
                    next["canceled_at"] = json!(period_end);
                    next["ended_at"] = json!(period_end);
                    sub.object = next.clone();
                    self.emit(state, "invoice.payment_failed", invoice, None, period_end);
                    self.emit(
                        state,
                        "customer.subscription.deleted",
                        next,
                        None,
                        period_end,
                    );
                    return;
                }
                next["status"] = json!("past_due");
                sub.object = next.clone();
                self.emit(state, "invoice.payment_failed", invoice, None, period_end);
            } else {
                sub.failed_attempts = 0;
                next["status"] = json!("active");
                sub.object = next.clone();
                self.emit(state, "invoice.paid", invoice, None, period_end);
            }
            let previous = json!({
                "status": previous_status,
                "items": {"data": [{"current_period_end": period_end}]},
            });
            self.emit(
                state,
                "customer.subscription.updated",
                next,
                Some(previous),
                period_end,
            );
        }
    }

    /// Applies a portal action to a subscription and emits the matching event.
    fn portal_action(
        &self,
        state: &mut SimState,
        sub_id: &str,
        action: &str,
        price: Option<&str>,
        now: i64,
    ) -> Result<(), String> {
        let sub = state
            .subscriptions
            .get(sub_id)
            .ok_or("unknown subscription")?;
        let mut next = sub.object.clone();
        if matches!(
            next["status"].as_str(),
            Some("canceled" | "incomplete_expired")
        ) {
            return Err("this subscription has ended".into());
        }
        let period_end = next["items"]["data"][0]["current_period_end"].clone();
        let (kind, previous) = match action {
            "cancel_at_period_end" => {
                next["cancel_at_period_end"] = json!(true);
                next["cancel_at"] = period_end;
                next["canceled_at"] = json!(now);
                (
                    "customer.subscription.updated",
                    json!({"cancel_at_period_end": false, "cancel_at": null}),
                )
            }
            "resume" => {
                next["cancel_at_period_end"] = json!(false);
                next["cancel_at"] = Value::Null;
                next["canceled_at"] = Value::Null;
                (
                    "customer.subscription.updated",
                    json!({"cancel_at_period_end": true}),
                )
            }
            "cancel_now" => {
                next["status"] = json!("canceled");
                next["canceled_at"] = json!(now);
                next["ended_at"] = json!(now);
                ("customer.subscription.deleted", json!({}))
            }
            "switch" => {
                let price_id = price.ok_or("no price chosen")?;
                let new_price = state.prices.get(price_id).ok_or("unknown price")?.clone();
                if new_price["active"] == false {
                    return Err("this price is archived".into());
                }
                if next["items"]["data"]
                    .as_array()
                    .is_none_or(|i| i.len() != 1)
                {
                    return Err("the portal cannot switch a subscription of several items".into());
                }
                let old_price = next["items"]["data"][0]["price"]["id"].clone();
                let item = &mut next["items"]["data"][0];
                let quantity = item["quantity"].as_i64().unwrap_or(1);
                let period = (
                    item["current_period_start"].as_i64().unwrap_or(now),
                    item["current_period_end"].as_i64().unwrap_or(now),
                );
                *item = objects::subscription_item(sub_id, &new_price, quantity, period, now);
                (
                    "customer.subscription.updated",
                    json!({"items": {"data": [{"price": {"id": old_price}}]}}),
                )
            }
            _ => return Err("unknown action".into()),
        };
        state.subscriptions.get_mut(sub_id).expect("present").object = next.clone();
        self.emit(state, kind, next, Some(previous), now);
        Ok(())
    }
}

// --- API handlers -------------------------------------------------------------------------

async fn create_customer(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    sim.api(
        &headers,
        Some(request_of("POST /v1/customers".into(), &body)),
        |_, state, now| {
            let id = new_id("cus");
            let mut c = objects::customer(
                &id,
                f.get("email").map(String::as_str),
                metadata(&f, "metadata"),
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
        },
    )
    .await
}

async fn retrieve_customer(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    sim.api(&headers, None, |_, state, _| {
        found(state.customers.get(&id), "customer", &id)
    })
    .await
}

async fn update_customer(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    sim.api(
        &headers,
        Some(request_of(format!("POST /v1/customers/{id}"), &body)),
        |sim, state, now| {
            let customer = live_customer(state, &id)?;
            let mut previous = json!({});
            if let Some(email) = f.get("email") {
                previous["email"] = customer["email"].clone();
                customer["email"] = json!(email);
            }
            let meta = metadata(&f, "metadata");
            if let Some(m) = meta.as_object().filter(|m| !m.is_empty()) {
                for (k, v) in m {
                    customer["metadata"][k] = v.clone();
                }
            }
            let c = customer.clone();
            sim.emit(state, "customer.updated", c.clone(), Some(previous), now);
            Ok((StatusCode::OK, c))
        },
    )
    .await
}

async fn delete_customer(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    sim.api(
        &headers,
        Some(request_of(format!("DELETE /v1/customers/{id}"), b"")),
        |sim, state, now| {
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
        },
    )
    .await
}

/// Customers, newest first, paged like every Stripe list; deleted ones are not listed.
async fn list_customers(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let params = query_params(q.as_deref());
    sim.api(&headers, None, |_, state, _| {
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
    query: String,
}

async fn search_customers(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Response {
    // Supports the one query shape tollgate uses: metadata['key']:'value'.
    let wanted = q
        .query
        .strip_prefix("metadata['")
        .and_then(|r| r.split_once("']:'"))
        .map(|(k, v)| (k.to_owned(), v.trim_end_matches('\'').to_owned()));
    sim.api(&headers, None, |_, state, _| {
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

/// `GET /v1/prices`: filtered by `lookup_keys[]` (at most 10, as Stripe allows) and `active`.
async fn list_prices(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
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
    sim.api(&headers, None, |_, state, _| {
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

async fn create_price(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    sim.api(
        &headers,
        Some(request_of("POST /v1/prices".into(), &body)),
        |_, state, now| {
            let amount: i64 = f
                .get("unit_amount")
                .and_then(|a| a.parse().ok())
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
        },
    )
    .await
}

async fn retrieve_price(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    sim.api(&headers, None, |_, state, _| {
        found(state.prices.get(&id), "price", &id)
    })
    .await
}

/// Archives (`active=false`) or restores a price; amounts cannot change, as in Stripe.
async fn update_price(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    sim.api(
        &headers,
        Some(request_of(format!("POST /v1/prices/{id}"), &body)),
        |_, state, _| {
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
        },
    )
    .await
}

async fn create_checkout_session(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    sim.api(
        &headers,
        Some(request_of("POST /v1/checkout/sessions".into(), &body)),
        |sim, state, now| {
            if f.get("mode").map(String::as_str) != Some("subscription") {
                return Err(bad_param("mode"));
            }
            let items = line_items(state, &f)?;
            let customer = f.get("customer").cloned();
            if let Some(c) = &customer {
                live_customer(state, c)?;
            }
            let success_url = f
                .get("success_url")
                .ok_or_else(|| bad_param("success_url"))?;
            let cancel_url = f.get("cancel_url").cloned().unwrap_or_default();
            let id = format!("cs_test_{}", &new_id("x")[2..]);
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
                metadata(&f, "metadata"),
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
                    subscription_metadata: metadata(&f, "subscription_data[metadata]"),
                },
            );
            Ok((StatusCode::OK, session))
        },
    )
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
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    sim.api(&headers, None, |_, state, _| {
        let session = state.checkout_sessions.get(&id).map(|s| &s.object);
        found(session, "checkout.session", &id)
    })
    .await
}

async fn expire_checkout_session(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    sim.api(
        &headers,
        Some(request_of(
            format!("POST /v1/checkout/sessions/{id}/expire"),
            b"",
        )),
        |sim, state, now| {
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
        },
    )
    .await
}

async fn create_portal_session(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    sim.api(
        &headers,
        Some(request_of("POST /v1/billing_portal/sessions".into(), &body)),
        |sim, state, now| {
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
        },
    )
    .await
}

async fn list_subscriptions(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let params = query_params(q.as_deref());
    sim.api(&headers, None, |_, state, _| {
        let status = params.get("status").map(String::as_str).unwrap_or("");
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
                wanted => s["status"] == json!(wanted),
            })
            .cloned()
            .collect();
        page("/v1/subscriptions", &mut data, &params)
    })
    .await
}

/// One page of `data`, newest first, as Stripe pages lists: `limit` (default 10, at most 100),
/// `starting_after` an id of the previous page, `has_more` when more follow.
fn page(url: &str, data: &mut Vec<Value>, params: &HashMap<String, String>) -> ApiResult {
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

async fn retrieve_subscription(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    sim.api(&headers, None, |_, state, _| {
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
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    sim.api(
        &headers,
        Some(request_of(format!("POST /v1/subscriptions/{id}"), &body)),
        |sim, state, now| {
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
                .map_err(|m| {
                    stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", m, None)
                })?;
            Ok((StatusCode::OK, state.subscriptions[&id].object.clone()))
        },
    )
    .await
}

async fn cancel_subscription(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    sim.api(
        &headers,
        Some(request_of(format!("DELETE /v1/subscriptions/{id}"), b"")),
        |sim, state, now| {
            if !state.subscriptions.contains_key(&id) {
                return Err(missing("subscription", &id));
            }
            sim.portal_action(state, &id, "cancel_now", None, now)
                .map_err(|m| {
                    stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", m, None)
                })?;
            Ok((StatusCode::OK, state.subscriptions[&id].object.clone()))
        },
    )
    .await
}

async fn list_invoices(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let params = query_params(q.as_deref());
    sim.api(&headers, None, |_, state, _| {
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

// --- control endpoints (tests and the dev UI only) ------------------------------------------

fn control_router() -> Router<Simulator> {
    Router::new()
        .route("/_sim/", get(pages::show_dev_ui).post(pages::submit_dev_ui))
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
    sim.clock().set_skew(s.seconds);
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
