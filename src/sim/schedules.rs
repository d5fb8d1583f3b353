//! Subscription schedules: a subscription's future phases (a downgrade at the period end is a
//! second phase on the cheaper price). Made `from_subscription`, given phases by an update, and
//! released (the subscription goes on as it is, without the schedule). At each period boundary the
//! phase that starts there sets the item's price before the renewal is charged, and a schedule
//! whose last phase ends there is released (`end_behavior: release`).
//!
//! Simplifications: one item per phase; the current phase keeps the subscription's price (a
//! schedule changes prices only at a phase boundary); `end_behavior: cancel` is not offered.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{
    Simulator, new_id, objects,
    state::SimState,
    wire::{Form, bad_param, missing, stripe_error},
};

fn refused(message: String) -> (StatusCode, Value) {
    stripe_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        message,
        None,
    )
}

impl Simulator {
    /// `POST /v1/subscription_schedules` with `from_subscription`: one phase, the current period
    /// on the current price.
    pub(super) fn create_schedule(
        &self,
        state: &mut SimState,
        form: &Form,
        now: i64,
    ) -> Result<Value, (StatusCode, Value)> {
        let sub_id = form
            .get("from_subscription")
            .ok_or_else(|| bad_param("from_subscription"))?;
        let sub = state
            .subscriptions
            .get(sub_id)
            .ok_or_else(|| missing("subscription", sub_id))?
            .object
            .clone();
        if objects::ended(sub["status"].as_str()) {
            return Err(refused(format!(
                "You cannot migrate a subscription that is `canceled`: {sub_id}"
            )));
        }
        if let Some(existing) = sub["schedule"].as_str() {
            return Err(refused(format!(
                "You cannot migrate a subscription that is already attached to a schedule: `{existing}`."
            )));
        }
        let item = &sub["items"]["data"][0];
        let period = (
            item["current_period_start"].as_i64().unwrap_or(now),
            item["current_period_end"].as_i64().unwrap_or(now),
        );
        let id = new_id("sub_sched");
        let mut schedule = objects::template("subscription_schedule");
        schedule["id"] = json!(id);
        schedule["created"] = json!(now);
        schedule["customer"] = sub["customer"].clone();
        schedule["subscription"] = json!(sub_id);
        schedule["status"] = json!("active");
        schedule["end_behavior"] = json!("release");
        schedule["canceled_at"] = Value::Null;
        schedule["completed_at"] = Value::Null;
        schedule["released_at"] = Value::Null;
        schedule["released_subscription"] = Value::Null;
        schedule["metadata"] = json!({});
        schedule["current_phase"] = json!({"start_date": period.0, "end_date": period.1});
        schedule["phases"] = json!([phase(
            item["price"]["id"].as_str().unwrap_or(""),
            item["quantity"].as_i64().unwrap_or(1),
            &sub["currency"],
            period,
        )]);
        state.schedules.insert(id.clone(), schedule.clone());
        self.attach(state, sub_id, json!(id), now);
        self.emit(
            state,
            "subscription_schedule.created",
            schedule.clone(),
            None,
            now,
        );
        Ok(schedule)
    }

