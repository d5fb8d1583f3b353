//! `POST /v1/invoices/create_preview`: the invoice a subscription change would make now, or the
//! next renewal's, computed as the change itself would and stored nowhere.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{
    Simulator, objects,
    proration::{ChangeTerms, invoice_of_lines, line, product_name, prorate},
    state::SimState,
    wire::{Form, bad_param, missing, stripe_error},
};

impl Simulator {
    /// `POST /v1/invoices/create_preview` for a subscription: with a price change under
    /// `subscription_details`, the invoice it makes now (`always_invoice`, or a change of
    /// interval), else the next renewal's invoice with the change's prorations; without one, the
    /// next renewal's invoice (a scheduled phase's price included). Nothing is stored.
    pub(super) fn preview_invoice(
        &self,
        state: &SimState,
        form: &Form,
        now: i64,
    ) -> Result<Value, (StatusCode, Value)> {
        let customer = form.get("customer").ok_or_else(|| bad_param("customer"))?;
        let none_upcoming = || {
            stripe_error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("No upcoming invoices for customer: {customer}"),
                Some("invoice_upcoming_none"),
            )
        };
        let sub_id = form
            .get("subscription")
            .ok_or_else(|| bad_param("subscription"))?;
        let sub = &state
            .subscriptions
            .get(sub_id)
            .ok_or_else(|| missing("subscription", sub_id))?
            .object;
        if sub["customer"] != json!(customer) {
            return Err(bad_param("subscription"));
        }
        let terms = ChangeTerms::read(form, "subscription_details")?;
        let asked = (
            form.get("subscription_details[items][0][id]"),
            form.get("subscription_details[items][0][price]"),
        );
        let balance = state.customers[customer.as_str()]["balance"]
            .as_i64()
            .unwrap_or(0);
        let mut pending = state.subscriptions[sub_id].pending_lines.clone();
        let mut items: Vec<Value> = sub["items"]["data"].as_array().cloned().unwrap_or_default();
        if let (Some(item_id), Some(price_id)) = asked {
            if objects::ended(sub["status"].as_str()) {
                return Err(none_upcoming());
            }
            let price = state
                .prices
                .get(price_id)
                .ok_or_else(|| missing("price", price_id))?;
            let item = items
                .iter_mut()
                .find(|i| i["id"] == item_id.as_str())
                .ok_or_else(|| missing("subscription_item", item_id))?;
            let at = terms.proration_date(item, "subscription_details[proration_date]", now)?;
            let p = prorate(state, sub, item, price, (at, now), terms.ends_trial);
            if p.resets_cycle || terms.behavior == "always_invoice" {
                let lines = if terms.behavior == "none" {
                    p.lines
                        .into_iter()
                        .filter(|l| l["parent"]["subscription_item_details"]["proration"] != true)
                        .collect()
                } else {
                    p.lines
                };
                let (mut inv, _) =
                    invoice_of_lines(sub, lines, balance, p.period, "subscription_update", now);
                // Stripe says which moment it prorated for.
                inv["parent"]["subscription_details"]["subscription_proration_date"] = json!(at);
                return Ok(preview(&mut inv));
            }
            if terms.behavior == "create_prorations" {
                pending.extend(p.lines);
            }
            item["price"] = price.clone();
        } else if sub["cancel_at_period_end"] == true || objects::ended(sub["status"].as_str()) {
            return Err(none_upcoming());
        }
        let end = items
            .first()
            .and_then(|i| i["current_period_end"].as_i64())
            .unwrap_or(now);
        let scheduled = self.scheduled_prices(state, sub, end);
        let mut lines = pending;
        for (n, item) in items.iter().enumerate() {
            let price = scheduled.get(n).cloned().unwrap_or(item["price"].clone());
            let quantity = item["quantity"].as_i64().unwrap_or(1);
            let interval = price["recurring"]["interval"].as_str().unwrap_or("month");
            lines.push(line(
                &format!("{} × {}", quantity, product_name(state, &price)),
                price["unit_amount"].as_i64().unwrap_or(0) * quantity,
                &price,
                quantity,
                (end, end + objects::interval_secs(interval)),
                false,
                (sub_id, item["id"].as_str().unwrap_or("")),
            ));
        }
        let period = (end, end + 1);
        let (mut inv, _) = invoice_of_lines(sub, lines, balance, period, "subscription_cycle", end);
        inv["next_payment_attempt"] = json!(end);
        Ok(preview(&mut inv))
    }
}

/// An invoice as a preview: a draft with an `upcoming_in_` id, not attempted.
fn preview(invoice: &mut Value) -> Value {
    let id = format!("upcoming_{}", invoice["id"].as_str().unwrap_or(""));
    invoice["id"] = json!(id);
    invoice["status"] = json!("draft");
    invoice["number"] = Value::Null;
    invoice["attempted"] = json!(false);
    invoice["attempt_count"] = json!(0);
    invoice["amount_paid"] = json!(0);
    invoice["amount_remaining"] = invoice["amount_due"].clone();
    invoice["status_transitions"]["paid_at"] = Value::Null;
    invoice["status_transitions"]["finalized_at"] = Value::Null;
    invoice["hosted_invoice_url"] = Value::Null;
    invoice["invoice_pdf"] = Value::Null;
    if let Some(lines) = invoice["lines"]["data"].as_array_mut() {
        for l in lines {
            l["invoice"] = json!(id);
        }
    }
    invoice.clone()
}
