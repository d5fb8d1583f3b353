//! The access policy × the gated routes, for JSON and HTML; downgrades, seen at once and across
//! instances; the grace period; a catalog without a free plan.

use reqwest::Client;
use serde_json::{Value, json};

use crate::helpers::{SubState, TestApp, event, pro_subscription_updated, spawn_app, user_in};

const GRACE: i64 = 3 * 86_400;

/// Every subscription state a user can be in at `now`, by name: (name, subscription state,
/// whether it grants pro).
fn every_state(now: i64) -> Vec<(&'static str, SubState<'static>, bool)> {
    vec![
        ("none", None, false),
        (
            "trialing",
            Some(("trialing", now, json!({"trial_end": now + 86_400}))),
            true,
        ),
        ("active", Some(("active", now, json!({}))), true),
        (
            "cancel_before_end",
            Some((
                "active",
                now,
                json!({"cancel_at_period_end": true, "cancel_at": now + 3_600}),
            )),
            true,
        ),
        (
            "cancel_after_end",
            Some((
                "active",
                now - 86_400,
                json!({"cancel_at_period_end": true, "cancel_at": now - 10}),
            )),
            false,
        ),
        (
            "past_due_in_grace",
            Some(("past_due", now - 60, json!({}))),
            true,
        ),
        (
            "past_due_after_grace",
            Some(("past_due", now - GRACE - 60, json!({}))),
            false,
        ),
        ("incomplete", Some(("incomplete", now, json!({}))), false),
        (
            "incomplete_expired",
            Some(("incomplete_expired", now, json!({}))),
            false,
        ),
        ("canceled", Some(("canceled", now, json!({}))), false),
        ("unpaid", Some(("unpaid", now, json!({}))), false),
        ("paused", Some(("paused", now, json!({}))), false),
        (
            "unknown",
            Some(("something_stripe_adds_later", now, json!({}))),
            false,
        ),
    ]
}