    /// `POST /v1/subscription_schedules/{id}` with `phases[n][…]`: the phases from the current one
    /// on. Each phase has its `end_date`, or lasts its `duration` (default: one interval of its
    /// price); the next starts where it ends.
    pub(super) fn update_schedule(
        &self,
        state: &mut SimState,
        id: &str,
        form: &Form,
        now: i64,
    ) -> Result<Value, (StatusCode, Value)> {
        let schedule = state
            .schedules
            .get(id)
            .ok_or_else(|| missing("subscription_schedule", id))?
            .clone();
        let status = schedule["status"].as_str().unwrap_or("");
        if status != "active" && status != "not_started" {
            return Err(refused(format!(
                "You cannot update a subscription schedule that is currently in the `{status}` status. It must be in one of the following statuses: `active`, `not_started`."
            )));
        }
        match form.get("end_behavior").map(String::as_str) {
            None | Some("release") => {}
            Some(_) => return Err(bad_param("end_behavior")),
        }
        let current = &schedule["current_phase"];
        let mut start = current["start_date"].as_i64().unwrap_or(now);
        let mut phases = Vec::new();
        for n in 0.. {
            let key = |k: &str| format!("phases[{n}][{k}]");
            let Some(price_id) = form.get(&key("items][0][price")) else {
                break;
            };
            let price = state
                .prices
                .get(price_id)
                .filter(|p| p["active"] != false)
                .ok_or_else(|| bad_param(&key("items][0][price")))?;
            let quantity = match form.get(&key("items][0][quantity")) {
                None => 1,
                Some(q) => q
                    .parse::<i64>()
                    .ok()
                    .filter(|q| *q >= 1)
                    .ok_or_else(|| bad_param(&key("items][0][quantity")))?,
            };
            if let Some(s) = form.get(&key("start_date")) {
                if n == 0 && s.parse::<i64>().ok() != Some(start) {
                    return Err(refused(
                        "You can not modify the start date of the current phase.".into(),
                    ));
                }
                if n > 0 && s.parse::<i64>().ok() != Some(start) {
                    return Err(bad_param(&key("start_date")));
                }
            }
            let end = match form.get(&key("end_date")) {
                Some(e) => e
                    .parse::<i64>()
                    .ok()
                    .filter(|e| *e > start.max(now))
                    .ok_or_else(|| bad_param(&key("end_date")))?,
                // `duration`, else one interval of the phase's price.
                None => {
                    let count = match form.get(&key("duration][interval_count")) {
                        None => 1,
                        Some(i) => i
                            .parse::<i64>()
                            .ok()
                            .filter(|i| (1..=100).contains(i))
                            .ok_or_else(|| bad_param(&key("duration][interval_count")))?,
                    };
                    let interval = match form.get(&key("duration][interval")).map(String::as_str) {
                        None => price["recurring"]["interval"].as_str().unwrap_or("month"),
                        Some(i @ ("month" | "year")) => i,
                        Some(_) => return Err(bad_param(&key("duration][interval"))),
                    };
                    start + count * objects::interval_secs(interval)
                }
            };
            phases.push(phase(price_id, quantity, &price["currency"], (start, end)));
            start = end;
        }
        if phases.is_empty() {
            return Err(bad_param("phases"));
        }
        // The current phase keeps the subscription's price and period.
        let sub_id = schedule["subscription"].as_str().unwrap_or("").to_owned();
        let item = &state.subscriptions[&sub_id].object["items"]["data"][0];
        if phases[0]["items"][0]["price"] != item["price"]["id"]
            || phases[0]["end_date"] != item["current_period_end"]
        {
            return Err(refused(
                "The simulator keeps the current phase as the subscription is: its price, and its end at the period end."
                    .into(),
            ));
        }
        let mut next = schedule.clone();
        next["phases"] = json!(phases);
        let metadata = super::wire::metadata(form, "metadata");
        if metadata.as_object().is_some_and(|m| !m.is_empty()) {
            next["metadata"] = metadata;
        }
        state.schedules.insert(id.to_owned(), next.clone());
        self.emit(
            state,
            "subscription_schedule.updated",
            next.clone(),
            Some(json!({"phases": schedule["phases"].clone()})),
            now,
        );
        Ok(next)
    }

    /// `POST /v1/subscription_schedules/{id}/release`: the subscription goes on without it.
    pub(super) fn release_schedule(
        &self,
        state: &mut SimState,
        id: &str,
        now: i64,
    ) -> Result<Value, (StatusCode, Value)> {
        let schedule = state
            .schedules
            .get(id)
            .ok_or_else(|| missing("subscription_schedule", id))?;
        let status = schedule["status"].as_str().unwrap_or("");
        if status != "active" && status != "not_started" {
            return Err(refused(format!(
                "You cannot release a subscription schedule that is currently in the `{status}` status. It must be in one of the following statuses: `active`, `not_started`."
            )));
        }
        Ok(self.release(state, id, now))
    }

    fn release(&self, state: &mut SimState, id: &str, at: i64) -> Value {
        let schedule = state.schedules.get_mut(id).expect("present");
        let sub_id = schedule["subscription"].as_str().unwrap_or("").to_owned();
        schedule["status"] = json!("released");
        schedule["released_at"] = json!(at);
        schedule["released_subscription"] = json!(sub_id);
        schedule["subscription"] = Value::Null;
        schedule["current_phase"] = Value::Null;
        let released = schedule.clone();
        self.emit(
            state,
            "subscription_schedule.released",
            released.clone(),
            None,
            at,
        );
        self.attach(state, &sub_id, Value::Null, at);
        released
    }

