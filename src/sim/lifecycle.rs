//! What happens to subscriptions over time: Checkout Sessions completed or expired, trials
//! ending, renewals paid or failed, retries while past due, cancellations at period end.

use serde_json::{Value, json};

use super::{
    Simulator, new_id, objects,
    state::{SimState, SubState},
};

impl Simulator {
    /// Expires every open Checkout Session whose `expires_at` has passed by Stripe's clock, as
    /// Stripe does (`checkout.session.expired` is sent); run before anything looks at sessions.
    pub(super) fn expire_due_sessions(&self, state: &mut SimState, now: i64) {
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
            // Stripe expires a session at its `expires_at`, whenever the clock passed it.
            let at = object["expires_at"].as_i64().unwrap_or(now);
            self.emit(state, "checkout.session.expired", object, None, at);
        }
    }

    /// Completes a Checkout Session as if the customer paid (or started a trial).
    pub(super) fn complete_checkout(
        &self,
        state: &mut SimState,
        id: &str,
        now: i64,
    ) -> Result<Value, String> {
        self.expire_due_sessions(state, now);
        let (customer, items) = payable_checkout(state, id)?;
        let trial = state.checkout_sessions[id]
            .trial_days
            .map(|d| (now, now + d * 86_400));
        let (subscription, invoice) = first_subscription(state, id, &customer, &items, trial, now);
        let mut subscription = subscription;
        subscription["default_payment_method"] = json!(self.new_card(state, &customer, now));
        let completed = mark_complete(state, id, &subscription, &invoice, trial.is_some());
        let invoice = self.keep_invoice(state, invoice);
        state.subscriptions.insert(
            subscription["id"].as_str().unwrap_or_default().to_owned(),
            SubState {
                object: subscription.clone(),
                failed_attempts: 0,
                trial_will_end_sent: false,
                pending_lines: Vec::new(),
            },
        );
        self.emit(
            state,
            "checkout.session.completed",
            completed.clone(),
            None,
            now,
        );
        self.emit_start(state, subscription, trial.is_some(), now);
        self.emit(state, "invoice.paid", invoice, None, now);
        Ok(completed)
    }

    /// The events of a subscription's start, between the completed session and the paid invoice.
    fn emit_start(&self, state: &mut SimState, subscription: Value, trial: bool, now: i64) {
        if trial {
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
    }

    /// Runs everything due on subscription `id` by `now`, oldest first.
    pub(super) fn run_subscription(&self, state: &mut SimState, id: &str, now: i64) {
        // Bounded: a long jump still ends, one billing period per loop.
        for _ in 0..400 {
            if !self.run_next_due(state, id, now) {
                return;
            }
        }
    }

    /// Runs the next thing due on subscription `id` by `now`: the trial-end notice, cancellation
    /// at period end, or a charge at the period boundary. False once nothing more can be due.
    fn run_next_due(&self, state: &mut SimState, id: &str, now: i64) -> bool {
        let Some(sub) = state.subscriptions.get(id) else {
            return false;
        };
        let object = &sub.object;
        let status = object["status"].as_str().unwrap_or("").to_owned();
        if objects::ended(Some(&status)) {
            return false;
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
            return true;
        }
        if period_end > now {
            return false;
        }
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
            self.end_schedule_of(state, id, period_end);
            return false;
        }
        self.charge_period(state, id, status, period_end)
    }

    /// A charge at the period boundary `period_end`: trial end, renewal, or a retry while past
    /// due. Paid, the subscription is active for another period; failed, it is past due, and
    /// canceled after three failures in a row (then false: nothing more is due).
    fn charge_period(
        &self,
        state: &mut SimState,
        id: &str,
        previous_status: String,
        period_end: i64,
    ) -> bool {
        self.enter_phase(state, id, period_end);
        let mut next = state.subscriptions[id].object.clone();
        let (invoice, next_period, fails) = renewal_invoice(state, id, &next, period_end);
        let (invoice, fails) = self.settle_renewal(state, id, invoice, fails);
        next["latest_invoice"] = invoice["id"].clone();
        for item in next["items"]["data"].as_array_mut().into_iter().flatten() {
            item["current_period_start"] = json!(next_period.0);
            item["current_period_end"] = json!(next_period.1);
        }
        let sub = state.subscriptions.get_mut(id).expect("present");
        if fails {
            sub.failed_attempts += 1;
            if sub.failed_attempts >= 3 {
                next["status"] = json!("canceled");
                next["canceled_at"] = json!(period_end);
                next["ended_at"] = json!(period_end);
                sub.object = next.clone();
                self.emit(state, "invoice.payment_failed", invoice, None, period_end);
                // Stripe stamps the subscription's change a moment after the invoice's failure.
                self.emit(
                    state,
                    "customer.subscription.deleted",
                    next,
                    None,
                    period_end + 1,
                );
                self.end_schedule_of(state, id, period_end);
                return false;
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
        // After a failure, Stripe stamps the `past_due` update a moment after the invoice's event
        // (and may deliver it first).
        let stamp = if fails { period_end + 1 } else { period_end };
        self.emit(
            state,
            "customer.subscription.updated",
            next,
            Some(previous),
            stamp,
        );
        true
    }
}

impl Simulator {
    /// A card (Stripe's test Visa) for `customer`, made its default for invoices; its id.
    fn new_card(&self, state: &mut SimState, customer: &str, now: i64) -> String {
        let id = new_id("pm");
        let mut card = objects::template("payment_method");
        card["id"] = json!(id);
        card["customer"] = json!(customer);
        card["created"] = json!(now);
        card["billing_details"]["email"] = state.customers[customer]["email"].clone();
        card["card"]["exp_year"] = json!(2035);
        state.payment_methods.insert(id.clone(), card);
        if let Some(c) = state.customers.get_mut(customer) {
            c["invoice_settings"]["default_payment_method"] = json!(id);
        }
        id
    }

    /// A renewal `invoice` with the subscription's waiting proration lines added and the
    /// customer's credit applied, stored; and whether its charge fails (nothing left to charge
    /// never fails).
    fn settle_renewal(
        &self,
        state: &mut SimState,
        id: &str,
        invoice: Value,
        fails: bool,
    ) -> (Value, bool) {
        let sub = state.subscriptions.get_mut(id).expect("present");
        let pending = std::mem::take(&mut sub.pending_lines);
        let object = sub.object.clone();
        let customer = object["customer"].as_str().unwrap_or("").to_owned();
        let balance = state.customers[&customer]["balance"].as_i64().unwrap_or(0);
        let regular = super::proration::line(
            "Subscription renewal",
            invoice["total"].as_i64().unwrap_or(0),
            &object["items"]["data"][0]["price"],
            1,
            (
                invoice["period_start"].as_i64().unwrap_or(0),
                invoice["period_end"].as_i64().unwrap_or(0),
            ),
            false,
            (id, object["items"]["data"][0]["id"].as_str().unwrap_or("")),
        );
        let mut lines = pending;
        lines.push(regular);
        let period = (
            invoice["period_start"].as_i64().unwrap_or(0),
            invoice["period_end"].as_i64().unwrap_or(0),
        );
        let created = invoice["created"].as_i64().unwrap_or(0);
        let (mut settled, after) = super::proration::invoice_of_lines(
            &object,
            lines,
            balance,
            period,
            "subscription_cycle",
            created,
        );
        let fails = fails && settled["amount_due"].as_i64().unwrap_or(0) > 0;
        if fails {
            super::proration::mark_unpaid(&mut settled);
        } else if let Some(c) = state.customers.get_mut(&customer) {
            c["balance"] = json!(after);
        }
        (self.keep_invoice(state, settled), fails)
    }
}

/// The customer and line items of Checkout Session `id`, when it can be paid: it is open, its
/// customer exists and was not deleted, and its prices exist.
fn payable_checkout(state: &SimState, id: &str) -> Result<(String, Vec<(Value, i64)>), String> {
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
    Ok((customer, items))
}

/// The subscription Checkout Session `id` starts (trialing, or active from now for one
/// interval) and its first invoice (zero during a trial).
fn first_subscription(
    state: &SimState,
    id: &str,
    customer: &str,
    items: &[(Value, i64)],
    trial: Option<(i64, i64)>,
    now: i64,
) -> (Value, Value) {
    let session = &state.checkout_sessions[id];
    let price = &items[0].0;
    let interval = price["recurring"]["interval"]
        .as_str()
        .unwrap_or("month")
        .to_owned();
    let amount = objects::amount_of(items);
    let currency = price["currency"].as_str().unwrap_or("usd").to_owned();
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
        customer,
        items,
        status,
        period,
        trial,
        session.subscription_metadata.clone(),
        now,
    );
    let invoice = objects::invoice(
        customer,
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
    subscription["test_clock"] = state.customers[customer]["test_clock"].clone();
    (subscription, invoice)
}

/// Marks Checkout Session `id` complete with its subscription and first invoice, and returns it.
fn mark_complete(
    state: &mut SimState,
    id: &str,
    subscription: &Value,
    invoice: &Value,
    trial: bool,
) -> Value {
    let session = state.checkout_sessions.get_mut(id).expect("checked above");
    session.object["status"] = json!("complete");
    session.object["payment_status"] = json!(if trial { "no_payment_required" } else { "paid" });
    session.object["subscription"] = subscription["id"].clone();
    session.object["invoice"] = invoice["id"].clone();
    session.object.clone()
}

/// The invoice for subscription `id`'s period after `period_end`, as of `period_end`, for the
/// amount of its items; unpaid when its customer's card fails. Also the period, and whether the
/// charge failed.
fn renewal_invoice(
    state: &SimState,
    id: &str,
    object: &Value,
    period_end: i64,
) -> (Value, (i64, i64), bool) {
    let customer = object["customer"].as_str().unwrap_or("").to_owned();
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
    (invoice, next_period, fails)
}
