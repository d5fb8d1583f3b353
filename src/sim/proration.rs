//! A price change in the middle of a period, as Stripe bills it: unused time on the old price is
//! credited and the rest of the period on the new price charged, both from the proration date.
//! A change of interval (month ↔ year) resets the billing cycle instead: the credit, then the new
//! price's whole first period, invoiced at once. `proration_behavior` says what becomes of the
//! lines: `always_invoice` invoices them now, `create_prorations` (the default) keeps them for the
//! next renewal, `none` drops them. During a trial nothing is prorated.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{
    Simulator, new_id, objects,
    state::SimState,
    wire::{Form, bad_param, missing, stripe_error},
};

/// What moving a subscription's item to another price at one moment credits and charges.
pub(super) struct Proration {
    /// Credit and charge lines (none during a trial).
    pub(super) lines: Vec<Value>,
    /// The item's period after the change.
    pub(super) period: (i64, i64),
    /// True when the interval changes: the cycle restarts and is invoiced at once.
    pub(super) resets_cycle: bool,
}

/// The proration of moving `sub`'s item `item` to `new_price`, computed for `at`, made at `now`.
/// `ends_trial`: the change ends a trial (`trial_end=now`), so the new price's first period is
/// charged from now.
pub(super) fn prorate(
    state: &SimState,
    sub: &Value,
    item: &Value,
    new_price: &Value,
    (at, now): (i64, i64),
    ends_trial: bool,
) -> Proration {
    let start = item["current_period_start"].as_i64().unwrap_or(at);
    let end = item["current_period_end"].as_i64().unwrap_or(at);
    let quantity = item["quantity"].as_i64().unwrap_or(1);
    let old_price = &item["price"];
    let interval = |p: &Value| p["recurring"]["interval"].as_str().unwrap_or("").to_owned();
    let trialing = sub["status"] == "trialing" && !ends_trial;
    let resets_cycle = interval(old_price) != interval(new_price) || ends_trial;
    let sub_id = sub["id"].as_str().unwrap_or("");
    let item_id = item["id"].as_str().unwrap_or("");
    let len = (end - start).max(1);
    let left = (end - at).clamp(0, len);
    let share = |amount: i64| (i128::from(amount) * i128::from(left) / i128::from(len)) as i64;
    let unit = |p: &Value| p["unit_amount"].as_i64().unwrap_or(0) * quantity;
    let name = |p: &Value| product_name(state, p);
    let mut lines = Vec::new();
    if !trialing && !ends_trial && left > 0 {
        lines.push(line(
            &format!("Unused time on {} after {}", name(old_price), day(at)),
            -share(unit(old_price)),
            old_price,
            quantity,
            (at, end),
            true,
            (sub_id, item_id),
        ));
    }
    let period = if resets_cycle && !trialing {
        // The new cycle starts when the change is made.
        let next = (now, now + objects::interval_secs(&interval(new_price)));
        lines.push(line(
            &format!("{} × {}", quantity, name(new_price)),
            unit(new_price),
            new_price,
            quantity,
            next,
            false,
            (sub_id, item_id),
        ));
        next
    } else {
        if !trialing && left > 0 {
            lines.push(line(
                &format!("Remaining time on {} after {}", name(new_price), day(at)),
                share(unit(new_price)),
                new_price,
                quantity,
                (at, end),
                true,
                (sub_id, item_id),
            ));
        }
        (start, end)
    };
    Proration {
        lines,
        period,
        resets_cycle: resets_cycle && !trialing,
    }
}

pub(super) fn product_name(state: &SimState, price: &Value) -> String {
    price["product"]
        .as_str()
        .and_then(|p| state.products.get(p))
        .and_then(|p| p["name"].as_str())
        .unwrap_or("plan")
        .to_owned()
}

fn day(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}

/// An invoice line of a subscription item.
pub(super) fn line(
    description: &str,
    amount: i64,
    price: &Value,
    quantity: i64,
    period: (i64, i64),
    proration: bool,
    (sub_id, item_id): (&str, &str),
) -> Value {
    json!({
        "id": new_id("il"),
        "object": "line_item",
        "amount": amount,
        "subtotal": amount,
        "currency": price["currency"],
        "description": description,
        "discount_amounts": [],
        "discountable": true,
        "discounts": [],
        "invoice": null,
        "livemode": false,
        "metadata": {},
        "parent": {
            "type": "subscription_item_details",
            "invoice_item_details": null,
            "subscription_item_details": {
                "invoice_item": null,
                "proration": proration,
                "proration_details": {"credited_items": null},
                "subscription": sub_id,
                "subscription_item": item_id
            }
        },
        "period": {"start": period.0, "end": period.1},
        "pretax_credit_amounts": [],
        "pricing": {
            "type": "price_details",
            "price_details": {"price": price["id"], "product": price["product"]},
            "unit_amount_decimal": price["unit_amount_decimal"]
        },
        "quantity": quantity,
        "quantity_decimal": null,
        "subscription": sub_id,
        "taxes": []
    })
}