/// Asserts what `c` (the user in state `name`, granted pro or not) gets from every gated route,
/// JSON and HTML.
async fn assert_every_gated_route(app: &TestApp, c: &Client, name: &str, pro: bool) {
    // (route, granted?, error code, required)
    let routes = [
        ("free", true, "", ""),
        ("pro", pro, "plan_required", "pro"),
        ("team", false, "plan_required", "team"),
        ("export", pro, "feature_required", "export"),
    ];
    for (route, granted, code, required) in routes {
        let r = app.get_with(c, &format!("/api/demo/{route}")).await;
        let page = app.get_with(c, &format!("/demo/{route}")).await;
        if granted {
            assert_eq!(r.status(), 200, "{name} × /api/demo/{route}");
            assert_eq!(page.status(), 200, "{name} × /demo/{route}");
            continue;
        }
        assert_eq!(r.status(), 403, "{name} × /api/demo/{route}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], code, "{name} × {route}");
        let field = if code == "plan_required" {
            "required_plan"
        } else {
            "required_feature"
        };
        assert_eq!(body[field], required, "{name} × {route}");
        let current = if pro { "pro" } else { "free" };
        assert_eq!(body["current_plan"], current, "{name} × {route}");
        let upgrade_plan = if route == "export" { "pro" } else { required };
        assert_eq!(
            body["upgrade_url"],
            app.url(&format!("/pricing?required={upgrade_plan}")),
            "{name} × {route}"
        );
        assert_eq!(page.status(), 303, "{name} × /demo/{route}");
        assert_eq!(
            page.headers()["location"],
            format!("/pricing?required={upgrade_plan}"),
            "{name} × /demo/{route}"
        );
    }
}

#[tokio::test]
async fn every_status_against_every_gated_route_json_and_html() {
    let app = TestApp::builder()
        .with("TOLLGATE_PAST_DUE_GRACE_SECS", &GRACE.to_string())
        .spawn()
        .await;
    let now = app.state.clock.now();
    for (name, state, pro) in every_state(now) {
        let c = user_in(&app, name, state).await;
        let me = app.me(&c).await;
        assert_eq!(
            me["access"]["plan"],
            if pro { "pro" } else { "free" },
            "{name}: {me}"
        );
        assert_every_gated_route(&app, &c, name, pro).await;
    }
}

#[tokio::test]
async fn anonymous_requests_get_401_json_or_a_login_redirect() {
    let app = spawn_app().await;
    for route in ["free", "pro", "team", "export"] {
        let r = app.get(&format!("/api/demo/{route}")).await;
        assert_eq!(r.status(), 401, "{route}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthenticated");
        let page = app.get(&format!("/demo/{route}?tab=1")).await;
        assert_eq!(page.status(), 303);
        assert_eq!(
            page.headers()["location"],
            format!("/login?next=%2Fdemo%2F{route}%3Ftab%3D1")
        );
    }
}

#[tokio::test]
async fn a_downgrade_webhook_denies_the_very_next_request() {
    let app = spawn_app().await;
    let now = app.state.clock.now();
    let c = user_in(&app, "downgrade", Some(("active", now - 5, json!({})))).await;
    assert_eq!(app.get_with(&c, "/api/demo/pro").await.status(), 200);

    let event = pro_subscription_updated(
        &app,
        "downgrade",
        "cus_downgrade",
        "canceled",
        now,
        json!({}),
    );
    assert_eq!(app.deliver(&event).await["outcome"], "applied");

    assert_eq!(app.get_with(&c, "/api/demo/pro").await.status(), 403);
}

#[tokio::test]
async fn a_downgrade_is_seen_at_once_by_its_instance_and_within_a_second_by_another() {
    let first = spawn_app().await;
    let second = first.second_instance().await;
    let now = first.state.clock.now();
    let c = user_in(&first, "twoinst", Some(("active", now - 5, json!({})))).await;
    // Both instances have just decided (and so cached) pro access.
    for app in [&first, &second] {
        assert_eq!(app.get_with(&c, "/api/demo/pro").await.status(), 200);
    }

    let event =
        pro_subscription_updated(&first, "twoinst", "cus_twoinst", "canceled", now, json!({}));
    assert_eq!(first.deliver(&event).await["outcome"], "applied");
    let delivered = std::time::Instant::now();

    let r = first.get_with(&c, "/api/demo/pro").await;
    assert_eq!(
        r.status(),
        403,
        "the instance that took the webhook sees the downgrade on the next request"
    );
    // docs/api.md: any other instance within 1 second (judged by when a request was sent, so a
    // slow answer on a busy machine does not count against the instance).
    loop {
        let sent = std::time::Instant::now();
        let status = second.get_with(&c, "/api/demo/pro").await.status();
        if status == 403 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            sent.duration_since(delivered) < std::time::Duration::from_secs(1),
            "the other instance still grants pro a second after the webhook"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn by_default_grace_lasts_seven_days_from_the_first_sign_of_past_due() {
    let app = spawn_app().await;
    let now = app.state.clock.now();
    let day = 86_400;
    let pro_status = |c: Client| {
        let url = app.url("/api/demo/pro");
        async move { c.get(url).send().await.unwrap().status() }
    };

    let six_days = user_in(&app, "pd6", Some(("past_due", now - 6 * day, json!({})))).await;
    assert_eq!(
        pro_status(six_days).await,
        200,
        "day 6 of 7: still in grace"
    );
    let eight_days = user_in(&app, "pd8", Some(("past_due", now - 8 * day, json!({})))).await;
    assert_eq!(pro_status(eight_days).await, 403, "day 8: grace is over");

    // The first failed payment starts the episode even when it comes before the status change:
    // failed 8 days ago, past_due for 1 day, so grace is over.
    let early = user_in(&app, "pdearly", Some(("active", now - 9 * day, json!({})))).await;
    // The invoice names its subscription where older API versions did.
    let failed = event(
        "evt_pdearly_failed",
        "invoice.payment_failed",
        now - 8 * day,
        json!({"id": "in_pdearly", "object": "invoice",
               "customer": "cus_pdearly", "subscription": "sub_pdearly"}),
    );
    assert_eq!(app.deliver(&failed).await["outcome"], "applied");
    let past_due = pro_subscription_updated(
        &app,
        "pdearly",
        "cus_pdearly",
        "past_due",
        now - day,
        json!({}),
    );
    assert_eq!(app.deliver(&past_due).await["outcome"], "applied");
    assert_eq!(
        pro_status(early.clone()).await,
        403,
        "counted from the failure"
    );

    // Recovery ends the episode; a new failure starts a new one.
    let active = pro_subscription_updated(
        &app,
        "pdearly",
        "cus_pdearly",
        "active",
        now - 100,
        json!({}),
    );
    assert_eq!(app.deliver(&active).await["outcome"], "applied");
    let again = pro_subscription_updated(
        &app,
        "pdearly",
        "cus_pdearly",
        "past_due",
        now - 50,
        json!({}),
    );
    assert_eq!(app.deliver(&again).await["outcome"], "applied");
    assert_eq!(
        pro_status(early).await,
        200,
        "a new episode has a new grace"
    );
}

#[tokio::test]
async fn without_a_free_plan_a_user_with_no_subscription_has_no_access() {
    // The demo catalog without its free plan.
    let catalog = tollgate::billing::catalog::DEMO.replacen(
        "[[plans]]\nid = \"free\"\nname = \"Free\"\ntier = 0\nfeatures = [\"projects\"]\n",
        "",
        1,
    );
    assert!(!catalog.contains("id = \"free\""));
    let path = std::env::temp_dir().join(format!("tollgate-nofree-{}.toml", std::process::id()));
    std::fs::write(&path, catalog).unwrap();
    let app = TestApp::builder()
        .with("TOLLGATE_PLANS", path.to_str().unwrap())
        .spawn()
        .await;
    let c = app.user("nofree@example.com").await;

    let me = app.me(&c).await;
    assert_eq!(me["access"]["plan"], Value::Null);
    assert_eq!(me["access"]["tier"], Value::Null);
    assert_eq!(me["access"]["features"], json!([]));
    let r = c.get(app.url("/api/demo/free")).send().await.unwrap();
    assert_eq!(r.status(), 200, "signed in is all the free area asks");
    let r = c.get(app.url("/api/demo/pro")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["current_plan"],
        Value::Null
    );
    let _ = std::fs::remove_file(path);
}

/// Pages name plans as people read them: the account page and the plan's own page say "Pro",
/// never the catalog id.
#[tokio::test]
async fn pages_name_the_plan_not_its_id() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "pro").await;
    for page in ["/account", "/demo/pro"] {
        let html = crate::helpers::page_text(&c, &app.url(page)).await;
        assert!(
            html.contains("<dd>Pro</dd>") || html.contains("<strong>Pro</strong>"),
            "{page}: {html}"
        );
        assert!(
            !html.contains("<dd>pro</dd>") && !html.contains("<strong>pro</strong>"),
            "{page}"
        );
    }
}
