//! In-app plan changes against the simulator: the preview is Stripe's, the charge is the preview's,
//! a downgrade waits for the period end on a schedule, a declined card changes nothing, a double
//! submit is one change, and cancel / resume work without the portal.

use reqwest::Client;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_of, spawn_app};

/// A user on Pro, past its 14-day trial and paid for a month.
async fn paying_pro(app: &TestApp, email: &str) -> Client {
    let c = app.subscriber(email, "pro").await;
    app.advance(15 * 86_400).await;
    app.wait_for(
        &c,
        |m| m["access"]["status"] == "active",
        "the first paid month",
    )
    .await;
    app.wait_for_webhooks().await;
    c
}

pub(super) async fn post(app: &TestApp, c: &Client, path: &str, body: Value) -> (u16, Value) {
    let r = app.post_json_with(c, path, &body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Previews moving `c`'s subscription to `plan` every `interval`.
pub(super) async fn preview_change(
    app: &TestApp,
    c: &Client,
    plan: &str,
    interval: &str,
) -> (u16, Value) {
    let body = json!({"plan": plan, "interval": interval});
    post(app, c, "/api/billing/change/preview", body).await
}

/// Moves `c`'s subscription to `plan` every `interval`, prorated from now.
async fn change(app: &TestApp, c: &Client, plan: &str, interval: &str) -> (u16, Value) {
    let body = json!({"plan": plan, "interval": interval});
    post(app, c, "/api/billing/change", body).await
}

pub(super) async fn subscription(app: &TestApp, c: &Client) -> Value {
    let r = app.get_with(c, "/api/billing/subscription").await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["subscription"].clone()
}

/// The share of a period's price left at `at`, for the subscription `before` (its current
/// period), as Stripe prorates: `amount × time left / period length`, rounded down.
pub(super) fn share_left(before: &Value, at: i64) -> impl Fn(i64) -> i64 {
    let start = before["current_period_start"].as_i64().unwrap();
    let end = before["current_period_end"].as_i64().unwrap();
    move |amount| amount * (end - at) / (end - start)
}

/// A preview of two lines: the credit for the old price, then the charge for the new one.
pub(super) fn assert_lines(preview: &Value, credit: i64, charge: i64) {
    let lines = preview["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{preview}");
    assert_eq!(lines[0]["amount"], credit, "{preview}");
    assert_eq!(lines[1]["amount"], charge, "{preview}");
}

/// The customer's invoices in Stripe, newest first.
pub(super) async fn invoices(app: &TestApp, email: &str) -> Vec<Value> {
    let customer = app.customer_of(email).await.unwrap();
    app.stripe_get(&format!("/v1/invoices?customer={customer}&limit=100"))
        .await["data"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn an_upgrade_charges_at_once_exactly_what_the_preview_showed() {
    let app = spawn_app().await;
    let c = paying_pro(&app, "ann@example.com").await;
    app.advance(10 * 86_400).await;
    let before = subscription(&app, &c).await;
    assert_eq!(before["plan"], "pro");
    assert_eq!(before["card"]["brand"], "visa");
    assert_eq!(before["card"]["last4"], "4242");
    assert_eq!(before["next_charge"]["amount"], 1900);

    let (status, preview) = preview_change(&app, &c, "team", "month").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["effective"], "now");
    assert_eq!(preview["recurring_amount"], 4900);
    // 20 of the period's 30 days are left: 20/30 of the difference (4900 − 1900).
    let at = preview["proration_date"].as_i64().unwrap();
    let share = share_left(&before, at);
    assert_lines(&preview, -share(1900), share(4900));
    let due = preview["amount_due"].as_i64().unwrap();
    assert_eq!(due, share(4900) - share(1900));
    assert!(due > 1000, "most of a month's difference: {due}");

    // Two confirmations at once (a double click): one change, one charge. Stripe's webhooks are
    // held, so what the gate shows comes from the change's own answer.
    app.hold_webhooks(true).await;
    let body = json!({"plan": "team", "interval": "month", "proration_date": at});
    let (a, b) = tokio::join!(
        post(&app, &c, "/api/billing/change", body.clone()),
        post(&app, &c, "/api/billing/change", body.clone()),
    );
    let statuses = [a.0, b.0];
    assert!(statuses.contains(&200), "{a:?} {b:?}");
    for (status, answer) in [&a, &b] {
        assert!(
            *status == 200 || answer["error"] == "same_plan",
            "{status} {answer}"
        );
    }
    let done = if a.0 == 200 { &a.1 } else { &b.1 };
    assert_eq!(done["effective"], "now");
    assert_eq!(done["plan"], "team");

    // The gate follows at once, without waiting for the webhook.
    let me = app.me(&c).await;
    assert_eq!(me["access"]["plan"], "team");
    app.hold_webhooks(false).await;
    let charged: Vec<Value> = invoices(&app, "ann@example.com")
        .await
        .into_iter()
        .filter(|i| i["billing_reason"] == "subscription_update")
        .collect();
    assert_eq!(charged.len(), 1, "one prorated charge: {charged:?}");
    assert_eq!(charged[0]["amount_paid"], due);
    assert_eq!(charged[0]["status"], "paid");

    // The same confirmation again changes nothing.
    let (status, again) = post(&app, &c, "/api/billing/change", body).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("same_plan")));

    // Renewal on the new price.
    app.advance(21 * 86_400).await;
    app.wait_for_webhooks().await;
    let renewal = &invoices(&app, "ann@example.com").await[0];
    assert_eq!(renewal["billing_reason"], "subscription_cycle");
    assert_eq!(renewal["amount_paid"], 4900);
}

#[tokio::test]
async fn a_downgrade_waits_for_the_period_end_and_can_be_taken_back() {
    let app = spawn_app().await;
    let c = app.subscriber("bob@example.com", "team").await;
    let period_end = subscription(&app, &c).await["current_period_end"]
        .as_i64()
        .unwrap();

    let (status, preview) = preview_change(&app, &c, "pro", "month").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["effective"], "period_end");
    assert_eq!(preview["effective_at"], period_end);
    assert_eq!(preview["amount_due"], 0);
    assert_eq!(preview["recurring_amount"], 1900);

    let (status, done) = change(&app, &c, "pro", "month").await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["effective"], "period_end");
    // The plan paid for stays until the end; the next charge is the cheaper price.
    assert_eq!(app.me(&c).await["access"]["plan"], "team");
    let sub = subscription(&app, &c).await;
    assert_eq!(sub["scheduled_change"]["plan"], "pro");
    assert_eq!(sub["scheduled_change"]["at"], period_end);
    assert_eq!(sub["next_charge"]["amount"], 1900);

    // Taken back: the current plan again drops the scheduled change.
    let (status, kept) = change(&app, &c, "team", "month").await;
    assert_eq!(status, 200);
    assert_eq!(kept["scheduled_change_dropped"], true);
    let sub = subscription(&app, &c).await;
    assert!(sub["scheduled_change"].is_null(), "{sub}");
    assert_eq!(sub["next_charge"]["amount"], 4900);

    // Scheduled again, then the period ends: Pro from the renewal on, charged at Pro's price.
    let (status, _) = change(&app, &c, "pro", "month").await;
    assert_eq!(status, 200);
    app.advance(period_end - app.state.clock.now() + 60).await;
    let me = app.wait_for_plan(&c, Some("pro")).await;
    assert_eq!(me["access"]["status"], "active");
    app.wait_for_webhooks().await;
    let renewal = &invoices(&app, "bob@example.com").await[0];
    assert_eq!(renewal["billing_reason"], "subscription_cycle");
    assert_eq!(renewal["amount_paid"], 1900);
    assert!(
        invoices(&app, "bob@example.com")
            .await
            .iter()
            .all(|i| i["billing_reason"] != "subscription_update"),
        "a downgrade charges nothing now"
    );
    let sub = subscription(&app, &c).await;
    assert!(sub["scheduled_change"].is_null(), "{sub}");
}

