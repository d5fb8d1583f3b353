//! Changes to a subscription asked for through the API or the hosted portal: a new price on an
//! item, an added item, cancellation (now or at period end), resumption, a plan switch.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{
    Simulator, objects,
    state::SimState,
    wire::{bad_param, missing, stripe_error},
};

impl Simulator {
    /// `POST /v1/subscriptions/{id}` with `items[0][price]`: the item `item_id` gets the price,
    /// or, without an id, the price is added as a new item.
    pub(super) fn change_items(
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
        if objects::ended(next["status"].as_str()) {
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
                objects::reprice_item(item, sub_id, &price, period, now);
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

    /// Applies a portal action to a subscription and emits the matching event.
    pub(super) fn portal_action(
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
        if objects::ended(next["status"].as_str()) {
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
                let new_price = state.prices.get(price_id).ok_or("unknown price")?;
                switch_price(&mut next, sub_id, new_price, now)?
            }
            _ => return Err("unknown action".into()),
        };
        state.subscriptions.get_mut(sub_id).expect("present").object = next.clone();
        self.emit(state, kind, next, Some(previous), now);
        if action == "cancel_now" {
            self.end_schedule_of(state, sub_id, now);
        }
        Ok(())
    }
}

/// The portal's plan switch: the single item of subscription `next` gets `new_price`, keeping its
/// quantity and period. Returns the event's kind and previous attributes.
fn switch_price(
    next: &mut Value,
    sub_id: &str,
    new_price: &Value,
    now: i64,
) -> Result<(&'static str, Value), String> {
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
    *item = objects::subscription_item(sub_id, new_price, quantity, period, now);
    Ok((
        "customer.subscription.updated",
        json!({"items": {"data": [{"price": {"id": old_price}}]}}),
    ))
}
