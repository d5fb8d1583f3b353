//! Billing against a simulator as strict as Stripe: slow webhooks, in-flight idempotency keys,
//! deleted customers, hanging calls and failed re-fetches. Each test names the Stripe behaviour it
//! stands for.

use serde_json::{Value, json};

use crate::helpers::{TestApp, client, error_of, spawn_app};

impl TestApp {
    /// The customer's subscriptions as Stripe lists them (`status=all`).
    pub async fn stripe_subscriptions(&self, customer: &str) -> Vec<Value> {
        self.stripe_get(&format!(
            "/v1/subscriptions?customer={customer}&status=all&limit=100"
        ))
        .await["data"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// POSTs a form to the simulator's Stripe API with the test key; panics unless 2xx.
    pub async fn stripe_post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let r = client()
            .post(self.sim_url(path))
            .bearer_auth("sk_test_x")
            .form(form)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "POST {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Deletes `customer` in the simulator, as the Stripe dashboard would.
    pub async fn delete_in_stripe(&self, customer: &str) {
        let r = client()
            .delete(self.sim_url(&format!("/v1/customers/{customer}")))
            .bearer_auth("sk_test_x")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// Waits (10 s deadline) until every event the simulator sent has been stored by tollgate,
    /// so that nothing lands later.
    pub async fn wait_for_webhooks(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let sent = client()
                .get(self.sim_url("/_sim/events"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["data"]
                .as_array()
                .unwrap()
                .len() as i64;
            let stored = self.count("stripe_events").await;
            if stored >= sent {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{stored} of {sent} events stored"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Holds (or releases) every webhook the simulator sends: webhooks that are slow to land.
    pub async fn hold_webhooks(&self, hold: bool) {
        self.sim_control("/_sim/chaos", &json!({"hold": hold}))
            .await;
    }
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
async fn the_simulator_pages_subscription_lists_like_stripe() {
    let app = spawn_app().await;
    for n in 0..3 {
        let c = app.user(&format!("u{n}@example.com")).await;
        let url = app.checkout(&c, "pro", "month").await;
        app.pay(&url).await;
    }
    let first = app.stripe_get("/v1/subscriptions?limit=2").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["has_more"], true);
    let last = first["data"][1]["id"].as_str().unwrap();
    let rest = app
        .stripe_get(&format!("/v1/subscriptions?limit=2&starting_after={last}"))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["has_more"], false);
    let bad = client()
        .get(app.sim_url("/v1/subscriptions?limit=101"))
        .bearer_auth("sk_test_x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "Stripe caps limit at 100");
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
async fn the_simulator_answers_409_to_a_key_whose_first_request_is_in_flight() {
    let app = spawn_app().await;
    app.sim_control("/_sim/latency", &json!({"ms": 300})).await;
    let post = || {
        client()
            .post(app.sim_url("/v1/customers"))
            .bearer_auth("sk_test_x")
            .header("idempotency-key", "same-key")
            .form(&[("email", "x@example.com")])
            .send()
    };

    let (a, b) = tokio::join!(post(), post());

    let mut answers = [a.unwrap(), b.unwrap()];
    answers.sort_by_key(|r| r.status());
    assert_eq!(answers[0].status(), 200);
    assert_eq!(answers[1].status(), 409);
    let [_, conflict] = answers;
    let body: Value = conflict.json().await.unwrap();
    assert_eq!(body["error"]["type"], "idempotency_error");
}

/// POSTs `form` to the simulator's `path` with `Idempotency-Key: key`.
async fn post_with_key(
    app: &TestApp,
    path: &str,
    key: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client()
        .post(app.sim_url(path))
        .bearer_auth("sk_test_x")
        .header("idempotency-key", key)
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_simulator_keeps_idempotency_keys_as_stripe_does() {
    let app = spawn_app().await;
    let ann = [("email", "ann@example.com")];

    // The same request replays the first answer.
    let first = post_with_key(&app, "/v1/customers", "k1", &ann).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let again = post_with_key(&app, "/v1/customers", "k1", &ann).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);

    // Other parameters, or another endpoint, with that key are refused.
    let other = post_with_key(&app, "/v1/customers", "k1", &[("email", "bob@example.com")]).await;
    assert_eq!(other.status(), 400);
    assert_eq!(
        other.json::<Value>().await.unwrap()["error"]["type"],
        "idempotency_error"
    );
    let elsewhere = post_with_key(&app, "/v1/checkout/sessions", "k1", &ann).await;
    assert_eq!(elsewhere.status(), 400);
    assert_eq!(
        elsewhere.json::<Value>().await.unwrap()["error"]["type"],
        "idempotency_error"
    );

    // A request refused for its parameters saves nothing: the key is free for a good one.
    let bad = post_with_key(&app, "/v1/checkout/sessions", "k2", &[("mode", "payment")]).await;
    assert_eq!(bad.status(), 400);
    let good = post_with_key(&app, "/v1/customers", "k2", &ann).await;
    assert_eq!(
        good.status(),
        200,
        "the key was not kept for the refused request"
    );

    // A failure once the call began is the key's answer: replayed to a retry with the key.
    app.sim_control("/_sim/fail", &json!({"calls": 1})).await;
    let failed = post_with_key(&app, "/v1/customers", "k3", &ann).await;
    assert_eq!(failed.status(), 500);
    let replayed = post_with_key(&app, "/v1/customers", "k3", &ann).await;
    assert_eq!(replayed.status(), 500, "a 5xx is kept for its key");
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");

    // Keys last 24 hours of Stripe's clock.
    app.sim_control("/_sim/clock/advance", &json!({"seconds": 24 * 3600}))
        .await;
    let later = post_with_key(&app, "/v1/customers", "k1", &[("email", "bob@example.com")]).await;
    assert_eq!(later.status(), 200, "an expired key starts afresh");
    assert!(later.headers().get("idempotent-replayed").is_none());
    assert_ne!(later.json::<Value>().await.unwrap()["id"], first["id"]);
}

#[tokio::test]
async fn a_stripe_5xx_is_retried_under_a_fresh_key_since_stripe_replays_it_to_the_same_key() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let one_keyed_call = json!({"calls": 1, "keyed_only": true});
    let fail_one_keyed_call = || app.sim_control("/_sim/fail", &one_keyed_call);
    // The first keyed call of the checkout (creating the customer) fails once it has begun.
    fail_one_keyed_call().await;
    let url = app.checkout(&c, "pro", "month").await;
    assert!(url.starts_with(&app.sim_url("/checkout/")), "{url}");
    let user = app.me(&c).await["id"].as_str().unwrap().to_owned();
    let found = app
        .stripe_get(&format!(
            "/v1/customers/search?query=metadata['tollgate_user_id']:'{user}'"
        ))
        .await;
    assert_eq!(
        found["data"].as_array().unwrap().len(),
        1,
        "one customer: {found}"
    );

    // The same for an expiry (a checkout for another plan) and a cancellation (account deletion).
    fail_one_keyed_call().await;
    let switched = app.try_checkout(&c, "team", "month").await;
    assert_eq!(
        switched.status(),
        200,
        "the expiry was retried under a fresh key"
    );
    let first = app
        .stripe_get(&format!(
            "/v1/checkout/sessions/{}",
            url.rsplit('/').next().unwrap()
        ))
        .await;
    assert_eq!(first["status"], "expired");
    let team: Value = switched.json().await.unwrap();
    let paid = app.pay(team["url"].as_str().unwrap()).await;
    assert!(paid.contains("session_id="));
    app.wait_for_plan(&c, Some("team")).await;
    fail_one_keyed_call().await;
    let deleted = app
        .post_json_with(
            &c,
            "/api/account/delete",
            &json!({"password": crate::helpers::PASSWORD}),
        )
        .await;
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let customer_subs = app
        .stripe_get(&format!(
            "/v1/subscriptions?customer={}&status=active",
            found["data"][0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        customer_subs["data"].as_array().unwrap().len(),
        0,
        "canceled in Stripe"
    );
}

#[tokio::test]
async fn the_simulator_refuses_a_lookup_key_another_price_holds_unless_it_is_transferred() {
    let app = spawn_app().await;
    let form = |transfer: bool| {
        let mut f = vec![
            ("product_data[name]", "Pro"),
            ("unit_amount", "1900"),
            ("currency", "usd"),
            ("recurring[interval]", "month"),
            ("lookup_key", "pro_month"),
        ];
        if transfer {
            f.push(("transfer_lookup_key", "true"));
        }
        f
    };
    // The demo catalog's pro monthly price holds `pro_month` already.
    let holder = app.price_of("pro");
    let r = client()
        .post(app.sim_url("/v1/prices"))
        .bearer_auth("sk_test_x")
        .form(&form(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["param"],
        "lookup_key"
    );

    let moved = app.stripe_post("/v1/prices", &form(true)).await;
    assert_eq!(moved["lookup_key"], "pro_month");
    let old = app.stripe_get(&format!("/v1/prices/{holder}")).await;
    assert_eq!(old["lookup_key"], Value::Null, "the key moved");
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

/// The subscription of the user registered as `email` (its one row) and its stamp, once every
/// event the simulator sent has landed and the row has stopped moving (an event's follow-up, a
/// re-fetch, may still be applying just after the event is stored).
async fn subscription_of(app: &TestApp, email: &str) -> (String, i64) {
    app.wait_for_webhooks().await;
    let read = || async {
        sqlx::query_as::<_, (String, i64, i64)>(
            "SELECT s.id, s.stripe_updated, s.updated_at FROM subscriptions s \
             JOIN users u ON u.id = s.user_id WHERE u.email_norm = $1",
        )
        .bind(email)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
    };
    let mut last = read().await;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let now = read().await;
        if now == last {
            return (now.0, now.1);
        }
        last = now;
    }
}

#[tokio::test]
async fn a_tie_whose_refetch_fails_is_not_acknowledged_and_is_resolved_on_redelivery() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "pro").await;
    let (sub, stamp) = subscription_of(&app, "ann@example.com").await;
    let mut object = app.stripe_get(&format!("/v1/subscriptions/{sub}")).await;
    let truth = object["status"].clone();
    object["status"] = json!("past_due");
    // Same second as the row: a tie only Stripe can settle.
    let tie = json!({"id": "evt_tie", "object": "event", "type": "customer.subscription.updated",
                     "created": stamp, "data": {"object": object}});
    app.sim_control("/_sim/outage", &json!({"on": true})).await;

    let refused = app.try_deliver(&tie).await;

    assert_eq!(refused.status(), 503, "Stripe must redeliver");
    assert_eq!(error_of(refused).await, "payment_provider_unavailable");
    app.sim_control("/_sim/outage", &json!({"on": false})).await;
    let redelivered = app.deliver(&tie).await;
    assert_eq!(
        redelivered["outcome"], "refetched",
        "processed, not a duplicate"
    );
    let me = app.me(&c).await;
    assert_eq!(me["access"]["status"], truth, "Stripe's state won: {me}");
}

#[tokio::test]
async fn the_simulator_answers_for_a_deleted_customer_as_stripe_does() {
    let app = spawn_app().await;
    let customer = app
        .stripe_post("/v1/customers", &[("email", "x@example.com")])
        .await;
    let id = customer["id"].as_str().unwrap();
    app.delete_in_stripe(id).await;

    let got = app.stripe_get(&format!("/v1/customers/{id}")).await;
    assert_eq!(
        got,
        json!({"id": id, "object": "customer", "deleted": true})
    );
    let session = client()
        .post(app.sim_url("/v1/checkout/sessions"))
        .bearer_auth("sk_test_x")
        .form(&[
            ("mode", "subscription"),
            ("customer", id),
            ("line_items[0][price]", &app.price_of("pro")),
            ("success_url", "http://example.com/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 404);
    let body: Value = session.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resource_missing");
    assert_eq!(body["error"]["param"], "customer");
}

#[tokio::test]
async fn a_deleted_customer_is_never_reused_whether_its_event_landed_or_not() {
    for event_landed in [true, false] {
        let app = spawn_app().await;
        let c = app.user("ann@example.com").await;
        app.checkout(&c, "pro", "month").await;
        let old = app.customer_of("ann@example.com").await.unwrap();
        app.hold_webhooks(!event_landed).await;
        app.delete_in_stripe(&old).await;
        if event_landed {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while customers_deleted(&app).await == 0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "customer.deleted not applied"
                );
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        }

        let url = app.checkout(&c, "team", "month").await;

        let new = app.customer_of("ann@example.com").await.unwrap();
        assert_ne!(new, old, "event landed: {event_landed}");
        let session = url.rsplit('/').next().unwrap();
        let session = app
            .stripe_get(&format!("/v1/checkout/sessions/{session}"))
            .await;
        assert_eq!(session["customer"], new.as_str());
        app.hold_webhooks(false).await;
        app.pay(&url).await;
        app.wait_for_plan(&c, Some("team")).await;
    }
}

async fn customers_deleted(app: &TestApp) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM billing_customers WHERE deleted = 1")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    n
}

impl TestApp {
    /// Deletes the account signed in on `c`; panics unless 204.
    pub async fn delete_account(&self, c: &reqwest::Client) {
        let r = self.try_delete_account(c).await;
        assert_eq!(r.status(), 204, "account deleted");
    }

    /// `POST /api/account/delete` with the right password, whatever the answer.
    pub async fn try_delete_account(&self, c: &reqwest::Client) -> reqwest::Response {
        self.post_json_with(
            c,
            "/api/account/delete",
            &json!({"password": crate::helpers::PASSWORD}),
        )
        .await
    }

    /// Pays for `plan` for `customer` directly in Stripe (a dashboard sale, or a session tollgate
    /// has not heard of yet); returns the subscription id.
    pub async fn subscribe_in_stripe(&self, customer: &str, plan: &str) -> String {
        self.subscribe_to_prices(customer, &[(&self.price_of(plan), 1)])
            .await
    }

    /// Pays for `items` (price id, quantity) for `customer` through a Checkout Session made
    /// directly in Stripe; returns the subscription id.
    pub async fn subscribe_to_prices(&self, customer: &str, items: &[(&str, i64)]) -> String {
        let mut form = vec![
            ("mode".to_owned(), "subscription".to_owned()),
            ("customer".to_owned(), customer.to_owned()),
            ("success_url".to_owned(), "http://example.com/".to_owned()),
        ];
        for (i, (price, quantity)) in items.iter().enumerate() {
            form.push((format!("line_items[{i}][price]"), (*price).to_owned()));
            form.push((format!("line_items[{i}][quantity]"), quantity.to_string()));
        }
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let session = self.stripe_post("/v1/checkout/sessions", &form).await;
        self.pay(session["url"].as_str().unwrap()).await;
        let id = session["id"].as_str().unwrap();
        self.stripe_get(&format!("/v1/checkout/sessions/{id}"))
            .await["subscription"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

#[tokio::test]
async fn account_deletion_expires_open_sessions_and_cancels_what_stripe_lists() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "pro").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    app.hold_webhooks(true).await;
    let unknown = app.subscribe_in_stripe(&customer, "team").await;
    // A row Stripe never heard of: canceling it there answers resource_missing.
    let user = app.me(&c).await["id"].as_str().unwrap().to_owned();
    app.insert_ghost_subscription(&user, &customer).await;

    app.delete_account(&c).await;

    let listed = app.stripe_subscriptions(&customer).await;
    assert_eq!(listed.len(), 2, "the paid one and the one unknown here");
    assert!(listed.iter().any(|s| s["id"] == unknown.as_str()));
    for sub in listed {
        assert_eq!(
            sub["status"], "canceled",
            "{} ({unknown} unknown here)",
            sub["id"]
        );
    }
}

#[tokio::test]
async fn the_simulator_never_charges_a_deleted_customer_through_an_open_session() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "pro", "month").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let deleted = client()
        .delete(app.sim_url(&format!("/v1/customers/{customer}")))
        .bearer_auth("sk_test_simulator")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let paid = client()
        .post(&url)
        .form(&[("action", "pay")])
        .send()
        .await
        .unwrap();
    assert_ne!(
        paid.status(),
        303,
        "a deleted customer's session cannot be paid"
    );
    assert!(app.stripe_subscriptions(&customer).await.is_empty());
}

#[tokio::test]
async fn account_deletion_expires_the_open_checkout_session() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "pro", "month").await;

    app.delete_account(&c).await;

    let id = url.rsplit('/').next().unwrap();
    let session = app.stripe_get(&format!("/v1/checkout/sessions/{id}")).await;
    assert_eq!(session["status"], "expired");
}

#[tokio::test]
async fn a_subscription_appearing_later_for_a_deleted_account_is_canceled_in_stripe() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.checkout(&c, "pro", "month").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    app.delete_account(&c).await;

    let late = app.subscribe_in_stripe(&customer, "team").await;

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let outcome: Option<(String,)> = sqlx::query_as(
            "SELECT outcome FROM stripe_events WHERE type = 'customer.subscription.created'",
        )
        .fetch_optional(&app.state.db.pool)
        .await
        .unwrap();
        if outcome.is_some_and(|o| o.0 == "orphan_canceled") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not canceled 10 s later"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let sub = app.stripe_get(&format!("/v1/subscriptions/{late}")).await;
    assert_eq!(sub["status"], "canceled");
}

#[tokio::test]
async fn a_hanging_stripe_gets_a_json_503_within_15_seconds_at_checkout_portal_and_deletion() {
    let app = spawn_app().await;
    let buyer = app.user("buyer@example.com").await;
    let customer = app.user("customer@example.com").await;
    app.checkout(&customer, "pro", "month").await;
    let leaver = app.user("leaver@example.com").await;
    app.checkout(&leaver, "pro", "month").await;
    app.sim_control("/_sim/latency", &json!({"ms": 120_000}))
        .await;

    let answers = tokio::join!(
        timed(app.try_checkout(&buyer, "pro", "month")),
        timed(app.try_portal(&customer)),
        timed(app.try_delete_account(&leaver)),
    );

    for (what, (took, status, code)) in [
        ("checkout", answers.0),
        ("portal", answers.1),
        ("deletion", answers.2),
    ] {
        assert_eq!(
            (status, code.as_str()),
            (503, "payment_provider_unavailable"),
            "{what}"
        );
        assert!(
            took < std::time::Duration::from_secs(15),
            "{what} took {took:?}"
        );
    }
}

/// How long `request` took, its status and its error code.
async fn timed(
    request: impl std::future::Future<Output = reqwest::Response>,
) -> (std::time::Duration, u16, String) {
    let started = std::time::Instant::now();
    let r = request.await;
    (started.elapsed(), r.status().as_u16(), error_of(r).await)
}

/// A `customer.subscription.*` or `invoice.payment_failed` event for `sub` of `customer`.
fn sub_event(id: &str, kind: &str, created: i64, sub: &str, customer: &str, status: &str) -> Value {
    let object = if kind.starts_with("invoice.") {
        json!({"id": format!("in_{id}"), "object": "invoice", "customer": customer,
               "parent": {"subscription_details": {"subscription": sub}}})
    } else {
        json!({"id": sub, "object": "subscription", "customer": customer, "status": status,
               "items": {"data": [{"price": {"id": "price_x"}, "quantity": 1, "current_period_end": created + 1_000}]}})
    };
    json!({"id": id, "object": "event", "type": kind, "created": created, "data": {"object": object}})
}

#[tokio::test]
async fn a_late_payment_failure_that_predates_the_state_starts_no_grace_period() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.map_customer_of(&c, "cus_grace").await;
    let t0 = app.state.clock.now() - 1_000;
    let updated = "customer.subscription.updated";
    let stream = [
        sub_event(
            "evt_1",
            "customer.subscription.created",
            t0,
            "sub_grace",
            "cus_grace",
            "active",
        ),
        sub_event(
            "evt_2",
            "invoice.payment_failed",
            t0 + 10,
            "sub_grace",
            "cus_grace",
            "",
        ),
        sub_event(
            "evt_3",
            updated,
            t0 + 20,
            "sub_grace",
            "cus_grace",
            "past_due",
        ),
        sub_event(
            "evt_4",
            updated,
            t0 + 30,
            "sub_grace",
            "cus_grace",
            "active",
        ),
        // Late: an older failure (another retry's invoice) delivered after the recovery.
        sub_event(
            "evt_5",
            "invoice.payment_failed",
            t0 + 15,
            "sub_grace",
            "cus_grace",
            "",
        ),
        sub_event(
            "evt_6",
            updated,
            t0 + 40,
            "sub_grace",
            "cus_grace",
            "past_due",
        ),
    ];
    for event in &stream {
        app.deliver(event).await;
    }

    let (since,): (Option<i64>,) =
        sqlx::query_as("SELECT past_due_since FROM subscriptions WHERE id = 'sub_grace'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(
        since,
        Some(t0 + 40),
        "the new episode starts at its own state"
    );
}

impl TestApp {
    /// This app started again on its database with the catalog `text` (`TOLLGATE_PLANS`).
    pub async fn restarted_with_catalog(&self, text: &str) -> TestApp {
        let path =
            std::env::temp_dir().join(format!("tollgate-catalog-{}.toml", rand::random::<u64>()));
        std::fs::write(&path, text).unwrap();
        let restarted = TestApp::builder()
            .on_db(self.db.clone())
            .with("TOLLGATE_PLANS", path.to_str().unwrap())
            .spawn()
            .await;
        let _ = std::fs::remove_file(&path);
        restarted
    }

    /// Creates a monthly price in the simulator (an add-on, or a new catalog price); returns its id.
    pub async fn new_price(&self, name: &str, amount: i64) -> String {
        let price = self
            .stripe_post(
                "/v1/prices",
                &[
                    ("product_data[name]", name),
                    ("unit_amount", &amount.to_string()),
                    ("currency", "usd"),
                    ("recurring[interval]", "month"),
                ],
            )
            .await;
        price["id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn the_plan_of_a_multi_item_subscription_is_its_highest_catalog_tier() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.checkout(&c, "pro", "month").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let addon = app.new_price("Extra storage", 500).await;
    let (pro, team) = (app.price_of("pro"), app.price_of("team"));
    // The add-on comes first: the first item is not the plan.
    app.subscribe_to_prices(&customer, &[(&addon, 1), (&pro, 1), (&team, 3)])
        .await;

    app.wait_for_plan(&c, Some("team")).await;
    let (price, quantity): (String, i64) =
        sqlx::query_as("SELECT price_id, quantity FROM subscriptions")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!((price, quantity), (team, 3));
}

/// A user subscribed (through Stripe) to a new monthly price, on a product of its own, that the
/// catalog does not name; asserts it grants nothing yet. Returns the client, the price and its
/// product.
async fn on_a_price_the_catalog_does_not_name(
    app: &TestApp,
    name: &str,
    amount: i64,
) -> (reqwest::Client, String, String) {
    let c = app.user("ann@example.com").await;
    app.checkout(&c, "pro", "month").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let price = app.new_price(name, amount).await;
    let product = app.stripe_get(&format!("/v1/prices/{price}")).await["product"]
        .as_str()
        .unwrap()
        .to_owned();
    app.subscribe_to_prices(&customer, &[(&price, 1)]).await;
    app.wait_for(
        &c,
        |m| m["access"]["status"] == "active",
        "the subscription",
    )
    .await;
    assert_eq!(
        app.me(&c).await["access"]["plan"],
        "free",
        "an unknown price"
    );
    (c, price, product)
}

#[tokio::test]
async fn a_price_added_to_legacy_prices_grants_its_plan_to_existing_subscribers_at_once() {
    let app = spawn_app().await;
    let (c, old, _) = on_a_price_the_catalog_does_not_name(&app, "Pro (2019)", 900).await;

    let catalog = tollgate::billing::catalog::DEMO.replacen(
        "id = \"pro\"\nname = \"Pro\"\ntier = 1\n",
        &format!("id = \"pro\"\nname = \"Pro\"\ntier = 1\nlegacy_prices = [\"{old}\"]\n"),
        1,
    );
    let restarted = app.restarted_with_catalog(&catalog).await;

    assert_eq!(restarted.me(&c).await["access"]["plan"], "pro");
}

#[tokio::test]
async fn a_product_mapped_in_the_catalog_grants_its_plan_to_subscribers_of_any_of_its_prices() {
    let app = spawn_app().await;
    // Say, a price made for one customer in the Dashboard.
    let (c, price_id, product) =
        on_a_price_the_catalog_does_not_name(&app, "Team (negotiated)", 4200).await;

    let catalog = tollgate::billing::catalog::DEMO.replacen(
        "id = \"team\"\nname = \"Team\"\ntier = 2\n",
        &format!("id = \"team\"\nname = \"Team\"\ntier = 2\nproducts = [\"{product}\"]\n"),
        1,
    );
    assert!(
        catalog.contains(&product),
        "the demo catalog's team plan was found"
    );
    let restarted = app.restarted_with_catalog(&catalog).await;

    assert_eq!(restarted.me(&c).await["access"]["plan"], "team");
    let (plan, stored_product): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT plan_id, product_id FROM subscriptions WHERE price_id = $1")
            .bind(&price_id)
            .fetch_one(&restarted.state.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (plan.as_deref(), stored_product.as_deref()),
        (Some("team"), Some(product.as_str())),
        "the stored plan follows too (reports and sync show it)"
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
async fn a_refetched_tie_wins_over_its_row_and_loses_to_a_later_event_whatever_the_skew() {
    for skew in [3, -3] {
        let app = spawn_app().await;
        app.sim_control("/_sim/clock/skew", &json!({"seconds": skew}))
            .await;
        let c = app.subscriber("ann@example.com", "team").await;
        let (sub, stamp) = subscription_of(&app, "ann@example.com").await;
        let customer = app.customer_of("ann@example.com").await.unwrap();
        let truth = app.stripe_get(&format!("/v1/subscriptions/{sub}")).await;
        let at = |kind: &str, n: i64, status: &str| {
            let mut e = sub_event(
                &format!("evt_skew_{n}_{status}"),
                kind,
                stamp + n,
                &sub,
                &customer,
                status,
            );
            e["data"]["object"]["items"] = truth["items"].clone();
            e
        };
        let updated = "customer.subscription.updated";

        // A wrong state, then the true one in the same second: a tie Stripe settles.
        app.deliver(&at(updated, 1, "past_due")).await;
        let tie = app.deliver(&at(updated, 1, "active")).await;
        assert_eq!(tie["outcome"], "refetched", "skew {skew}");
        let me = app.me(&c).await;
        assert_eq!(
            me["access"]["status"], "active",
            "skew {skew}: the fetched state wins its tie"
        );

        // A later event (one second on, by Stripe's clock) still beats what was fetched.
        app.deliver(&at(updated, 2, "past_due")).await;
        let me = app.me(&c).await;
        assert_eq!(
            me["access"]["status"], "past_due",
            "skew {skew}: the later event wins"
        );
    }
}

#[tokio::test]
async fn a_fetched_state_wins_over_its_row_and_loses_to_a_later_event_however_far_the_clocks_differ()
 {
    // Beyond the 5 s the earlier rule assumed, both ways: Stripe's clock 10 s ahead, and 10 s
    // behind (tollgate's ahead, the way a fetched state could be stamped past later events).
    for skew in [10_i64, -10] {
        let app = spawn_app().await;
        app.sim_control("/_sim/clock/skew", &json!({"seconds": skew}))
            .await;
        // Its webhooks are the events tollgate learns the clocks' difference from.
        let c = app.subscriber("ann@example.com", "team").await;
        let (sub, _) = subscription_of(&app, "ann@example.com").await;
        let customer = app.customer_of("ann@example.com").await.unwrap();
        let truth = app.stripe_get(&format!("/v1/subscriptions/{sub}")).await;

        // The row drifts from Stripe; sync fetches the subscription and applies it.
        sqlx::query("UPDATE subscriptions SET status = 'past_due'")
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        let report = tollgate::billing::sync::reconcile(&app.state, true)
            .await
            .unwrap();
        assert_eq!(report.repaired, 1, "skew {skew}: {report}");
        assert_eq!(
            app.me(&c).await["access"]["status"],
            "active",
            "skew {skew}: the fetched state wins over its row"
        );

        // An event Stripe creates after the fetch (a second later by Stripe's clock) still wins.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let stripe_now = app.state.stripe.sim.as_ref().unwrap().clock().now();
        let mut later = sub_event(
            &format!("evt_after_fetch_{}", skew.abs()),
            "customer.subscription.updated",
            stripe_now,
            &sub,
            &customer,
            "past_due",
        );
        later["data"]["object"]["items"] = truth["items"].clone();
        assert_eq!(
            app.deliver(&later).await["outcome"],
            "applied",
            "skew {skew}"
        );
        assert_eq!(
            app.me(&c).await["access"]["status"],
            "past_due",
            "skew {skew}: the later event wins"
        );
    }
}

#[tokio::test]
async fn a_live_mode_event_is_recorded_and_not_applied_under_a_test_key() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.map_customer_of(&c, "cus_mode").await;
    let now = app.state.clock.now();
    let mut event = sub_event(
        "evt_live",
        "customer.subscription.created",
        now,
        "sub_mode",
        "cus_mode",
        "active",
    );
    event["data"]["object"]["items"]["data"][0]["price"]["id"] = json!(app.price_of("team"));
    event["livemode"] = json!(true);

    let answer = app.deliver(&event).await;

    assert_eq!(answer["outcome"], "wrong_mode");
    assert_eq!(app.count("subscriptions").await, 0, "nothing applied");
    assert_eq!(app.count("stripe_events").await, 1, "but recorded");
    event["id"] = json!("evt_test");
    event["livemode"] = json!(false);
    assert_eq!(app.deliver(&event).await["outcome"], "applied");
    assert_eq!(app.me(&c).await["access"]["plan"], "team");
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
    let sim = app.state.stripe.sim.as_ref().unwrap();
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

#[tokio::test]
async fn shuffled_streams_ending_in_customer_deleted_never_leave_access() {
    let app = spawn_app().await;
    let price = app.price_of("pro");
    let t0 = app.state.clock.now() - 1_000;
    let mut next = crate::billing::index_source(0x0de1_e7ed_5eed_0001);
    for round in 0..8 {
        let (sub, customer) = (format!("sub_d{round}"), format!("cus_d{round}"));
        let c = app.user(&format!("d{round}@example.com")).await;
        app.map_customer_of(&c, &customer).await;
        let mut stream = crate::billing::life_of(&sub, &customer, &price, t0);
        // The life stops short of its own cancellation: the customer's deletion ends it.
        stream.pop();
        stream.push(
            json!({"id": format!("evt_{customer}_deleted"), "object": "event",
            "type": "customer.deleted", "created": t0 + 60,
            "data": {"object": {"id": customer, "object": "customer"}}}),
        );
        for i in (1..stream.len()).rev() {
            stream.swap(i, next(i + 1));
        }
        for event in &stream {
            app.deliver(event).await;
        }

        let live: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM subscriptions WHERE customer_id = $1 AND status <> 'canceled'",
        )
        .bind(&customer)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        let order: Vec<_> = stream.iter().map(|e| e["type"].clone()).collect();
        assert_eq!(live.0, 0, "round {round}: {order:?}");
        assert_eq!(
            app.me(&c).await["access"]["plan"],
            "free",
            "round {round}: {order:?}"
        );
    }
}

#[tokio::test]
async fn the_simulator_changes_subscription_items_as_stripe_does() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "pro").await;
    let (sub, _) = subscription_of(&app, "ann@example.com").await;
    let path = format!("/v1/subscriptions/{sub}");
    let truth = app.stripe_get(&path).await;
    let plan_item = truth["items"]["data"][0]["id"].as_str().unwrap().to_owned();

    // A price sent without an item id is added as another item (and billed), never a swap.
    let addon = app.new_price("Extra storage", 500).await;
    let added = app.stripe_post(&path, &[("items[0][price]", &addon)]).await;
    assert_eq!(added["items"]["data"].as_array().unwrap().len(), 2);

    // With the item's id, that item's price changes and nothing else.
    let team = app.price_of("team");
    let switched = app
        .stripe_post(
            &path,
            &[("items[0][id]", &plan_item), ("items[0][price]", &team)],
        )
        .await;
    let items = switched["items"]["data"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let changed = items
        .iter()
        .find(|i| i["id"] == plan_item.as_str())
        .unwrap();
    assert_eq!(changed["price"]["id"], team.as_str());
    app.wait_for_plan(&c, Some("team")).await;

    // An archived price is refused.
    let old = app.new_price("Old add-on", 100).await;
    app.stripe_post(&format!("/v1/prices/{old}"), &[("active", "false")])
        .await;
    let refused = client()
        .post(app.sim_url(&path))
        .bearer_auth("sk_test_x")
        .form(&[("items[0][price]", old.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    // Stripe's portal switches only single-item subscriptions: this one shows no switch.
    let portal = app.try_portal(&c).await;
    let url = portal.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Cancel now"), "{page}");
    assert!(!page.contains("Switch plan"), "{page}");

    // Once canceled, its items can no longer change.
    let canceled = client()
        .delete(app.sim_url(&path))
        .bearer_auth("sk_test_x")
        .send()
        .await
        .unwrap();
    assert!(canceled.status().is_success());
    let refused = client()
        .post(app.sim_url(&path))
        .bearer_auth("sk_test_x")
        .form(&[("items[0][price]", app.price_of("pro").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "a canceled subscription");
}

#[tokio::test]
async fn an_event_stripe_must_redeliver_holds_up_no_other_and_lands_once_stripe_answers() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "team", "month").await;
    // Paid while tollgate cannot reach Stripe: the completed session (which tollgate settles by
    // asking Stripe) and the incomplete → active tie are answered 503, to be delivered again.
    app.sim_control("/_sim/outage", &json!({"on": true})).await;
    app.pay(&url).await;

    // Meanwhile the events behind them arrive: Stripe's retries hold up nothing.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (paid,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM stripe_events WHERE type = 'invoice.paid'")
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        if paid == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "invoice.paid waits behind the refused events"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Stripe reachable again: the redelivered events settle the subscription.
    app.sim_control("/_sim/outage", &json!({"on": false})).await;
    let me = app.wait_for_plan(&c, Some("team")).await;
    assert_eq!(me["access"]["status"], "active");
}

#[tokio::test]
async fn a_past_due_state_found_by_fetching_starts_its_grace_period_when_it_is_seen() {
    // No event has ever arrived (webhooks misconfigured, or held): only the success page tells.
    let app = spawn_app().await;
    app.hold_webhooks(true).await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "team", "month").await;
    let success = app.pay(&url).await;
    assert_eq!(c.get(&success).send().await.unwrap().status(), 200);
    assert_eq!(app.me(&c).await["access"]["status"], "active");

    // The renewal fails in Stripe; tollgate learns it only when the success page is loaded again.
    let customer = app.customer_of("ann@example.com").await.unwrap();
    app.sim_control(
        &format!("/_sim/customers/{customer}/card"),
        &json!({"failing": true}),
    )
    .await;
    app.advance(31 * 86_400).await;
    assert_eq!(c.get(&success).send().await.unwrap().status(), 200);

    let me = app.me(&c).await;
    assert_eq!(me["access"]["status"], "past_due", "{me}");
    assert_eq!(
        me["access"]["plan"], "team",
        "the grace period starts when the state is seen: {me}"
    );
    let (since,): (Option<i64>,) = sqlx::query_as("SELECT past_due_since FROM subscriptions")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let now = app.state.clock.now();
    assert!(
        since.is_some_and(|s| (now - 60..=now).contains(&s)),
        "{since:?} vs {now}"
    );
}

#[tokio::test]
async fn an_event_that_lands_while_stripe_is_being_asked_is_not_overwritten_by_the_answer() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "team").await;
    let (sub, _) = subscription_of(&app, "ann@example.com").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let truth = app.stripe_get(&format!("/v1/subscriptions/{sub}")).await;
    // Stripe answers slowly: `stripe sync`'s list of the customer's subscriptions takes 600 ms,
    // and a later change's event lands meanwhile.
    app.sim_control("/_sim/latency", &json!({"ms": 600})).await;
    let sync = {
        let state = app.state.clone();
        tokio::spawn(async move { tollgate::billing::sync::reconcile(&state, true).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let later = app.state.stripe.sim.as_ref().unwrap().clock().now() + 5;
    let mut event = sub_event(
        "evt_meanwhile",
        "customer.subscription.updated",
        later,
        &sub,
        &customer,
        "past_due",
    );
    event["data"]["object"]["items"] = truth["items"].clone();
    assert_eq!(app.deliver(&event).await["outcome"], "applied");

    sync.await.unwrap().unwrap();
    assert_eq!(
        app.me(&c).await["access"]["status"],
        "past_due",
        "the state listed before the event must not replace it"
    );
}