#[tokio::test]
async fn a_declined_card_changes_nothing() {
    let app = spawn_app().await;
    let c = paying_pro(&app, "cat@example.com").await;
    let customer = app.customer_of("cat@example.com").await.unwrap();
    app.sim_control(
        &format!("/_sim/customers/{customer}/card"),
        &json!({"failing": true}),
    )
    .await;
    let (status, answer) = change(&app, &c, "team", "month").await;
    assert_eq!(status, 402, "{answer}");
    assert_eq!(answer["error"], "card_declined");
    assert_eq!(app.me(&c).await["access"]["plan"], "pro");
    let sub = subscription(&app, &c).await;
    assert_eq!(sub["plan"], "pro");
    assert_eq!(sub["status"], "active");
    assert!(
        invoices(&app, "cat@example.com")
            .await
            .iter()
            .all(|i| i["billing_reason"] != "subscription_update"),
        "no charge was left behind"
    );
}

#[tokio::test]
async fn monthly_to_yearly_restarts_the_cycle_and_a_trial_is_the_trial_of_its_plan() {
    let app = spawn_app().await;
    // During Pro's trial, Pro yearly keeps the trial and charges nothing.
    let c = app.subscriber("dan@example.com", "pro").await;
    let (status, preview) = preview_change(&app, &c, "pro", "year").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(
        (
            preview["effective"].as_str(),
            preview["amount_due"].as_i64()
        ),
        (Some("now"), Some(0))
    );
    let (status, _) = change(&app, &c, "pro", "year").await;
    assert_eq!(status, 200);
    let sub = subscription(&app, &c).await;
    assert_eq!(
        (sub["status"].as_str(), sub["interval"].as_str()),
        (Some("trialing"), Some("year"))
    );
    // Team has no trial: moving there ends the trial and charges Team's first month now.
    let (status, preview) = preview_change(&app, &c, "team", "month").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["ends_trial"], true);
    assert_eq!(preview["amount_due"], 4900);
    let at = preview["proration_date"].as_i64().unwrap();
    let body = json!({"plan": "team", "interval": "month", "proration_date": at});
    let (status, answer) = post(&app, &c, "/api/billing/change", body).await;
    assert_eq!(status, 200, "{answer}");
    let me = app.me(&c).await;
    assert_eq!(
        (
            me["access"]["plan"].as_str(),
            me["access"]["status"].as_str()
        ),
        (Some("team"), Some("active"))
    );
    assert!(
        invoices(&app, "dan@example.com")
            .await
            .iter()
            .any(|i| i["billing_reason"] == "subscription_update" && i["amount_paid"] == 4900),
        "Team's first month charged"
    );

    // Paid monthly, then yearly: the year is charged now, less the month's unused time.
    let c = paying_pro(&app, "eve@example.com").await;
    let (status, preview) = preview_change(&app, &c, "pro", "year").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["effective"], "now");
    let due = preview["amount_due"].as_i64().unwrap();
    assert!(due > 19000 - 1900 && due <= 19000, "{preview}");
    let at = preview["proration_date"].as_i64().unwrap();
    let (status, _) = post(
        &app,
        &c,
        "/api/billing/change",
        json!({"plan": "pro", "interval": "year", "proration_date": at}),
    )
    .await;
    assert_eq!(status, 200);
    let sub = subscription(&app, &c).await;
    assert_eq!(sub["interval"], "year");
    assert_eq!(sub["current_period_start"], at);
    assert_eq!(sub["current_period_end"], at + 365 * 86_400);
    let paid = &invoices(&app, "eve@example.com").await[0];
    assert_eq!(paid["amount_paid"], due);

    // Back to monthly is a downgrade: at the end of the year.
    let (status, preview) = preview_change(&app, &c, "pro", "month").await;
    assert_eq!(status, 200);
    assert_eq!(preview["effective"], "period_end");
    assert_eq!(preview["effective_at"], at + 365 * 86_400);
}

