//! Stripe events, built one way for every test: the envelope Stripe wraps an object in, the
//! subscription and invoice objects the tests send, whole subscription lives, the recorded
//! payloads in `webhooks/*.json`, and their signed delivery to `/webhooks/stripe`.

use reqwest::{Client, Response};
use serde_json::{Value, json};
use tollgate::sim::delivery::sign;

use super::app::{TestApp, client};

/// A Stripe event `id` of type `kind`, created at `created`, around `object`.
pub fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": kind, "created": created, "data": {"object": object}})
}

/// A subscription object: `sub` of `customer` in `status`, with `items` (price id, quantity)
/// whose periods end at `period_end`.
pub fn subscription(
    sub: &str,
    customer: &str,
    status: &str,
    items: &[(&str, i64)],
    period_end: i64,
) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(price, quantity)| {
            json!({"price": {"id": price}, "quantity": quantity, "current_period_end": period_end})
        })
        .collect();
    json!({"id": sub, "object": "subscription", "customer": customer, "status": status,
           "items": {"data": items}})
}

/// An invoice object `id` of `customer` for subscription `sub` (named where Stripe names it now,
/// under `parent`).
pub fn invoice(id: &str, customer: &str, sub: &str) -> Value {
    json!({"id": id, "object": "invoice", "customer": customer,
           "parent": {"subscription_details": {"subscription": sub}}})
}

/// A `customer.subscription.*` or `invoice.payment_failed` event for `sub` of `customer` (on the
/// price `price_x`, which the catalog does not know).
pub fn sub_event(
    id: &str,
    kind: &str,
    created: i64,
    sub: &str,
    customer: &str,
    status: &str,
) -> Value {
    let object = if kind.starts_with("invoice.") {
        invoice(&format!("in_{id}"), customer, sub)
    } else {
        subscription(sub, customer, status, &[("price_x", 1)], created + 1_000)
    };
    event(id, kind, created, object)
}

/// A `customer.subscription.updated` event for `sub_{n}` of `customer` in state `status` (plan
/// `pro`), created at `created`, with `extra` subscription fields.
pub fn pro_subscription_updated(
    app: &TestApp,
    n: &str,
    customer: &str,
    status: &str,
    created: i64,
    extra: Value,
) -> Value {
    let price = app.price_of("pro");
    let now = app.state.clock.now();
    let mut object = subscription(
        &format!("sub_{n}"),
        customer,
        status,
        &[(&price, 1)],
        now + 10 * 86_400,
    );
    object["cancel_at_period_end"] = json!(false);
    for (k, v) in extra.as_object().unwrap() {
        object[k] = v.clone();
    }
    event(
        &format!("evt_{n}_{created}"),
        "customer.subscription.updated",
        created,
        object,
    )
}

/// A subscription state to put a user in: status, event time, extra subscription fields.
pub type SubState<'a> = Option<(&'a str, i64, Value)>;

/// A signed-in user `{n}@example.com` whose (only) subscription is in `status`, set through a
/// signed webhook.
pub async fn user_in(app: &TestApp, n: &str, status: SubState<'_>) -> Client {
    let c = app.user(&format!("{n}@example.com")).await;
    if let Some((status, created, extra)) = status {
        let customer = format!("cus_{n}");
        app.map_customer_of(&c, &customer).await;
        let outcome = app
            .deliver(&pro_subscription_updated(
                app, n, &customer, status, created, extra,
            ))
            .await;
        assert_eq!(outcome["outcome"], "applied", "{n}");
    }
    c
}

/// The events of one subscription's life, oldest first, for a customer mapped to a user. Its
/// first item is an add-on the catalog does not know; the plan is the second.
pub fn life_of(sub: &str, customer: &str, price: &str, t0: i64) -> Vec<Value> {
    let state = |status: &str, cancel: bool, end: i64| {
        let mut object = subscription(
            sub,
            customer,
            status,
            &[("price_addon", 2), (price, 1)],
            end,
        );
        object["cancel_at_period_end"] = json!(cancel);
        object["cancel_at"] = if cancel { json!(end) } else { Value::Null };
        object
    };
    let at = |n: usize, kind: &str, object: Value| {
        event(&format!("evt_{sub}_{n}"), kind, t0 + n as i64 * 10, object)
    };
    let updated = "customer.subscription.updated";
    vec![
        at(
            0,
            "customer.subscription.created",
            state("trialing", false, t0 + 100),
        ),
        at(1, updated, state("active", false, t0 + 200)),
        at(2, "invoice.payment_failed", invoice("in_1", customer, sub)),
        at(3, updated, state("past_due", false, t0 + 300)),
        at(4, updated, state("active", true, t0 + 400)),
        at(
            5,
            "customer.subscription.deleted",
            state("canceled", true, t0 + 400),
        ),
    ]
}

/// A small deterministic generator of indexes below `n` (xorshift), for permutations with
/// duplicates: the same seed gives the same order, so a failing order is replayed from its seed.
pub fn index_source(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}

/// The recorded payloads in `webhooks/*.json` at the repository root: each file's name (without
/// `.json`) and its event.
pub fn recorded_events() -> Vec<(String, Value)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/webhooks");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (
                name,
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect()
}

impl TestApp {
    /// The `Stripe-Signature` of `body`, signed with the app's webhook secret at the app's now.
    pub fn signature(&self, body: &str) -> String {
        sign(
            self.state.stripe.webhook_secrets[0].expose(),
            self.state.clock.now(),
            body.as_bytes(),
        )
    }

    /// Posts a webhook body with `signature` as its `Stripe-Signature` (none when `None`).
    pub async fn post_webhook(&self, body: &str, signature: Option<String>) -> Response {
        let mut r = client()
            .post(self.url("/webhooks/stripe"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(s) = signature {
            r = r.header("stripe-signature", s);
        }
        r.send().await.unwrap()
    }

    /// Signs `event` with the app's webhook secret at the app's now and posts it, whatever the
    /// answer.
    pub async fn try_deliver(&self, event: &Value) -> Response {
        let body = event.to_string();
        self.post_webhook(&body, Some(self.signature(&body))).await
    }

    /// [`Self::try_deliver`], and the answer; panics unless 200.
    pub async fn deliver(&self, event: &Value) -> Value {
        let r = self.try_deliver(event).await;
        assert_eq!(r.status(), 200, "webhook accepted");
        r.json().await.unwrap()
    }
}
