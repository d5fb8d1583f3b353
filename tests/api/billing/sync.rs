//! `stripe sync`: drift between tollgate's rows and Stripe, found, reported and repaired.

use serde_json::json;

use crate::helpers::{row_of, spawn_app, sub_event};

#[tokio::test]
async fn stripe_sync_finds_introduced_drift_and_repairs_it() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "team").await;
    // Every event landed and the start's incomplete → active tie settled: no drift of its own.
    app.wait_for_webhooks().await;
    app.wait_for(&c, |m| m["access"]["status"] == "active", "active")
        .await;
    let user = app.me(&c).await["id"].as_str().unwrap().to_owned();
    let (sub,): (String,) = sqlx::query_as("SELECT id FROM subscriptions WHERE user_id = $1")
        .bind(&user)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let clean = tollgate::billing::sync::reconcile(&app.state, false)
        .await
        .unwrap();
    assert!(clean.drifts.is_empty(), "{clean}");

    // Drift: the local row says canceled, and a row Stripe never heard of appears.
    sqlx::query("UPDATE subscriptions SET status = 'canceled' WHERE id = $1")
        .bind(&sub)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let customer = app.customer_of("ann@example.com").await.unwrap();
    app.insert_ghost_subscription(&user, &customer).await;
    // Edits by hand, which the app hears of from the database (its triggers publish them).
    let edited = std::time::Instant::now();
    while app.me(&c).await["access"]["plan"] != "team" {
        assert!(
            edited.elapsed() < std::time::Duration::from_secs(2),
            "the ghost grants team (the real row is canceled now)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    let dry = tollgate::billing::sync::reconcile(&app.state, false)
        .await
        .unwrap();
    let kinds: Vec<(&str, &str)> = dry
        .drifts
        .iter()
        .map(|d| (d.kind, d.subject.as_str()))
        .collect();
    assert!(kinds.contains(&("stale", sub.as_str())), "{dry}");
    assert!(kinds.contains(&("orphaned", "sub_ghost")), "{dry}");
    assert_eq!(dry.repaired, 0);
    assert_eq!(
        row_of(&app, &sub).await[0],
        "canceled",
        "a dry run changes nothing"
    );

    let fixed = tollgate::billing::sync::reconcile(&app.state, true)
        .await
        .unwrap();
    assert_eq!(fixed.repaired, 2, "{fixed}");
    assert_eq!(row_of(&app, &sub).await[0], "active");
    assert_eq!(row_of(&app, "sub_ghost").await[0], "canceled");
    let after = tollgate::billing::sync::reconcile(&app.state, false)
        .await
        .unwrap();
    assert!(after.drifts.is_empty(), "{after}");
}

#[tokio::test]
async fn stripe_sync_reports_a_customer_with_two_live_subscriptions() {
    let app = spawn_app().await;
    app.subscriber("ann@example.com", "pro").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    // A second subscription made behind tollgate's back (say, in the Stripe dashboard).
    let session = app
        .stripe_post(
            "/v1/checkout/sessions",
            &[
                ("mode", "subscription"),
                ("customer", &customer),
                ("line_items[0][price]", &app.price_of("team")),
                ("line_items[0][quantity]", "1"),
                ("success_url", "http://example.com/"),
            ],
        )
        .await;
    app.pay(session["url"].as_str().unwrap()).await;

    let report = tollgate::billing::sync::reconcile(&app.state, false)
        .await
        .unwrap();

    let kinds: Vec<(&str, &str)> = report
        .drifts
        .iter()
        .map(|d| (d.kind, d.subject.as_str()))
        .collect();
    assert!(
        kinds.contains(&("multiple-live", customer.as_str())),
        "{report}"
    );
}

#[tokio::test]
async fn stripe_sync_reports_and_repairs_a_plan_that_does_not_follow_its_price() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.map_customer_of(&c, "cus_plan").await;
    let now = app.state.clock.now();
    let mut event = sub_event(
        "evt_p",
        "customer.subscription.created",
        now,
        "sub_plan",
        "cus_plan",
        "active",
    );
    event["data"]["object"]["items"]["data"][0]["price"]["id"] = json!(app.price_of("pro"));
    app.deliver(&event).await;
    // No webhook can land after this: the subscription exists only in these events.
    sqlx::query("UPDATE subscriptions SET plan_id = 'team'")
        .execute(&app.state.db.pool)
        .await
        .unwrap();

    let found = tollgate::billing::sync::reconcile(&app.state, false)
        .await
        .unwrap();
    assert!(
        found
            .drifts
            .iter()
            .any(|d| (d.kind, d.subject.as_str()) == ("plan-mismatch", "sub_plan")),
        "{found}"
    );
    tollgate::billing::sync::reconcile(&app.state, true)
        .await
        .unwrap();

    let (plan,): (Option<String>,) =
        sqlx::query_as("SELECT plan_id FROM subscriptions WHERE id = 'sub_plan'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(plan.as_deref(), Some("pro"));
}

#[tokio::test]
async fn stripe_sync_reports_a_failed_call_and_carries_on_with_the_other_customers() {
    let app = spawn_app().await;
    for email in ["a@example.com", "b@example.com"] {
        app.subscriber(email, "pro").await;
    }
    app.wait_for_webhooks().await;
    // Drift on both, and a first customer whose every attempt fails.
    sqlx::query("UPDATE subscriptions SET status = 'canceled'")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    app.sim_control("/_sim/fail", &json!({"calls": 3})).await;

    let report = tollgate::billing::sync::reconcile(&app.state, false)
        .await
        .expect("the run survives a failed call");

    let kinds: Vec<&str> = report.drifts.iter().map(|d| d.kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "failed").count(),
        1,
        "{report}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "stale").count(),
        1,
        "{report}"
    );
}

