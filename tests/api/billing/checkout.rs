//! Checkout: sessions, payment, trials, the success page, and what a second checkout meets.

use serde_json::{Value, json};

use crate::helpers::{TestApp, client, error_of, page_text, portal_action, spawn_app};

#[tokio::test]
async fn paid_checkout_with_a_trial_makes_the_user_pro() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    assert_eq!(app.me(&c).await["access"]["plan"], "free");

    let url = app.checkout(&c, "pro", "month").await;
    assert!(url.starts_with(&app.sim_url("/checkout/cs_test_")), "{url}");
    let page = page_text(&client(), &url).await;
    assert!(
        page.contains("14-day free trial"),
        "first subscription gets the trial"
    );
    let success = app.pay(&url).await;
    assert!(
        success.starts_with(&app.url("/billing/success?session_id=cs_test_")),
        "{success}"
    );

    let me = app.wait_for_plan(&c, Some("pro")).await;
    assert_eq!(me["access"]["status"], "trialing");
    assert_eq!(me["access"]["tier"], 1);
    assert_eq!(me["access"]["features"], json!(["projects", "export"]));
    assert!(me["access"]["until"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn a_plan_without_a_trial_is_active_at_once() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "team").await;
    let me = app.me(&c).await;
    assert_eq!(me["access"]["status"], "active");
    assert_eq!(me["access"]["tier"], 2);
    // As with Stripe, the subscription was created `incomplete` and made `active` in the same
    // second: a tie, settled by asking Stripe.
    app.wait_for_webhooks().await;
    let outcomes: Vec<(String, String)> = sqlx::query_as(
        "SELECT type, outcome FROM stripe_events WHERE type LIKE 'customer.subscription.%' \
         ORDER BY received_at, type",
    )
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    assert!(
        outcomes.contains(&("customer.subscription.updated".into(), "refetched".into())),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_trial_is_granted_only_to_the_first_subscription() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "pro").await;
    portal_action(&app, &c, "cancel_now", None).await;
    app.wait_for_plan(&c, Some("free")).await;

    let url = app.checkout(&c, "pro", "month").await;
    let page = page_text(&client(), &url).await;
    assert!(
        page.contains("<h1>Subscribe to "),
        "the Checkout page: {page}"
    );
    assert!(!page.contains("free trial"), "no second trial");
    app.pay(&url).await;
    let me = app.wait_for_plan(&c, Some("pro")).await;
    assert_eq!(me["access"]["status"], "active");
}

#[tokio::test]
async fn the_success_page_applies_the_subscription_even_without_webhooks() {
    let app = spawn_app().await;
    // Webhooks go nowhere: only the success page can tell tollgate.
    let sim = app.state.sim.as_ref().unwrap();
    sim.set_webhook(
        "http://127.0.0.1:9/unreachable".into(),
        "whsec_nowhere".into(),
    );
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "team", "month").await;
    let success = app.pay(&url).await;

    let page = c.get(&success).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Welcome to Team"));
    assert_eq!(app.me(&c).await["access"]["plan"], "team");

    // Idempotent: a reload changes nothing.
    let again = c.get(&success).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(app.count("subscriptions").await, 1);
}

#[tokio::test]
async fn another_users_checkout_session_grants_nothing() {
    let app = spawn_app().await;
    let payer = app.user("payer@example.com").await;
    let url = app.checkout(&payer, "team", "month").await;
    let success = app.pay(&url).await;
    let thief = app.user("thief@example.com").await;

    let page = thief.get(&success).send().await.unwrap();

    assert_eq!(page.status(), 404);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("does not belong to your account")
    );
    assert_eq!(app.me(&thief).await["access"]["plan"], "free");
}

