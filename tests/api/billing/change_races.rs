//! Plan changes attacked: changes and cancellations raced against each other, a schedule made in
//! Stripe's dashboard, a preview confirmed after a renewal, a retry after a card was fixed, Stripe's
//! clock behind tollgate's, and bodies that are not objects.

use reqwest::Client;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn post(app: &TestApp, c: &Client, path: &str, body: Value) -> (u16, Value) {
    let r = app.post_json_with(c, path, &body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn subscription(app: &TestApp, c: &Client) -> Value {
    let r = app.get_with(c, "/api/billing/subscription").await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["subscription"].clone()
}

/// A schedule made in Stripe's dashboard on `c`'s Pro subscription: its current phase as the
/// subscription is, plus `extra` (a next phase, metadata); its id.
async fn dashboard_schedule(app: &TestApp, c: &Client, extra: (&str, &str)) -> String {
    let sub = subscription(app, c).await;
    let id = sub["id"].as_str().unwrap();
    let schedule = app
        .stripe_post("/v1/subscription_schedules", &[("from_subscription", id)])
        .await;
    let sched = schedule["id"].as_str().unwrap().to_owned();
    let start = schedule["phases"][0]["start_date"].to_string();
    let end = sub["current_period_end"].to_string();
    app.stripe_post(
        &format!("/v1/subscription_schedules/{sched}"),
        &[
            ("phases[0][items][0][price]", &app.price_of("pro")),
            ("phases[0][start_date]", &start),
            ("phases[0][end_date]", &end),
            extra,
        ],
    )
    .await;
    sched
}

/// A user on Pro, past its trial and paid for a month.
async fn paying_pro(app: &TestApp, email: &str) -> Client {
    let c = app.subscriber(email, "pro").await;
    app.advance(15 * 86_400).await;
    app.wait_for(&c, |m| m["access"]["status"] == "active", "paid")
        .await;
    c
}

#[tokio::test]
async fn raced_changes_and_cancellations_leave_one_consistent_state_that_can_be_undone() {
    let app = spawn_app().await;
    // Stripe answers slowly, so the requests overlap.
    app.sim_control("/_sim/latency", &json!({"ms": 150})).await;
    let c = app.subscriber("ann@example.com", "team").await;
    let downgrade = json!({"plan": "pro", "interval": "month"});
    let (a, b) = tokio::join!(
        post(&app, &c, "/api/billing/change", downgrade),
        post(&app, &c, "/api/billing/cancel", json!({})),
    );
    assert!(
        a.0 == 200 || a.1["error"] == "subscription_cancelling",
        "{a:?}"
    );
    assert_eq!(b.0, 200, "{b:?}");
    // Cancelled, and no downgrade left behind to fight the resumption.
    let sub = subscription(&app, &c).await;
    assert_eq!(sub["cancel_at_period_end"], true);
    assert!(sub["scheduled_change"].is_null(), "{sub}");
    let (status, answer) = post(&app, &c, "/api/billing/resume", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["subscription"]["cancel_at_period_end"], false);

    // An upgrade to yearly raced with a cancellation: whichever wins, the gate agrees with
    // Stripe for the whole year paid for.
    let c = paying_pro(&app, "bob@example.com").await;
    let upgrade = json!({"plan": "team", "interval": "year"});
    let (a, b) = tokio::join!(
        post(&app, &c, "/api/billing/change", upgrade),
        post(&app, &c, "/api/billing/cancel", json!({})),
    );
    assert_eq!(b.0, 200, "{b:?}");
    let sub = subscription(&app, &c).await;
    if a.0 == 200 {
        assert_eq!(sub["interval"], "year");
        app.advance(40 * 86_400).await;
        let me = app.me(&c).await;
        assert_eq!(
            me["access"]["plan"], "team",
            "a paid year is not cut short: {me}"
        );
    } else {
        assert_eq!(a.1["error"], "subscription_cancelling", "{a:?}");
    }

    // Two different upgrades at once: one after the other, each on the state the other left.
    let c = paying_pro(&app, "cat@example.com").await;
    let (a, b) = tokio::join!(
        post(
            &app,
            &c,
            "/api/billing/change",
            json!({"plan": "team", "interval": "month"})
        ),
        post(
            &app,
            &c,
            "/api/billing/change",
            json!({"plan": "pro", "interval": "year"})
        ),
    );
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    let sub = subscription(&app, &c).await;
    let last = app.me(&c).await["access"]["plan"].clone();
    assert_eq!(sub["plan"], last, "the gate follows Stripe");
}

#[tokio::test]
async fn a_schedule_made_in_stripes_dashboard_is_left_alone() {
    let app = spawn_app().await;
    let c = paying_pro(&app, "dan@example.com").await;
    // The merchant schedules a move to Team at the period end (a price rise, say).
    let team = app.price_of("team");
    let sched = dashboard_schedule(&app, &c, ("phases[1][items][0][price]", &team)).await;
    for (path, body) in [
        (
            "/api/billing/change",
            json!({"plan": "team", "interval": "month"}),
        ),
        (
            "/api/billing/change",
            json!({"plan": "pro", "interval": "month"}),
        ),
        ("/api/billing/cancel", json!({})),
    ] {
        let (status, answer) = post(&app, &c, path, body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (409, Some("subscription_managed")),
            "{path}"
        );
    }
    let kept = app
        .stripe_get(&format!("/v1/subscription_schedules/{sched}"))
        .await;
    assert_eq!(kept["status"], "active");
    assert_eq!(kept["phases"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn stale_previews_clock_skew_and_a_fixed_card() {
    let app = spawn_app().await;
    let c = paying_pro(&app, "eve@example.com").await;
    let customer = app.customer_of("eve@example.com").await.unwrap();

    // A preview from before the renewal is not the price of the new period.
    let end = subscription(&app, &c).await["current_period_end"]
        .as_i64()
        .unwrap();
    app.advance(end - app.state.clock.now() - 100).await;
    let r = post(
        &app,
        &c,
        "/api/billing/change/preview",
        json!({"plan": "team", "interval": "month"}),
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");
    let at = r.1["proration_date"].as_i64().unwrap();
    app.advance(200).await;
    app.wait_for_webhooks().await;
    let body = json!({"plan": "team", "interval": "month", "proration_date": at});
    let (status, answer) = post(&app, &c, "/api/billing/change", body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("preview_expired"))
    );

    // Stripe's clock 30 s behind tollgate's: the preview's moment is Stripe's, and it confirms.
    app.sim_control("/_sim/clock/skew", &json!({"seconds": -30}))
        .await;
    // A declined card first; fixed, the same preview goes through (no replayed refusal).
    app.sim_control(
        &format!("/_sim/customers/{customer}/card"),
        &json!({"failing": true}),
    )
    .await;
    let r = post(
        &app,
        &c,
        "/api/billing/change/preview",
        json!({"plan": "team", "interval": "month"}),
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");
    let at = r.1["proration_date"].as_i64().unwrap();
    assert!(at < app.state.clock.now() - 20, "Stripe's moment: {at}");
    let body = json!({"plan": "team", "interval": "month", "proration_date": at});
    let (status, answer) = post(&app, &c, "/api/billing/change", body.clone()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (402, Some("card_declined"))
    );
    app.sim_control(
        &format!("/_sim/customers/{customer}/card"),
        &json!({"failing": false}),
    )
    .await;
    let (status, answer) = post(&app, &c, "/api/billing/change", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(app.me(&c).await["access"]["plan"], "team");
}

#[tokio::test]
async fn cancel_and_resume_take_a_json_object_and_nothing_else() {
    let app = spawn_app().await;
    let c = app.subscriber("fay@example.com", "team").await;
    for body in [&b"garbage"[..], b"\xff\xfe", b"[]", b"null", b""] {
        let r = c
            .post(app.url("/api/billing/cancel"))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body:?}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["error"], "invalid_json", "{body:?}");
    }
    let sub = subscription(&app, &c).await;
    assert_eq!(sub["cancel_at_period_end"], false, "nothing was cancelled");
}

#[tokio::test]
async fn arrangements_made_in_stripe_are_not_undone() {
    let app = spawn_app().await;
    // A one-phase schedule the billing team tagged (a coupon's phase, say) is not tollgate's.
    let c = paying_pro(&app, "gil@example.com").await;
    let sched = dashboard_schedule(&app, &c, ("metadata[owner]", "finance")).await;
    for (path, body) in [
        (
            "/api/billing/change",
            json!({"plan": "team", "interval": "month"}),
        ),
        ("/api/billing/cancel", json!({})),
    ] {
        let (status, answer) = post(&app, &c, path, body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (409, Some("subscription_managed")),
            "{path}"
        );
    }
    let kept = app
        .stripe_get(&format!("/v1/subscription_schedules/{sched}"))
        .await;
    assert_eq!(kept["status"], "active");
    assert_eq!(kept["metadata"]["owner"], "finance");

    // A subscription of several items (an add-on sold in the dashboard).
    let c = app.user("hal@example.com").await;
    app.checkout(&c, "pro", "month").await;
    let customer = app.customer_of("hal@example.com").await.unwrap();
    let addon = app.new_price("Extra storage", 500).await;
    app.subscribe_to_prices(&customer, &[(&addon, 1), (&app.price_of("pro"), 1)])
        .await;
    app.wait_for_plan(&c, Some("pro")).await;
    let (status, answer) = post(
        &app,
        &c,
        "/api/billing/change",
        json!({"plan": "team", "interval": "month"}),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("subscription_managed"))
    );
}

#[tokio::test]
async fn a_refused_upgrade_keeps_the_scheduled_downgrade() {
    let app = spawn_app().await;
    let c = app.subscriber("ivy@example.com", "team").await;
    let (status, _) = post(
        &app,
        &c,
        "/api/billing/change",
        json!({"plan": "pro", "interval": "month"}),
    )
    .await;
    assert_eq!(status, 200);
    let customer = app.customer_of("ivy@example.com").await.unwrap();
    app.sim_control(
        &format!("/_sim/customers/{customer}/card"),
        &json!({"failing": true}),
    )
    .await;
    let (status, answer) = post(
        &app,
        &c,
        "/api/billing/change",
        json!({"plan": "team", "interval": "year"}),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (402, Some("card_declined"))
    );
    let sub = subscription(&app, &c).await;
    assert_eq!(sub["scheduled_change"]["plan"], "pro", "{sub}");
    assert_eq!(sub["next_charge"]["amount"], 1900, "{sub}");
}