#[tokio::test]
async fn cancel_and_resume_in_app() {
    let app = spawn_app().await;
    let c = app.subscriber("fay@example.com", "team").await;
    // A downgrade is scheduled, then the user cancels instead: the schedule goes with it.
    let (status, _) = change(&app, &c, "pro", "month").await;
    assert_eq!(status, 200);
    let (status, answer) = post(&app, &c, "/api/billing/cancel", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let sub = &answer["subscription"];
    assert_eq!(sub["cancel_at_period_end"], true);
    assert!(sub["next_charge"].is_null(), "{sub}");
    assert!(sub["scheduled_change"].is_null(), "{sub}");
    // Events of the same second as the re-read tie with it and are settled by a re-fetch: the
    // gate shows the cancellation within moments.
    let me = app
        .wait_for(
            &c,
            |m| {
                m["access"]["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("cancels")
            },
            "the cancellation",
        )
        .await;
    assert_eq!(me["access"]["plan"], "team");

    // A change waits for the resumption.
    let (status, answer) = preview_change(&app, &c, "pro", "year").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("subscription_cancelling"))
    );
    // Cancelling twice is one cancellation.
    let (status, _) = post(&app, &c, "/api/billing/cancel", json!({})).await;
    assert_eq!(status, 200);

    let (status, answer) = post(&app, &c, "/api/billing/resume", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["subscription"]["cancel_at_period_end"], false);
    assert_eq!(answer["subscription"]["next_charge"]["amount"], 4900);
    app.wait_for(
        &c,
        |m| {
            !m["access"]["reason"]
                .as_str()
                .unwrap_or("cancels")
                .contains("cancels")
        },
        "the resumption",
    )
    .await;
}

