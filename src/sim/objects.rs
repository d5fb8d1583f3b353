//! Stripe objects in their real shape: each starts from Stripe's own example object
//! (`fixtures.json`, taken from `openapi/fixtures3.json` of Stripe's public openapi repository,
//! MIT licence) and gets the simulator's values, so the pinned async-stripe release parses them.

use std::sync::LazyLock;

use rand::Rng as _;
use serde_json::{Value, json};

static FIXTURES: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("fixtures.json")).expect("fixtures.json is valid JSON")
});

/// A fresh copy of Stripe's example object of `kind`.
pub fn template(kind: &str) -> Value {
    FIXTURES[kind].clone()
}

/// A Stripe-style id: `prefix_` and 24 random alphanumerics.
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}_{tail}")
}

/// True for a subscription status that is over for good (`canceled`, `incomplete_expired`).
pub fn ended(status: Option<&str>) -> bool {
    matches!(status, Some("canceled" | "incomplete_expired"))
}

/// Seconds in one billing interval (the simulator uses 30-day months and 365-day years).
pub fn interval_secs(interval: &str) -> i64 {
    match interval {
        "year" => 365 * 86_400,
        _ => 30 * 86_400,
    }
}

/// A customer.
pub fn customer(id: &str, email: Option<&str>, metadata: Value, now: i64) -> Value {
    let mut c = template("customer");
    c["id"] = json!(id);
    c["email"] = json!(email);
    c["metadata"] = metadata;
    c["created"] = json!(now);
    c["discount"] = Value::Null;
    c["balance"] = json!(0);
    c["delinquent"] = json!(false);
    c
}

/// A product.
pub fn product(id: &str, name: &str, now: i64) -> Value {
    let mut p = template("product");
    p["id"] = json!(id);
    p["name"] = json!(name);
    p["created"] = json!(now);
    p["updated"] = json!(now);
    p["default_price"] = Value::Null;
    p["metadata"] = json!({});
    p
}

/// What `items` (price objects and quantities) cost for one period.
pub fn amount_of(items: &[(Value, i64)]) -> i64 {
    items
        .iter()
        .map(|(p, q)| p["unit_amount"].as_i64().unwrap_or(0) * q)
        .sum()
}

/// A recurring price.
pub fn price(
    id: &str,
    product: &str,
    amount: i64,
    currency: &str,
    interval: &str,
    lookup_key: Option<&str>,
    now: i64,
) -> Value {
    let mut p = template("price");
    p["id"] = json!(id);
    p["product"] = json!(product);
    p["unit_amount"] = json!(amount);
    p["unit_amount_decimal"] = json!(amount.to_string());
    p["currency"] = json!(currency);
    p["created"] = json!(now);
    p["lookup_key"] = json!(lookup_key);
    p["type"] = json!("recurring");
    p["billing_scheme"] = json!("per_unit");
    p["recurring"] = json!({
        "interval": interval, "interval_count": 1, "meter": null,
        "trial_period_days": null, "usage_type": "licensed"
    });
    p["metadata"] = json!({});
    p["tiers_mode"] = Value::Null;
    p["transform_quantity"] = Value::Null;
    p["custom_unit_amount"] = Value::Null;
    p
}

/// The legacy `plan` object Stripe still embeds in subscription items, derived from a price.
fn plan_of(price: &Value) -> Value {
    json!({
        "active": true,
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": "per_unit",
        "created": price["created"],
        "currency": price["currency"],
        "id": price["id"],
        "interval": price["recurring"]["interval"],
        "interval_count": 1,
        "livemode": false,
        "metadata": {},
        "meter": null,
        "nickname": null,
        "object": "plan",
        "product": price["product"],
        "tiers_mode": null,
        "transform_usage": null,
        "trial_period_days": null,
        "usage_type": "licensed"
    })
}

/// The one item of a subscription, for `price` and the period.
pub fn subscription_item(
    subscription: &str,
    price: &Value,
    quantity: i64,
    period: (i64, i64),
    now: i64,
) -> Value {
    let mut item = template("subscription")["items"]["data"][0].clone();
    item["id"] = json!(new_id("si"));
    item["created"] = json!(now);
    item["subscription"] = json!(subscription);
    item["price"] = price.clone();
    item["plan"] = plan_of(price);
    item["quantity"] = json!(quantity);
    item["current_period_start"] = json!(period.0);
    item["current_period_end"] = json!(period.1);
    item["billing_thresholds"] = Value::Null;
    item["metadata"] = json!({});
    item["discounts"] = json!([]);
    item["tax_rates"] = json!([]);
    item
}

/// Puts item `item` of subscription `subscription` on `price` for `period`, keeping its id and
/// quantity.
pub fn reprice_item(
    item: &mut Value,
    subscription: &str,
    price: &Value,
    period: (i64, i64),
    now: i64,
) {
    let quantity = item["quantity"].as_i64().unwrap_or(1);
    let kept = item["id"].clone();
    *item = subscription_item(subscription, price, quantity, period, now);
    item["id"] = kept;
}