/// An invoice of subscription `sub` made of `lines`, with the customer's credit balance applied:
/// `total` is the lines' sum, `amount_due` what is left to charge. A negative total becomes
/// credit. Returns the invoice and the customer's balance after it.
pub(super) fn invoice_of_lines(
    sub: &Value,
    lines: Vec<Value>,
    balance: i64,
    period: (i64, i64),
    reason: &str,
    now: i64,
) -> (Value, i64) {
    let customer = sub["customer"].as_str().unwrap_or("");
    let currency = sub["currency"].as_str().unwrap_or("usd");
    let total: i64 = lines.iter().filter_map(|l| l["amount"].as_i64()).sum();
    let after = total + balance;
    let due = after.max(0);
    let mut invoice = objects::invoice(
        customer,
        sub["id"].as_str().unwrap_or(""),
        due,
        currency,
        period,
        true,
        reason,
        now,
    );
    let id = invoice["id"].clone();
    let count = lines.len();
    invoice["lines"]["data"] = json!(
        lines
            .into_iter()
            .map(|mut l| {
                l["invoice"] = id.clone();
                l
            })
            .collect::<Vec<_>>()
    );
    invoice["lines"]["total_count"] = json!(count);
    invoice["subtotal"] = json!(total);
    invoice["subtotal_excluding_tax"] = json!(total);
    invoice["total"] = json!(total);
    invoice["total_excluding_tax"] = json!(total);
    invoice["starting_balance"] = json!(balance);
    invoice["ending_balance"] = json!(after.min(0));
    (invoice, after.min(0))
}

/// Marks `invoice` unpaid: its charge was declined.
pub(super) fn mark_unpaid(invoice: &mut Value) {
    let due = invoice["amount_due"].clone();
    invoice["status"] = json!("open");
    invoice["amount_paid"] = json!(0);
    invoice["amount_remaining"] = due;
    invoice["status_transitions"]["paid_at"] = Value::Null;
}

/// Stripe's answer to a declined card (402 `card_error`).
pub(super) fn card_declined() -> (StatusCode, Value) {
    let (status, mut body) = stripe_error(
        StatusCode::PAYMENT_REQUIRED,
        "card_error",
        "Your card was declined.".into(),
        Some("card_declined"),
    );
    body["error"]["decline_code"] = json!("generic_decline");
    (status, body)
}

/// What a subscription update asks about prorations and payment.
pub(super) struct ChangeTerms {
    pub(super) behavior: String,
    pub(super) error_if_incomplete: bool,
    pub(super) date: Option<i64>,
    /// `trial_end=now`: the change ends the trial.
    pub(super) ends_trial: bool,
}

impl ChangeTerms {
    /// Reads `proration_behavior`, `payment_behavior` and `proration_date` under `prefix` (empty
    /// for an update, `subscription_details` for a preview).
    pub(super) fn read(form: &Form, prefix: &str) -> Result<Self, (StatusCode, Value)> {
        let name = |n: &str| {
            if prefix.is_empty() {
                n.to_owned()
            } else {
                format!("{prefix}[{n}]")
            }
        };
        let behavior = form
            .get(&name("proration_behavior"))
            .cloned()
            .unwrap_or_else(|| "create_prorations".into());
        if !["create_prorations", "always_invoice", "none"].contains(&behavior.as_str()) {
            return Err(bad_param(&name("proration_behavior")));
        }
        let error_if_incomplete = match form.get("payment_behavior").map(String::as_str) {
            None | Some("allow_incomplete") => false,
            Some("error_if_incomplete") => true,
            Some(_) => return Err(bad_param("payment_behavior")),
        };
        let date = match form.get(&name("proration_date")) {
            None => None,
            Some(d) => Some(
                d.parse::<i64>()
                    .map_err(|_| bad_param(&name("proration_date")))?,
            ),
        };
        let ends_trial = match form.get(&name("trial_end")).map(String::as_str) {
            None => false,
            Some("now") => true,
            Some(_) => return Err(bad_param(&name("trial_end"))),
        };
        Ok(Self {
            behavior,
            error_if_incomplete,
            date,
            ends_trial,
        })
    }
}