#[tokio::test]
async fn bad_plan_changes_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let nobody = app.user("gus@example.com").await;
    for path in ["/api/billing/change/preview", "/api/billing/change"] {
        let (status, answer) = post(
            &app,
            &nobody,
            path,
            json!({"plan": "team", "interval": "month"}),
        )
        .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (409, Some("no_subscription")),
            "{path}"
        );
    }
    for path in ["/api/billing/cancel", "/api/billing/resume"] {
        let (status, answer) = post(&app, &nobody, path, json!({})).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (409, Some("no_subscription")),
            "{path}"
        );
    }
    assert!(subscription(&app, &nobody).await.is_null());

    let c = app.subscriber("hal@example.com", "team").await;
    let cases = [
        (
            json!({"plan": "team", "interval": "month"}),
            409,
            "same_plan",
        ),
        (
            json!({"plan": "free", "interval": "month"}),
            400,
            "unknown_plan",
        ),
        (
            json!({"plan": "gold", "interval": "month"}),
            400,
            "unknown_plan",
        ),
        (
            json!({"plan": "pro", "interval": "week"}),
            400,
            "unknown_plan",
        ),
        (json!({"plan": "pro"}), 400, "invalid_field"),
        (
            json!({"plan": ["pro"], "interval": "month"}),
            400,
            "invalid_field",
        ),
        (json!({"plan": "pro", "interval": 7}), 400, "invalid_field"),
        (json!(["pro", "month"]), 400, "invalid_json"),
    ];
    for (body, status, code) in &cases {
        for path in ["/api/billing/change/preview", "/api/billing/change"] {
            let (s, answer) = post(&app, &c, path, body.clone()).await;
            assert_eq!(
                (s, answer["error"].as_str()),
                (*status, Some(*code)),
                "{path} {body}"
            );
        }
    }
    // A preview's date is honoured for 10 minutes, never from the future.
    let now = app.state.clock.now();
    for date in [now - 601, now + 120, i64::MIN, i64::MAX] {
        let body = json!({"plan": "pro", "interval": "year", "proration_date": date});
        let (s, answer) = post(&app, &c, "/api/billing/change", body).await;
        assert_eq!(
            (s, answer["error"].as_str()),
            (400, Some("preview_expired")),
            "{date}"
        );
    }
    let sub = subscription(&app, &c).await;
    assert_eq!(
        (sub["plan"].as_str(), sub["interval"].as_str()),
        (Some("team"), Some("month"))
    );
    assert!(sub["scheduled_change"].is_null());

    // An API key without the billing scope cannot change plans.
    let r = app
        .post_json_with(&c, "/api/keys", &json!({"name": "ro", "scopes": ["read"]}))
        .await;
    assert_eq!(r.status(), 201, "a fresh session makes keys");
    let key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = crate::helpers::client()
        .post(app.url("/api/billing/change"))
        .bearer_auth(&key)
        .json(&json!({"plan": "pro", "interval": "month"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_of(r).await, "scope_required");
}