    /// Sets subscription `sub_id`'s `schedule` and sends its update.
    fn attach(&self, state: &mut SimState, sub_id: &str, schedule: Value, at: i64) {
        let Some(sub) = state.subscriptions.get_mut(sub_id) else {
            return;
        };
        let previous = json!({"schedule": sub.object["schedule"].clone()});
        sub.object["schedule"] = schedule;
        let next = sub.object.clone();
        self.emit(
            state,
            "customer.subscription.updated",
            next,
            Some(previous),
            at,
        );
    }

    /// Subscription `sub_id` ended at `at`: its schedule, if any, is canceled with it.
    pub(super) fn end_schedule_of(&self, state: &mut SimState, sub_id: &str, at: i64) {
        let Some(sub) = state.subscriptions.get_mut(sub_id) else {
            return;
        };
        let Some(id) = sub.object["schedule"].as_str().map(str::to_owned) else {
            return;
        };
        sub.object["schedule"] = Value::Null;
        if let Some(schedule) = state.schedules.get_mut(&id) {
            schedule["status"] = json!("canceled");
            schedule["canceled_at"] = json!(at);
            schedule["current_phase"] = Value::Null;
            let canceled = schedule.clone();
            self.emit(state, "subscription_schedule.canceled", canceled, None, at);
        }
    }

    /// At subscription `sub_id`'s period boundary `at`: a schedule whose last phase ends there is
    /// released, and a phase starting there gives the item its price (before the renewal).
    pub(super) fn enter_phase(&self, state: &mut SimState, sub_id: &str, at: i64) {
        let Some(id) = state.subscriptions[sub_id].object["schedule"]
            .as_str()
            .map(str::to_owned)
        else {
            return;
        };
        let Some(schedule) = state.schedules.get(&id).cloned() else {
            return;
        };
        let phases = schedule["phases"].as_array().cloned().unwrap_or_default();
        if phases.last().and_then(|p| p["end_date"].as_i64()) == Some(at) {
            self.release(state, &id, at);
            return;
        }
        let Some(starting) = phases.iter().find(|p| p["start_date"] == json!(at)) else {
            return;
        };
        let price_id = starting["items"][0]["price"].as_str().unwrap_or("");
        let quantity = starting["items"][0]["quantity"].as_i64().unwrap_or(1);
        let Some(price) = state.prices.get(price_id).cloned() else {
            return;
        };
        let sub = state.subscriptions.get_mut(sub_id).expect("present");
        let item = &mut sub.object["items"]["data"][0];
        let period = (
            item["current_period_start"].as_i64().unwrap_or(at),
            item["current_period_end"].as_i64().unwrap_or(at),
        );
        objects::reprice_item(item, sub_id, &price, period, at);
        item["quantity"] = json!(quantity);
        let schedule = state.schedules.get_mut(&id).expect("present");
        schedule["current_phase"] =
            json!({"start_date": starting["start_date"], "end_date": starting["end_date"]});
        let updated = schedule.clone();
        self.emit(state, "subscription_schedule.updated", updated, None, at);
    }

    /// The prices a schedule gives subscription `sub`'s items from `at` (empty without one).
    pub(super) fn scheduled_prices(&self, state: &SimState, sub: &Value, at: i64) -> Vec<Value> {
        sub["schedule"]
            .as_str()
            .and_then(|id| state.schedules.get(id))
            .and_then(|s| {
                s["phases"]
                    .as_array()?
                    .iter()
                    .find(|p| p["start_date"] == json!(at))
                    .cloned()
            })
            .and_then(|p| state.prices.get(p["items"][0]["price"].as_str()?).cloned())
            .into_iter()
            .collect()
    }
}

/// One phase of one item.
fn phase(price: &str, quantity: i64, currency: &Value, (start, end): (i64, i64)) -> Value {
    let mut p = objects::template("subscription_schedule")["phases"][0].clone();
    p["items"] = json!([{
        "discounts": [], "metadata": {}, "price": price, "quantity": quantity,
        "tax_rates": [], "plan": price, "billing_thresholds": null
    }]);
    p["currency"] = currency.clone();
    p["start_date"] = json!(start);
    p["end_date"] = json!(end);
    p["proration_behavior"] = json!("none");
    p
}