#[tokio::test]
async fn a_success_page_id_that_is_not_a_session_id_never_reaches_stripe() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "team", "month").await;
    let success = app.pay(&url).await;
    let own = success.rsplit('=').next().unwrap().to_owned();
    app.wait_for_plan(&c, Some("team")).await;
    // Every event answered (a tie's re-fetch calls Stripe before its event is answered), so only
    // the pages below could ask Stripe anything.
    app.wait_for_webhooks().await;
    let sim = app.state.sim.as_ref().unwrap();

    for id in [
        format!("{own}%3Fexpand%5B%5D%3Dcustomer"),
        "cs_x%2F..%2F..%2Fcustomers".to_owned(),
        format!("{own}%2F"),
        "cs_".to_owned(),
        "cs_a%20b".to_owned(),
    ] {
        let before = sim.request_count();
        let page = c
            .get(app.url(&format!("/billing/success?session_id={id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 404, "{id}");
        assert_eq!(sim.request_count(), before, "{id}: Stripe was asked");
    }
}

#[tokio::test]
async fn checkout_refuses_unknown_plans_and_bad_intervals() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let cases = [
        (
            json!({"plan": "gold", "interval": "month"}),
            "unknown_plan",
            "not in the catalog",
        ),
        (
            json!({"plan": "free", "interval": "month"}),
            "unknown_plan",
            "the free plan",
        ),
        (
            json!({"plan": "pro", "interval": "week"}),
            "invalid_field",
            "no such interval",
        ),
        (json!({"plan": "pro"}), "invalid_field", "missing interval"),
        (
            json!({"plan": "pro", "interval": "month", "price": "price_attacker"}),
            "",
            "a price field is ignored",
        ),
    ];
    for (body, code, why) in cases {
        let r = app.post_json_with(&c, "/api/billing/checkout", &body).await;
        if code.is_empty() {
            assert_eq!(r.status(), 200, "{why}");
            continue;
        }
        assert_eq!(r.status(), 400, "{why}");
        assert_eq!(error_of(r).await, code, "{why}");
    }
    let anonymous = app.try_checkout(&client(), "pro", "month").await;
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn checkout_can_require_a_verified_email() {
    let app = TestApp::builder()
        .with("TOLLGATE_REQUIRE_VERIFIED_FOR_CHECKOUT", "true")
        .spawn()
        .await;
    let c = app.user("ann@example.com").await;

    let r = app.try_checkout(&c, "pro", "month").await;

    assert_eq!(r.status(), 403);
    assert_eq!(error_of(r).await, "email_unverified");
    assert_eq!(app.count("billing_customers").await, 0);
}

#[tokio::test]
async fn an_open_session_is_reused_and_a_subscriber_cannot_check_out_again() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let first = app.checkout(&c, "pro", "month").await;
    assert_eq!(
        app.checkout(&c, "pro", "month").await,
        first,
        "same open session"
    );

    let other = app.checkout(&c, "pro", "year").await;
    assert_ne!(other, first, "another choice gets a new session");
    let old = app.try_pay(&first).await;
    assert_eq!(
        old.status(),
        400,
        "the earlier session was expired and cannot complete"
    );

    app.pay(&other).await;
    app.wait_for_plan(&c, Some("pro")).await;
    let again = app.try_checkout(&c, "team", "month").await;
    assert_eq!(again.status(), 409);
    assert_eq!(error_of(again).await, "already_subscribed");
}

#[tokio::test]
async fn a_session_in_its_last_minute_is_expired_in_stripe_before_another_is_made() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let first = app.checkout(&c, "pro", "month").await;
    // 30 s before the first session's end, by both clocks.
    app.advance(86_400 - 30).await;
    let second = app.checkout(&c, "team", "month").await;
    assert_ne!(first, second);

    // The first can no longer be paid: one subscription, never two.
    let paid_first = app.try_pay(&first).await;
    assert_ne!(
        paid_first.status(),
        303,
        "the first session is still payable"
    );
    app.pay(&second).await;
    app.wait_for_plan(&c, Some("team")).await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let subs = app
        .stripe_get(&format!("/v1/subscriptions?customer={customer}&status=all"))
        .await;
    assert_eq!(subs["data"].as_array().unwrap().len(), 1, "{subs}");
}

#[tokio::test]
async fn a_session_expires_when_the_clock_passes_its_end_without_any_api_call() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "pro", "month").await;
    let calls = app.state.sim.as_ref().unwrap().request_count();
    app.advance(86_400 + 60).await;
    let expired = app
        .sim_event("checkout.session.expired")
        .await
        .expect("the session expired when the clock passed its end");
    let session = &expired["data"]["object"];
    assert_eq!(session["status"], "expired");
    assert_eq!(
        expired["created"], session["expires_at"],
        "at its end, not later"
    );
    assert_eq!(
        app.state.sim.as_ref().unwrap().request_count(),
        calls,
        "no API call was needed"
    );
    let paid = app.try_pay(&url).await;
    assert_ne!(paid.status(), 303, "an expired session cannot be paid");
}

#[tokio::test]
async fn a_second_checkout_after_a_payment_whose_webhook_is_late_is_refused_and_applies_it() {
    for (plan, interval) in [("team", "year"), ("pro", "month")] {
        let app = spawn_app().await;
        let c = app.user("ann@example.com").await;
        app.hold_webhooks(true).await;
        let first = app.checkout(&c, "pro", "month").await;
        app.pay(&first).await;

        let again = app.try_checkout(&c, plan, interval).await;

        assert_eq!(
            again.status(),
            409,
            "{plan}/{interval} after a paid session"
        );
        assert_eq!(error_of(again).await, "already_subscribed");
        assert_eq!(
            app.me(&c).await["access"]["plan"],
            "pro",
            "the paid subscription is applied at once"
        );
        let customer = app.customer_of("ann@example.com").await.unwrap();
        assert_eq!(app.stripe_subscriptions(&customer).await.len(), 1);
    }
}