/// A subscription with one item.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, every field named there"
)]
pub fn subscription(
    id: &str,
    customer: &str,
    items: &[(Value, i64)],
    status: &str,
    period: (i64, i64),
    trial: Option<(i64, i64)>,
    metadata: Value,
    now: i64,
) -> Value {
    let mut s = template("subscription");
    s["id"] = json!(id);
    s["customer"] = json!(customer);
    s["status"] = json!(status);
    s["created"] = json!(now);
    s["start_date"] = json!(now);
    s["billing_cycle_anchor"] = json!(period.1);
    s["billing_cycle_anchor_config"] = Value::Null;
    s["currency"] = items[0].0["currency"].clone();
    s["cancel_at"] = Value::Null;
    s["cancel_at_period_end"] = json!(false);
    s["canceled_at"] = Value::Null;
    s["ended_at"] = Value::Null;
    s["cancellation_details"] = json!({"comment": null, "feedback": null, "reason": null});
    s["trial_start"] = json!(trial.map(|t| t.0));
    s["trial_end"] = json!(trial.map(|t| t.1));
    s["metadata"] = metadata;
    s["discounts"] = json!([]);
    s["schedule"] = Value::Null;
    s["test_clock"] = Value::Null;
    s["pause_collection"] = Value::Null;
    s["pending_update"] = Value::Null;
    s["latest_invoice"] = Value::Null;
    s["default_payment_method"] = Value::Null;
    s["items"] = json!({
        "object": "list",
        "data": items
            .iter()
            .map(|(price, quantity)| subscription_item(id, price, *quantity, period, now))
            .collect::<Vec<_>>(),
        "has_more": false,
        "url": format!("/v1/subscription_items?subscription={id}"),
    });
    s
}

/// An invoice of a subscription for one period; `paid` or `open` (a failed attempt).
#[expect(
    clippy::too_many_arguments,
    reason = "one shape, every field named at the call sites"
)]
pub fn invoice(
    customer: &str,
    subscription: &str,
    amount: i64,
    currency: &str,
    period: (i64, i64),
    paid: bool,
    reason: &str,
    now: i64,
) -> Value {
    let mut i = template("invoice");
    let id = new_id("in");
    i["id"] = json!(id);
    i["customer"] = json!(customer);
    i["currency"] = json!(currency);
    i["created"] = json!(now);
    i["period_start"] = json!(period.0);
    i["period_end"] = json!(period.1);
    i["status"] = json!(if paid { "paid" } else { "open" });
    i["billing_reason"] = json!(reason);
    i["amount_due"] = json!(amount);
    i["amount_paid"] = json!(if paid { amount } else { 0 });
    i["amount_remaining"] = json!(if paid { 0 } else { amount });
    i["subtotal"] = json!(amount);
    i["subtotal_excluding_tax"] = json!(amount);
    i["total"] = json!(amount);
    i["total_excluding_tax"] = json!(amount);
    i["attempt_count"] = json!(1);
    i["attempted"] = json!(true);
    i["number"] = json!(format!("SIM-{}", &id[3..11]));
    i["hosted_invoice_url"] = Value::Null;
    i["invoice_pdf"] = Value::Null;
    i["subscription"] = json!(subscription);
    i["parent"] = json!({
        "type": "subscription_details",
        "quote_details": null,
        "subscription_details": {"metadata": {}, "subscription": subscription}
    });
    i["lines"] = json!({"object": "list", "data": [], "has_more": false, "url": format!("/v1/invoices/{id}/lines")});
    i["status_transitions"] = json!({
        "finalized_at": now, "marked_uncollectible_at": null,
        "paid_at": if paid { json!(now) } else { Value::Null }, "voided_at": null
    });
    i["next_payment_attempt"] = Value::Null;
    i["due_date"] = Value::Null;
    i
}

/// A Checkout Session in subscription mode.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, every field named there"
)]
pub fn checkout_session(
    id: &str,
    customer: Option<&str>,
    client_reference_id: Option<&str>,
    success_url: &str,
    cancel_url: &str,
    url: &str,
    amount: i64,
    currency: &str,
    metadata: Value,
    now: i64,
) -> Value {
    let mut s = template("checkout.session");
    s["id"] = json!(id);
    s["customer"] = json!(customer);
    s["client_reference_id"] = json!(client_reference_id);
    s["success_url"] = json!(success_url);
    s["cancel_url"] = json!(cancel_url);
    s["url"] = json!(url);
    s["mode"] = json!("subscription");
    s["status"] = json!("open");
    s["payment_status"] = json!("unpaid");
    s["created"] = json!(now);
    s["expires_at"] = json!(now + 86_400);
    s["amount_subtotal"] = json!(amount);
    s["amount_total"] = json!(amount);
    s["currency"] = json!(currency);
    s["metadata"] = metadata;
    s["subscription"] = Value::Null;
    s["payment_intent"] = Value::Null;
    s["invoice"] = Value::Null;
    s["customer_email"] = Value::Null;
    s["shipping_cost"] = Value::Null;
    s["shipping_address_collection"] = Value::Null;
    s["total_details"] = json!({"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0});
    s
}

/// A Billing Portal session.
pub fn portal_session(id: &str, customer: &str, return_url: &str, url: &str, now: i64) -> Value {
    let mut s = template("billing_portal.session");
    s["id"] = json!(id);
    s["customer"] = json!(customer);
    s["return_url"] = json!(return_url);
    s["url"] = json!(url);
    s["created"] = json!(now);
    s["flow"] = Value::Null;
    s["configuration"] = json!("bpc_simulator");
    s["livemode"] = json!(false);
    s
}

/// An event envelope.
pub fn event(kind: &str, object: Value, previous: Option<Value>, created: i64) -> Value {
    let mut data = json!({ "object": object });
    if let Some(p) = previous {
        data["previous_attributes"] = p;
    }
    json!({
        "id": new_id("evt"),
        "object": "event",
        "api_version": "2026-09-30.endive",
        "created": created,
        "data": data,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": kind,
    })
}
