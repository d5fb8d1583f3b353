//! The simulator's developer page (`/_sim/`): a way back to the app, the test clock, and, as
//! buttons, the switches the tests use: failing cards per customer, an outage, webhook chaos
//! (duplicates, reordering, delays, holding), and the recent events.

use axum::{
    Form,
    extract::State,
    response::{Html, Redirect},
};
use serde::Deserialize;

use super::{
    Simulator,
    delivery::Chaos,
    pages::{escape, page},
};

/// The page.
pub(super) async fn show(State(sim): State<Simulator>) -> Html<String> {
    let now = sim.clock().now();
    let date = time::OffsetDateTime::from_unix_timestamp(now)
        .map(|t| t.date().to_string())
        .unwrap_or_default();
    let chaos = sim.inner.delivery.chaos();
    // The app is where the webhooks go, less their path.
    let back = sim
        .inner
        .delivery
        .target_url()
        .map(|u| u.trim_end_matches("webhooks/stripe").to_owned())
        .map(|u| {
            format!(
                "<p><a href=\"{}billing\">← Back to the app</a></p>",
                escape(&u)
            )
        })
        .unwrap_or_default();
    let (events, customers, outage) = {
        let state = sim.lock();
        let events: String = state
            .events
            .iter()
            .rev()
            .take(20)
            .map(|e| {
                format!(
                    "<li><code>{}</code> {}</li>",
                    escape(e["type"].as_str().unwrap_or("")),
                    escape(e["id"].as_str().unwrap_or(""))
                )
            })
            .collect();
        let customers: String = state
            .customers
            .iter()
            .filter(|(_, c)| c["deleted"] != true)
            .map(|(id, c)| {
                let failing = state.failing_customers.contains(id);
                format!(
                    "<li>{} <code>{}</code>: card {} {}</li>",
                    escape(c["email"].as_str().unwrap_or("")),
                    escape(id),
                    if failing {
                        "<strong>declines</strong>"
                    } else {
                        "works"
                    },
                    action(
                        "card",
                        if failing {
                            "Fix the card"
                        } else {
                            "Make the card decline"
                        },
                        &[
                            ("customer", id),
                            ("on", if failing { "false" } else { "true" })
                        ],
                    )
                )
            })
            .collect();
        (events, customers, state.outage)
    };
    let switch = |name: &str, on: bool, label: &str| {
        action(
            name,
            &format!(
                "{label}: {}",
                if on { "on (turn off)" } else { "off (turn on)" }
            ),
            &[("on", if on { "false" } else { "true" })],
        )
    };
    let body = format!(
        "{back}<h1>Stripe simulator</h1>\
         <h2>Clock</h2><p>Simulated date: <strong>{date}</strong> (tollgate shares this clock).</p>\
         <div>{}{}{}</div>\
         <p>Advancing runs what falls due: trial ends, renewals, failed payments, cancellations.</p>\
         <h2>Cards</h2><ul>{customers}</ul>\
         <p>A declining card fails every charge (renewals, plan changes) until it is fixed.</p>\
         <h2>Outage and webhooks</h2><div>{}{}{}{}</div><div>{}</div>\
         <p>An outage answers every API call 503, as Stripe down would. Held webhooks wait until \
         released; reordered ones go out in a random order, duplicated ones twice.</p>\
         <h2>Recent events</h2><ol>{events}</ol>",
        action("advance", "Advance 1 day", &[("days", "1")]),
        action("advance", "Advance 15 days", &[("days", "15")]),
        action("advance", "Advance 31 days", &[("days", "31")]),
        switch("outage", outage, "Outage"),
        switch("hold", chaos.hold, "Hold webhooks"),
        switch("reorder", chaos.reorder, "Reorder webhooks"),
        switch("duplicate", chaos.duplicate, "Duplicate webhooks"),
        switch("delay", chaos.max_delay_ms > 0, "Delay webhooks up to 2 s"),
    );
    page("Simulator", &body)
}

/// A one-button form posting `action` with hidden `fields`.
fn action(action: &str, label: &str, fields: &[(&str, &str)]) -> String {
    let hidden: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    format!(
        "<form method=\"post\" style=\"display:inline\"><input type=\"hidden\" name=\"action\" value=\"{}\">{hidden}\
         <button type=\"submit\">{}</button></form>",
        escape(action),
        escape(label)
    )
}

/// What a button posts.
#[derive(Deserialize)]
pub(super) struct DevForm {
    /// `advance`, `card`, `outage`, `hold`, `reorder`, `duplicate` or `delay` (a form without one
    /// advances, as the page's first version did).
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    days: Option<i64>,
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    on: Option<bool>,
}

/// Carries out a button.
pub(super) async fn submit(State(sim): State<Simulator>, Form(form): Form<DevForm>) -> Redirect {
    let on = form.on.unwrap_or(false);
    let mut chaos: Chaos = sim.inner.delivery.chaos();
    match form.action.as_deref().unwrap_or("advance") {
        "card" => {
            if let Some(customer) = form.customer {
                let mut state = sim.lock();
                if on {
                    state.failing_customers.insert(customer);
                } else {
                    state.failing_customers.remove(&customer);
                }
            }
        }
        "outage" => sim.lock().outage = on,
        "hold" => chaos.hold = on,
        "reorder" => chaos.reorder = on,
        "duplicate" => chaos.duplicate = on,
        "delay" => chaos.max_delay_ms = if on { 2_000 } else { 0 },
        _ => sim.advance_clock(form.days.unwrap_or(0).clamp(0, 3_650) * 86_400),
    }
    if form
        .action
        .as_deref()
        .is_some_and(|a| ["hold", "reorder", "duplicate", "delay"].contains(&a))
    {
        sim.inner.delivery.set_chaos(chaos);
    }
    Redirect::to("/_sim/")
}
