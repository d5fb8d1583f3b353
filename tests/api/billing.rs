//! Billing against the built-in Stripe simulator, through the real async-stripe client and the
//! real webhook endpoint: checkout, trials, renewals, failed payments, cancellation, the portal,
//! signatures, duplicates, ordering, orphans and outages.

use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use tollgate::sim::delivery::sign;

use crate::helpers::{PASSWORD, TestApp, client, error_of, page_text, spawn_app};

impl TestApp {
    /// The simulator's base URL (`http://127.0.0.1:<port>/`).
    pub fn sim_url(&self, path: &str) -> String {
        let sim = self
            .state
            .stripe
            .sim
            .as_ref()
            .expect("tests run with the simulator");
        format!("{}{}", sim.base_url(), path.trim_start_matches('/'))
    }

    /// Registers a fresh user on a new client and returns the client.
    pub async fn user(&self, email: &str) -> Client {
        let c = client();
        self.register_with(&c, email, PASSWORD).await;
        c
    }

    /// `POST /api/billing/checkout` as `c`, whatever the answer.
    pub async fn try_checkout(&self, c: &Client, plan: &str, interval: &str) -> reqwest::Response {
        self.post_json_with(
            c,
            "/api/billing/checkout",
            &json!({"plan": plan, "interval": interval}),
        )
        .await
    }

    /// `POST /api/billing/portal` as `c`, whatever the answer.
    pub async fn try_portal(&self, c: &Client) -> reqwest::Response {
        self.post_json_with(c, "/api/billing/portal", &json!({}))
            .await
    }