#[tokio::test]
async fn concurrent_checkouts_for_one_user_create_one_customer_and_one_session() {
    let app = spawn_app().await;
    let c = app.user("race@example.com").await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (c, url) = (c.clone(), app.url("/api/billing/checkout"));
        set.spawn(async move {
            let r = c
                .post(url)
                .header("content-type", "application/json")
                .body(json!({"plan": "pro", "interval": "month"}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["url"]
                .as_str()
                .unwrap()
                .to_owned()
        });
    }
    let urls = set.join_all().await;

    assert!(urls.iter().all(|u| *u == urls[0]), "one session: {urls:?}");
    let customer = app
        .customer_of("race@example.com")
        .await
        .expect("a customer");
    let search = client()
        .get(app.sim_url("/v1/customers/search"))
        .bearer_auth("sk_test_x")
        .query(&[(
            "query",
            format!(
                "metadata['tollgate_user_id']:'{}'",
                app.me(&c).await["id"].as_str().unwrap()
            ),
        )])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        search["data"].as_array().unwrap().len(),
        1,
        "Stripe has one customer"
    );
    assert_eq!(search["data"][0]["id"], customer);
}

#[tokio::test]
async fn concurrent_checkouts_for_different_choices_all_answer_and_leave_one_payable_session() {
    let app = spawn_app().await;
    let c = app.user("race@example.com").await;
    app.sim_control("/_sim/latency", &json!({"ms": 100})).await;
    let choices = [("pro", "month"), ("team", "month"), ("pro", "year")];
    let mut set = tokio::task::JoinSet::new();
    for (plan, interval) in choices.iter().chain(&choices) {
        let (c, url) = (c.clone(), app.url("/api/billing/checkout"));
        let body = json!({"plan": plan, "interval": interval}).to_string();
        set.spawn(async move {
            let r = c
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        });
    }
    let mut sessions = std::collections::BTreeSet::new();
    for (status, answer) in set.join_all().await {
        assert_eq!(status, 200, "every request gets a session: {answer}");
        let url = answer["url"].as_str().unwrap();
        sessions.insert(url.rsplit('/').next().unwrap().to_owned());
    }
    let mut open = Vec::new();
    for id in &sessions {
        let session = app.stripe_get(&format!("/v1/checkout/sessions/{id}")).await;
        if session["status"] == "open" {
            open.push(id.clone());
        }
    }
    assert_eq!(open.len(), 1, "one payable session of {sessions:?}");
}

#[tokio::test]
async fn a_double_click_on_the_first_checkout_gives_one_session_while_stripe_is_slow() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.sim_control("/_sim/latency", &json!({"ms": 300})).await;

    let (a, b) = tokio::join!(
        app.try_checkout(&c, "pro", "month"),
        app.try_checkout(&c, "pro", "month")
    );

    assert_eq!([a.status().as_u16(), b.status().as_u16()], [200, 200]);
    let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
    assert_eq!(a["url"], b["url"], "one session");
    let user = app.me(&c).await["id"].as_str().unwrap().to_owned();
    let found = app
        .stripe_get(&format!(
            "/v1/customers/search?query=metadata['tollgate_user_id']:'{user}'"
        ))
        .await;
    assert_eq!(found["data"].as_array().unwrap().len(), 1, "one customer");
    assert_eq!(
        app.customer_of("ann@example.com").await.as_deref(),
        found["data"][0]["id"].as_str(),
        "mapped to it"
    );
}

#[tokio::test]
async fn a_checkout_still_waiting_on_a_slow_stripe_is_not_taken_over_and_a_dead_one_is() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let user = app.me(&c).await["id"].as_str().unwrap().to_owned();
    // Another instance claimed a checkout for Ann a moment ago and is still waiting on Stripe for
    // its session (a very slow Stripe): its claim, as it stands meanwhile.
    sqlx::query(
        "INSERT INTO checkout_attempts (id, user_id, plan_id, price_interval, status, created_at) \
         VALUES ('chk_elsewhere', $1, 'pro', 'month', 'creating', $2)",
    )
    .bind(&user)
    .bind(tollgate::db::now())
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    // After waiting 5 s for it, this checkout is refused rather than make a second session that
    // could be paid beside the other's.
    let r = app.try_checkout(&c, "pro", "month").await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "change_in_progress"
    );
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM checkout_attempts WHERE id = 'chk_elsewhere'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(status, "creating", "left to its instance");

    // Claimed longer ago than any request runs: its instance died. It is retired, and this
    // checkout goes ahead.
    sqlx::query("UPDATE checkout_attempts SET created_at = created_at - 3600")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    app.checkout(&c, "pro", "month").await;
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM checkout_attempts WHERE id = 'chk_elsewhere'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(status, "failed");
}

#[tokio::test]
async fn a_configured_test_clock_is_attached_to_new_customers_and_their_subscriptions() {
    let app = TestApp::builder()
        .with("TOLLGATE_STRIPE_TEST_CLOCK", "clock_release_check")
        .spawn()
        .await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "team", "month").await;
    app.pay(&url).await;

    let customer = app.customer_of("ann@example.com").await.unwrap();
    let found = app.stripe_get(&format!("/v1/customers/{customer}")).await;
    assert_eq!(found["test_clock"], "clock_release_check");
    let subs = app.stripe_subscriptions(&customer).await;
    assert_eq!(subs[0]["test_clock"], "clock_release_check");
}