impl ChangeTerms {
    /// The moment a change of `item` is prorated for: `proration_date` (named `param`), which must
    /// lie in the item's current period and not after `now`, as Stripe requires; else `now`.
    pub(super) fn proration_date(
        &self,
        item: &Value,
        param: &str,
        now: i64,
    ) -> Result<i64, (StatusCode, Value)> {
        let at = self.date.unwrap_or(now);
        let start = item["current_period_start"].as_i64().unwrap_or(now);
        if at < start || at > now {
            let (status, mut body) = stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "The proration date must be within the subscription's current period and not in the future."
                    .into(),
                None,
            );
            body["error"]["param"] = json!(param);
            return Err((status, body));
        }
        Ok(at)
    }
}

impl Simulator {
    /// `POST /v1/subscriptions/{id}` with `items[0][id]` and `items[0][price]`: the item moves to
    /// the price, prorated by `terms`. With `error_if_incomplete`, a declined charge changes
    /// nothing (402); otherwise the change stands and the subscription is past due.
    pub(super) fn change_price(
        &self,
        state: &mut SimState,
        sub_id: &str,
        item_id: &str,
        price_id: &str,
        terms: &ChangeTerms,
        now: i64,
    ) -> Result<(), (StatusCode, Value)> {
        let sub = state.subscriptions[sub_id].object.clone();
        let new_price = state
            .prices
            .get(price_id)
            .ok_or_else(|| missing("price", price_id))?
            .clone();
        let item = sub["items"]["data"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["id"] == item_id))
            .ok_or_else(|| missing("subscription_item", item_id))?
            .clone();
        let at = terms.proration_date(&item, "proration_date", now)?;
        let p = prorate(state, &sub, &item, &new_price, (at, now), terms.ends_trial);
        let customer = sub["customer"].as_str().unwrap_or("").to_owned();
        let balance = state.customers[&customer]["balance"].as_i64().unwrap_or(0);
        let keep = |lines: Vec<Value>| -> Vec<Value> {
            match terms.behavior.as_str() {
                "none" => lines
                    .into_iter()
                    .filter(|l| l["parent"]["subscription_item_details"]["proration"] != true)
                    .collect(),
                _ => lines,
            }
        };
        let invoice_now = p.resets_cycle || terms.behavior == "always_invoice";
        let mut invoice = None;
        if invoice_now {
            let lines = keep(p.lines.clone());
            let (mut inv, after) =
                invoice_of_lines(&sub, lines, balance, p.period, "subscription_update", now);
            let declined = inv["amount_due"].as_i64().unwrap_or(0) > 0
                && state.failing_customers.contains(&customer);
            if declined {
                if terms.error_if_incomplete {
                    return Err(card_declined());
                }
                mark_unpaid(&mut inv);
            } else {
                state
                    .customers
                    .get_mut(&customer)
                    .expect("a subscription's customer")["balance"] = json!(after);
            }
            invoice = Some((inv, declined));
        }
        let mut next = sub.clone();
        let previous = json!({"items": next["items"].clone()});
        for i in next["items"]["data"].as_array_mut().into_iter().flatten() {
            if i["id"] == item_id {
                objects::reprice_item(i, sub_id, &new_price, p.period, now);
            }
        }
        if p.resets_cycle {
            next["billing_cycle_anchor"] = json!(p.period.0);
            // A cancellation at the period end moves with the period.
            if next["cancel_at_period_end"] == true {
                next["cancel_at"] = json!(p.period.1);
            }
        }
        if terms.ends_trial && next["status"] == "trialing" {
            next["status"] = json!("active");
            next["trial_end"] = json!(now);
        }
        let entry = state.subscriptions.get_mut(sub_id).expect("present");
        if !invoice_now && terms.behavior == "create_prorations" {
            entry.pending_lines.extend(p.lines);
        }
        if let Some((inv, declined)) = &invoice {
            next["latest_invoice"] = inv["id"].clone();
            if *declined {
                next["status"] = json!("past_due");
            }
        }
        entry.object = next.clone();
        self.emit(
            state,
            "customer.subscription.updated",
            next,
            Some(previous),
            now,
        );
        if let Some((inv, declined)) = invoice {
            let kind = if declined {
                "invoice.payment_failed"
            } else {
                "invoice.paid"
            };
            let inv = self.keep_invoice(state, inv);
            self.emit(state, kind, inv, None, now);
        }
        Ok(())
    }

    /// Stores an invoice with its hosted page and PDF addresses, and returns it.
    pub(super) fn keep_invoice(&self, state: &mut SimState, mut invoice: Value) -> Value {
        let id = invoice["id"].as_str().unwrap_or_default().to_owned();
        invoice["hosted_invoice_url"] = json!(format!("{}invoice/{id}", self.base_url()));
        invoice["invoice_pdf"] = json!(format!("{}invoice/{id}/pdf", self.base_url()));
        state.invoices.insert(id, invoice.clone());
        invoice
    }
}