    /// `POST /api/billing/checkout` and the Checkout URL.
    pub async fn checkout(&self, c: &Client, plan: &str, interval: &str) -> String {
        let r = self.try_checkout(c, plan, interval).await;
        assert_eq!(r.status(), 200, "checkout for {plan}/{interval}");
        r.json::<Value>().await.unwrap()["url"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Pays on the simulator's hosted Checkout page; returns the success URL it redirects to.
    pub async fn pay(&self, checkout_url: &str) -> String {
        let r = client()
            .post(checkout_url)
            .form(&[("action", "pay")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "payment accepted");
        r.headers()["location"].to_str().unwrap().to_owned()
    }

    /// A user on `plan`, paid through Checkout, once the webhooks have landed and the start has
    /// settled (a paid start passes through `incomplete` for a moment, as with Stripe).
    pub async fn subscriber(&self, email: &str, plan: &str) -> Client {
        let c = self.user(email).await;
        let url = self.checkout(&c, plan, "month").await;
        self.pay(&url).await;
        self.wait_for_plan(&c, Some(plan)).await;
        self.wait_for_webhooks().await;
        self.wait_for(
            &c,
            |m| m["access"]["plan"] == plan && m["access"]["status"] != "incomplete",
            "the settled start",
        )
        .await;
        c
    }

    /// `/api/me` of `c`.
    pub async fn me(&self, c: &Client) -> Value {
        c.get(self.url("/api/me"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls `/api/me` until the access plan is `plan` (10 s deadline).
    pub async fn wait_for_plan(&self, c: &Client, plan: Option<&str>) -> Value {
        self.wait_for(
            c,
            |me| me["access"]["plan"].as_str() == plan,
            &format!("plan {plan:?}"),
        )
        .await
    }

    /// Polls `/api/me` until `done` holds (10 s deadline).
    pub async fn wait_for(&self, c: &Client, done: impl Fn(&Value) -> bool, what: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let me = self.me(c).await;
            if done(&me) {
                return me;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {me}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Moves the simulator's test clock (and tollgate's) forward.
    pub async fn advance(&self, seconds: i64) {
        self.sim_control("/_sim/clock/advance", &json!({"seconds": seconds}))
            .await;
    }

    /// Posts `body` to one of the simulator's `/_sim/` switches; panics unless it took.
    pub async fn sim_control(&self, path: &str, body: &Value) {
        let r = client()
            .post(self.sim_url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path} {body}: {}", r.status());
    }

    /// GETs `path` from the simulator's Stripe API, with the test key.
    pub async fn stripe_get(&self, path: &str) -> Value {
        let r = client()
            .get(self.sim_url(path))
            .bearer_auth("sk_test_x")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// The Stripe price id of `plan`'s first price (by interval, so the monthly one).
    pub fn price_of(&self, plan: &str) -> String {
        self.state
            .catalog
            .plan(plan)
            .unwrap()
            .prices
            .values()
            .next()
            .unwrap()
            .stripe_id
            .clone()
    }

    /// Posts a webhook body signed with `secret` at time `t`.
    pub async fn post_webhook(&self, body: &str, signature: Option<String>) -> reqwest::Response {
        let mut r = client()
            .post(self.url("/webhooks/stripe"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(s) = signature {
            r = r.header("stripe-signature", s);
        }
        r.send().await.unwrap()
    }

    /// Signs `event` with the app's webhook secret at the app's now and posts it, whatever the
    /// answer.
    pub async fn try_deliver(&self, event: &Value) -> reqwest::Response {
        let body = event.to_string();
        let secret = self.state.stripe.webhook_secrets[0].expose().to_owned();
        self.post_webhook(
            &body,
            Some(sign(&secret, self.state.clock.now(), body.as_bytes())),
        )
        .await
    }

    /// [`Self::try_deliver`], and the answer; panics unless 200.
    pub async fn deliver(&self, event: &Value) -> Value {
        let r = self.try_deliver(event).await;
        assert_eq!(r.status(), 200, "webhook accepted");
        r.json().await.unwrap()
    }

    /// Maps the user signed in on `c` to the Stripe customer `customer`, as a finished checkout
    /// would have; returns the user id.
    pub async fn map_customer_of(&self, c: &Client, customer: &str) -> String {
        let user = self.me(c).await["id"].as_str().unwrap().to_owned();
        sqlx::query(
            "INSERT INTO billing_customers (id, user_id, stripe_customer_id, idempotency_key, deleted, created_at, updated_at) \
             VALUES ($1, $2, $3, $1, 0, 0, 0)",
        )
        .bind(format!("bc_{customer}"))
        .bind(&user)
        .bind(customer)
        .execute(&self.state.db.pool)
        .await
        .unwrap();
        user
    }

    /// Stores an active `team` row `sub_ghost` for `user` that Stripe never heard of.
    pub async fn insert_ghost_subscription(&self, user: &str, customer: &str) {
        sqlx::query(
            "INSERT INTO subscriptions (id, user_id, customer_id, status, plan_id, price_id, quantity, \
             cancel_at_period_end, stripe_updated, created_at, updated_at) \
             VALUES ('sub_ghost', $1, $2, 'active', 'team', $3, 1, 0, 1, 1, 1)",
        )
        .bind(user)
        .bind(customer)
        .bind(self.price_of("team"))
        .execute(&self.state.db.pool)
        .await
        .unwrap();
    }

    /// The Stripe customer of the user registered as `email`.
    pub async fn customer_of(&self, email: &str) -> Option<String> {
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT c.stripe_customer_id FROM billing_customers c JOIN users u ON u.id = c.user_id \
             WHERE u.email_norm = $1",
        )
        .bind(email)
        .fetch_optional(&self.state.db.pool)
        .await
        .unwrap();
        row.and_then(|r| r.0)
    }
}

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
async fn the_success_page_applies_the_subscription_even_without_webhooks() {
    let app = spawn_app().await;
    // Webhooks go nowhere: only the success page can tell tollgate.
    let sim = app.state.stripe.sim.as_ref().unwrap();
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
    let sim = app.state.stripe.sim.as_ref().unwrap();

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
    let old = client()
        .post(&first)
        .form(&[("action", "pay")])
        .send()
        .await
        .unwrap();
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
async fn stripe_down_during_checkout_is_a_clear_503_with_no_local_change() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.sim_control("/_sim/outage", &json!({"on": true})).await;

    let r = app.try_checkout(&c, "pro", "month").await;

    assert_eq!(r.status(), 503);
    assert_eq!(error_of(r).await, "payment_provider_unavailable");
    assert_eq!(app.count("billing_customers").await, 0);
    assert_eq!(app.count("checkout_attempts").await, 0);

    app.sim_control("/_sim/outage", &json!({"on": false})).await;
    app.checkout(&c, "pro", "month").await;
}

#[tokio::test]
async fn the_portal_needs_a_customer_and_opens_for_the_users_own() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let none = app.try_portal(&c).await;
    assert_eq!(none.status(), 409);
    assert_eq!(error_of(none).await, "no_customer");

    let c = app.subscriber("bob@example.com", "team").await;
    let r = app.try_portal(&c).await;
    assert_eq!(r.status(), 200);
    let url = r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = page_text(&client(), &url).await;
    assert!(page.contains("Cancel at period end"));

    // A customer Stripe no longer knows (deleted there, the webhook not in yet) is no customer.
    let ghost = app.user("ghost@example.com").await;
    app.map_customer_of(&ghost, "cus_deleted_in_stripe").await;
    let gone = app.try_portal(&ghost).await;
    assert_eq!(gone.status(), 409);
    assert_eq!(error_of(gone).await, "no_customer");
}

/// Clicks a portal action for the only subscription of the user behind `c`.
async fn portal_action(app: &TestApp, c: &Client, action: &str, price: Option<&str>) {
    let r = app.try_portal(c).await;
    assert_eq!(r.status(), 200, "portal for {action}");
    let url = r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (sub,): (String,) = sqlx::query_as("SELECT id FROM subscriptions WHERE user_id = $1")
        .bind(app.me(c).await["id"].as_str().unwrap())
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let mut form = vec![("subscription", sub.as_str()), ("action", action)];
    if let Some(p) = price {
        form.push(("price", p));
    }
    let r = client().post(&url).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303, "portal {action}");
}

#[tokio::test]
async fn a_cancellation_is_not_lost_to_a_fetched_state_stamped_before_tollgates_clock_was_stepped()
{
    let app = spawn_app().await;
    // Stripe's clock runs two minutes ahead while the subscription's events arrive, so tollgate
    // learns that lead from them.
    app.sim_control("/_sim/clock/skew", &json!({"seconds": 120}))
        .await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "team", "month").await;
    let success = app.pay(&url).await;
    assert_eq!(c.get(&success).send().await.unwrap().status(), 200);
    app.wait_for_plan(&c, Some("team")).await;
    app.wait_for_webhooks().await;

    // Then the clocks agree again (tollgate's was stepped forward): a state fetched now is
    // stamped by the old lead, two minutes past Stripe's clock.
    app.sim_control("/_sim/clock/skew", &json!({"seconds": 0}))
        .await;
    assert_eq!(c.get(&success).send().await.unwrap().status(), 200);

    // Changes Stripe makes now are older than that stamp, yet none may be dropped: the first
    // (settled by asking Stripe) and the ones after it alike.
    cancel_at_period_end(&app, &c).await;
    portal_action(&app, &c, "cancel_now", None).await;
    let me = app
        .wait_for(
            &c,
            |m| m["access"]["status"] == "canceled",
            "the cancellation",
        )
        .await;
    assert_eq!(me["access"]["plan"], "free");
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
    let paid_first = client()
        .post(&first)
        .form(&[("action", "pay")])
        .send()
        .await
        .unwrap();
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

/// Schedules `c`'s cancellation in the portal and waits until tollgate shows it; returns `/api/me`.
async fn cancel_at_period_end(app: &TestApp, c: &Client) -> Value {
    portal_action(app, c, "cancel_at_period_end", None).await;
    app.wait_for(
        c,
        |m| {
            m["access"]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("cancels")
        },
        "the scheduled cancellation",
    )
    .await
}

#[tokio::test]
async fn cancel_at_period_end_keeps_the_plan_until_the_clock_passes_the_end() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "team").await;

    let me = cancel_at_period_end(&app, &c).await;
    assert_eq!(
        me["access"]["plan"], "team",
        "still team until the period ends"
    );

    app.advance(31 * 86_400).await;

    // Free at once by the clock, then canceled when Stripe's event lands.
    assert_eq!(app.me(&c).await["access"]["plan"], "free");
    let me = app
        .wait_for(&c, |m| m["access"]["status"] == "canceled", "canceled")
        .await;
    assert_eq!(me["access"]["plan"], "free");
}

#[tokio::test]
async fn cancel_now_and_a_plan_switch_in_the_portal_follow_through() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "team").await;
    let pro_month = app.price_of("pro");

    portal_action(&app, &c, "switch", Some(&pro_month)).await;
    app.wait_for_plan(&c, Some("pro")).await;

    portal_action(&app, &c, "cancel_now", None).await;
    let me = app.wait_for_plan(&c, Some("free")).await;
    assert_eq!(me["access"]["status"], "canceled");
}

#[tokio::test]
async fn renewals_failed_payments_grace_and_recovery() {
    let app = TestApp::builder()
        .with("TOLLGATE_PAST_DUE_GRACE_SECS", "259200")
        .spawn()
        .await;
    let c = app.subscriber("ann@example.com", "team").await;
    let until = app.me(&c).await["access"]["until"].clone();

    // A paid renewal moves the period on.
    app.advance(31 * 86_400).await;
    app.wait_for(
        &c,
        |m| m["access"]["until"] != until && m["access"]["status"] == "active",
        "renewal",
    )
    .await;

    // The card starts failing: the next renewal makes the subscription past_due, in grace.
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let card = format!("/_sim/customers/{customer}/card");
    app.sim_control(&card, &json!({"failing": true})).await;
    app.advance(30 * 86_400).await;
    let me = app
        .wait_for(&c, |m| m["access"]["status"] == "past_due", "past_due")
        .await;
    assert_eq!(me["access"]["plan"], "team", "inside the grace period");
    assert!(
        me["access"]["reason"]
            .as_str()
            .unwrap()
            .contains("grace until")
    );

    // Past the grace period (3 days) the plan is gone, with nothing else happening.
    app.advance(4 * 86_400).await;
    assert_eq!(app.me(&c).await["access"]["plan"], "free");

    // The card is fixed; the next attempt succeeds and the plan is back.
    app.sim_control(&card, &json!({"failing": false})).await;
    app.advance(30 * 86_400).await;
    let me = app
        .wait_for(&c, |m| m["access"]["status"] == "active", "recovery")
        .await;
    assert_eq!(me["access"]["plan"], "team");
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
async fn webhook_signatures_are_verified_and_bad_ones_store_nothing() {
    let app = TestApp::builder()
        .with("STRIPE_WEBHOOK_SECRET", "whsec_current,whsec_previous")
        .spawn()
        .await;
    let body = json!({"id": "evt_sig", "type": "ping.test", "created": app.state.clock.now(), "data": {"object": {}}}).to_string();
    let now = app.state.clock.now();
    let good = sign("whsec_current", now, body.as_bytes());
    let cases: Vec<(Option<String>, &str, &str)> = vec![
        (None, &body, "missing header"),
        (Some("nonsense".into()), &body, "malformed header"),
        (
            Some(sign("whsec_wrong", now, body.as_bytes())),
            &body,
            "wrong secret",
        ),
        (
            Some(good.clone()),
            "{\"id\":\"evt_sig\",\"type\":\"x\"}",
            "altered body",
        ),
        (
            Some(sign("whsec_current", now - 360, body.as_bytes())),
            &body,
            "stale timestamp",
        ),
        (
            Some(sign("whsec_current", now + 360, body.as_bytes())),
            &body,
            "future timestamp",
        ),
    ];
    for (header, payload, why) in cases {
        let r = app.post_webhook(payload, header).await;
        assert_eq!(r.status(), 400, "{why}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "signature_invalid",
            "{why}"
        );
    }
    assert_eq!(app.count("stripe_events").await, 0, "nothing stored");

    let rotated = app
        .post_webhook(&body, Some(sign("whsec_previous", now, body.as_bytes())))
        .await;
    assert_eq!(rotated.status(), 200, "every configured secret is accepted");
    let v1 = good.split_once(",v1=").unwrap().1;
    let several = format!("t={now},v1={},v1={v1}", "0".repeat(64));
    let r = app
        .post_webhook(&body.replace("evt_sig", "evt_sig2"), Some(several.clone()))
        .await;
    assert_eq!(r.status(), 400, "a v1 for another body does not help");
    let r = app
        .post_webhook(
            &body,
            Some(format!("t={now},v1={},v1={v1}", "0".repeat(64))),
        )
        .await;
    assert_eq!(r.status(), 200, "any matching v1 among several");
}

#[tokio::test]
async fn duplicates_unknown_types_orphans_and_oversized_bodies() {
    let app = spawn_app().await;
    let now = app.state.clock.now();
    let unknown = json!({"id": "evt_u", "type": "radar.early_fraud_warning.created", "created": now, "data": {"object": {}}});
    assert_eq!(app.deliver(&unknown).await["outcome"], "ignored");
    assert_eq!(app.deliver(&unknown).await["outcome"], "duplicate");

    let orphan = json!({"id": "evt_o", "type": "customer.subscription.updated", "created": now, "data": {"object": {
        "id": "sub_orphan", "customer": "cus_nobody", "status": "active",
        "items": {"data": [{"price": {"id": "price_x"}, "current_period_end": now + 100}]}
    }}});
    assert_eq!(app.deliver(&orphan).await["outcome"], "orphan");
    assert_eq!(
        app.count("subscriptions").await,
        0,
        "never attached to a guess"
    );
    assert_eq!(app.count("stripe_events").await, 2);

    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let r = app.post_webhook(&huge, Some("t=1,v1=00".into())).await;
    assert_eq!(r.status(), 413);
}

/// A small deterministic generator of indexes below `n` (xorshift), for permutations with
/// duplicates without an external crate.
pub fn index_source(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}

/// The events of one subscription's life, oldest first, for a customer mapped to a user. Its
/// first item is an add-on the catalog does not know; the plan is the second.
pub fn life_of(sub: &str, customer: &str, price: &str, t0: i64) -> Vec<Value> {
    let state = |status: &str, cancel: bool, end: i64| {
        json!({"id": sub, "object": "subscription", "customer": customer, "status": status,
               "cancel_at_period_end": cancel, "cancel_at": if cancel { json!(end) } else { Value::Null },
               "items": {"data": [
                   {"price": {"id": "price_addon"}, "quantity": 2, "current_period_end": end},
                   {"price": {"id": price}, "quantity": 1, "current_period_end": end}]}})
    };
    let event = |n: usize, kind: &str, object: Value| {
        json!({"id": format!("evt_{sub}_{n}"), "object": "event", "type": kind, "created": t0 + n as i64 * 10,
               "data": {"object": object}})
    };
    vec![
        event(
            0,
            "customer.subscription.created",
            state("trialing", false, t0 + 100),
        ),
        event(
            1,
            "customer.subscription.updated",
            state("active", false, t0 + 200),
        ),
        event(
            2,
            "invoice.payment_failed",
            json!({"id": "in_1", "customer": customer, "parent": {"subscription_details": {"subscription": sub}}}),
        ),
        event(
            3,
            "customer.subscription.updated",
            state("past_due", false, t0 + 300),
        ),
        event(
            4,
            "customer.subscription.updated",
            state("active", true, t0 + 400),
        ),
        event(
            5,
            "customer.subscription.deleted",
            state("canceled", true, t0 + 400),
        ),
    ]
}

async fn row_of(app: &TestApp, sub: &str) -> Value {
    let row: (String, Option<String>, Option<i64>, i64, Option<i64>, i64) = sqlx::query_as(
        "SELECT status, plan_id, current_period_end, cancel_at_period_end, past_due_since, stripe_updated \
         FROM subscriptions WHERE id = $1",
    )
    .bind(sub)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    json!([row.0, row.1, row.2, row.3, row.4, row.5])
}

/// Maps a fresh user to `customer`, as a finished checkout would have; returns the user id.
async fn map_customer(app: &TestApp, email: &str, customer: &str) -> String {
    let c = app.user(email).await;
    app.map_customer_of(&c, customer).await
}

#[tokio::test]
async fn shuffled_duplicated_and_late_streams_converge_to_the_in_order_row() {
    let app = spawn_app().await;
    let price = app.price_of("pro");
    let t0 = app.state.clock.now() - 1_000;
    map_customer(&app, "inorder@example.com", "cus_inorder").await;
    for event in life_of("sub_inorder", "cus_inorder", &price, t0) {
        app.deliver(&event).await;
    }
    let expected = row_of(&app, "sub_inorder").await;
    assert_eq!(expected[0], "canceled");
    assert_eq!(expected[1], "pro", "the plan's item, not the add-on");
    assert!(
        expected[4].is_null(),
        "leaving past_due ends the episode: {expected}"
    );

    let mut next = index_source(0x5eed_1234_abcd_ef01);
    for round in 0..12 {
        let (sub, customer) = (format!("sub_r{round}"), format!("cus_r{round}"));
        map_customer(&app, &format!("r{round}@example.com"), &customer).await;
        let mut stream = life_of(&sub, &customer, &price, t0);
        for _ in 0..3 {
            let dup = stream[next(stream.len())].clone();
            stream.push(dup);
        }
        for i in (1..stream.len()).rev() {
            stream.swap(i, next(i + 1));
        }
        for event in &stream {
            app.deliver(event).await;
        }
        // past_due_since too: whichever failure sign arrived first, the terminal state clears it.
        assert_eq!(
            row_of(&app, &sub).await,
            expected,
            "round {round}: {:?}",
            stream.iter().map(|e| e["id"].clone()).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn two_instances_on_one_database_apply_each_event_once() {
    let first = spawn_app().await;
    let second = first.second_instance().await;
    let price = first.price_of("pro");
    map_customer(&first, "twice@example.com", "cus_twice").await;
    let stream = life_of(
        "sub_twice",
        "cus_twice",
        &price,
        first.state.clock.now() - 1_000,
    );

    let mut set = tokio::task::JoinSet::new();
    for event in stream.iter().chain(stream.iter()) {
        for app in [
            first.url("/webhooks/stripe"),
            second.url("/webhooks/stripe"),
        ] {
            let body = event.to_string();
            let sig = sign(
                first.state.stripe.webhook_secrets[0].expose(),
                first.state.clock.now(),
                body.as_bytes(),
            );
            set.spawn(async move {
                let r = client()
                    .post(app)
                    .header("stripe-signature", sig)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.unwrap()["outcome"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            });
        }
    }
    let outcomes = set.join_all().await;

    let processed = outcomes.iter().filter(|o| *o != "duplicate").count();
    assert_eq!(
        processed,
        stream.len(),
        "each event processed exactly once: {outcomes:?}"
    );
    assert_eq!(first.count("stripe_events").await, stream.len() as i64);
    assert_eq!(row_of(&first, "sub_twice").await[0], "canceled");
}

#[tokio::test]
async fn customer_deleted_unmaps_the_customer_and_cancels_its_subscriptions() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "team").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();

    app.delete_in_stripe(&customer).await;

    app.wait_for_plan(&c, Some("free")).await;
    // customer.deleted and customer.subscription.deleted are separate deliveries in no fixed
    // order: the plan may drop on the second before the first is applied.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let deleted: (i64,) =
            sqlx::query_as("SELECT deleted FROM billing_customers WHERE stripe_customer_id = $1")
                .bind(&customer)
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        if deleted.0 == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the customer is not marked deleted 10 s after its deletion"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let portal = app.try_portal(&c).await;
    assert_eq!(portal.status(), 409, "no customer any more");
    assert_eq!(error_of(portal).await, "no_customer");
    let canceled: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM subscriptions WHERE customer_id = $1 AND status <> 'canceled'",
    )
    .bind(&customer)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(
        canceled.0, 0,
        "every subscription of the customer is canceled"
    );
}

#[tokio::test]
async fn chaos_delivery_still_converges() {
    // Stripe's clock need not agree with tollgate's: ahead, behind, or not at all, and by more
    // than any fixed allowance.
    for skew in [0, 3, -3, 10, -10] {
        let app = spawn_app().await;
        app.sim_control("/_sim/clock/skew", &json!({"seconds": skew}))
            .await;
        app.sim_control(
            "/_sim/chaos",
            &json!({"duplicate": true, "reorder": true, "max_delay_ms": 30}),
        )
        .await;
        let c = app.subscriber("ann@example.com", "team").await;
        portal_action(&app, &c, "cancel_at_period_end", None).await;
        // States fetched from Stripe land among the events still arriving: the success page's
        // and the checkout guard's kind, through `stripe sync`.
        tollgate::billing::sync::reconcile(&app.state, true)
            .await
            .unwrap();
        let again = app.try_checkout(&c, "pro", "month").await;
        assert_eq!(again.status(), 409, "skew {skew}: already subscribed");
        app.advance(31 * 86_400).await;
        let me = app
            .wait_for(&c, |m| m["access"]["status"] == "canceled", "canceled")
            .await;
        assert_eq!(me["access"]["plan"], "free", "skew {skew}");
    }
}

#[tokio::test]
async fn plans_are_published_from_the_catalog() {
    let app = spawn_app().await;
    let plans: Value = app.get("/api/plans").await.json().await.unwrap();
    let ids: Vec<&str> = plans["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["free", "pro", "team"]);
    assert_eq!(
        plans["plans"][1]["prices"]["month"],
        json!({"amount": 1900, "currency": "usd"})
    );
    assert_eq!(plans["plans"][1]["trial_days"], 14);
    assert!(
        plans.to_string().find("price_").is_none(),
        "Stripe price ids are not published"
    );
}

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
    // Edits from outside the app, like another instance's: its cached copy may live that long.
    tokio::time::sleep(tollgate::cache::TTL).await;
    assert_eq!(
        app.me(&c).await["access"]["plan"],
        "team",
        "the ghost grants team (the real row is canceled now)"
    );

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
async fn every_recorded_event_is_accepted_and_applied() {
    let app = spawn_app().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/webhooks");
    let mut events: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (
                name,
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    events.sort_by_key(|(_, e)| (e["created"].as_i64(), e["type"] == "customer.deleted"));
    assert!(events.len() >= 13, "one file per handled type");
    let mut customers: Vec<String> = events
        .iter()
        .filter_map(|(_, e)| {
            let o = &e["data"]["object"];
            o["customer"]
                .as_str()
                .or(o["id"].as_str().filter(|id| id.starts_with("cus_")))
                .map(str::to_owned)
        })
        .collect();
    customers.sort();
    customers.dedup();
    let mut users = std::collections::HashMap::new();
    for (i, customer) in customers.iter().enumerate() {
        let user = map_customer(&app, &format!("recorded{i}@example.com"), customer).await;
        users.insert(customer.clone(), user);
    }

    for (name, event) in &mut events {
        // Checkout names the user who started it: point it at the user mapped here.
        if let Some(customer) = event["data"]["object"]["customer"]
            .as_str()
            .map(str::to_owned)
            && event["data"]["object"].get("client_reference_id").is_some()
        {
            event["data"]["object"]["client_reference_id"] = json!(users[&customer]);
        }
        assert_eq!(&event["type"], name, "file name matches the type");
        let outcome = app.deliver(event).await["outcome"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            ["applied", "recorded", "refetched", "stale"].contains(&outcome.as_str()),
            "{name}: {outcome}"
        );
    }
    assert!(app.count("subscriptions").await >= 1);
    // The recorded customer.updated changed the customer's email in Stripe; logins keep theirs.
    let (changed,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM users WHERE email_norm NOT LIKE 'recorded%@example.com'",
    )
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(changed, 0, "Stripe never changes a user's email");
}

#[tokio::test]
async fn the_simulator_dev_page_moves_the_shared_clock() {
    let app = spawn_app().await;
    let before = app.state.clock.now();
    let page = client().get(app.sim_url("/_sim/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Simulated date"));

    let r = client()
        .post(app.sim_url("/_sim/"))
        .form(&[("days", "31")])
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 303);
    assert!(
        app.state.clock.now() - before >= 31 * 86_400,
        "tollgate's clock moved too"
    );
}

#[tokio::test]
async fn webhooks_answer_5xx_when_the_database_is_down_so_stripe_retries() {
    let app = spawn_app().await;
    let event = json!({"id": "evt_db_down", "type": "invoice.paid", "created": app.state.clock.now(), "data": {"object": {}}});
    let body = event.to_string();
    let secret = app.state.stripe.webhook_secrets[0].expose().to_owned();
    match app.db.engine() {
        tollgate::db::Engine::Postgres => app.db.drop_now().await,
        tollgate::db::Engine::Sqlite => app.state.db.close().await,
    }

    let r = app
        .post_webhook(
            &body,
            Some(sign(&secret, app.state.clock.now(), body.as_bytes())),
        )
        .await;

    assert!(r.status().is_server_error(), "{}", r.status());
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