#[tokio::test]
async fn stripe_sync_lists_customers_in_pages_instead_of_searching_per_customer() {
    let app = spawn_app().await;
    for n in 0..3 {
        app.subscriber(&format!("u{n}@example.com"), "pro").await;
    }
    let c = app.user("dup@example.com").await;
    let user = app.map_customer_of(&c, "cus_not_in_stripe").await;
    for _ in 0..2 {
        app.stripe_post(
            "/v1/customers",
            &[
                ("email", "dup@example.com"),
                ("metadata[tollgate_user_id]", &user),
            ],
        )
        .await;
    }
    app.wait_for_webhooks().await;
    let sim = app.state.sim.as_ref().unwrap();
    let before = sim.request_count();

    let report = tollgate::billing::sync::reconcile(&app.state, false)
        .await
        .unwrap();

    assert!(
        report
            .drifts
            .iter()
            .any(|d| (d.kind, d.subject.as_str()) == ("duplicate-customers", user.as_str())),
        "{report}"
    );
    // One subscription list per mapped customer (4) and one page of customers.
    assert_eq!(sim.request_count() - before, 5);
}

#[tokio::test]
async fn stripe_sync_reports_and_repairs_email_drift() {
    let app = spawn_app().await;
    app.subscriber("ann@example.com", "pro").await;
    app.wait_for_webhooks().await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    app.stripe_post(
        &format!("/v1/customers/{customer}"),
        &[("email", "someone.else@example.com")],
    )
    .await;

    let found = tollgate::billing::sync::reconcile(&app.state, false)
        .await
        .unwrap();
    let drift = found
        .drifts
        .iter()
        .find(|d| d.kind == "email-drift")
        .unwrap_or_else(|| panic!("{found}"));
    assert_eq!(drift.subject, customer);
    assert!(
        !found.to_string().contains("@"),
        "no address in the report: {found}"
    );
    tollgate::billing::sync::reconcile(&app.state, true)
        .await
        .unwrap();

    let now = app.stripe_get(&format!("/v1/customers/{customer}")).await;
    assert_eq!(now["email"], "ann@example.com");
}

/// `tollgate stripe sync --dry-run` reports a stored plan that does not follow its price and
/// changes nothing (start-up leaves the plans alone for it); without `--dry-run` it repairs it.
#[tokio::test]
async fn the_sync_command_reports_plan_drift_in_a_dry_run_and_repairs_it_otherwise() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "pro").await;
    sqlx::query("UPDATE subscriptions SET plan_id = 'team'")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let sync = |dry: bool| {
        let mut cmd = crate::cli::tollgate();
        cmd.args(["stripe", "sync"])
            .env("DATABASE_URL", &app.db.url)
            .env("STRIPE_SECRET_KEY", "sk_test_x")
            .env("STRIPE_API_BASE", app.sim_url(""));
        if dry {
            cmd.arg("--dry-run");
        }
        cmd.output()
    };
    let plan = || async {
        let (plan,): (Option<String>,) = sqlx::query_as("SELECT plan_id FROM subscriptions")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        plan
    };

    let out = sync(true).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("plan-mismatch"), "{stdout}");
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    assert_eq!(
        plan().await.as_deref(),
        Some("team"),
        "a dry run changes nothing"
    );

    let out = sync(false).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(plan().await.as_deref(), Some("pro"));
    app.state
        .cache
        .forget_user(app.me(&c).await["id"].as_str().unwrap());
    assert_eq!(app.me(&c).await["access"]["plan"], "pro");
}
