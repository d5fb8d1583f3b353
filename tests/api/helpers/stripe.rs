//! Stripe: the built-in simulator's switches and API (as the Stripe dashboard or a test would use
//! them), and tollgate's billing as a user meets it (checkout, payment, the portal) with the rows
//! it keeps.

use std::time::Duration;

use reqwest::{Client, Response};
use serde_json::{Value, json};

use super::app::{TestApp, client};

impl TestApp {
    /// The simulator's base URL (`http://127.0.0.1:<port>/`).
    pub fn sim_url(&self, path: &str) -> String {
        let sim = self
            .state
            .sim
            .as_ref()
            .expect("tests run with the simulator");
        format!("{}{}", sim.base_url(), path.trim_start_matches('/'))
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

    /// Holds (or releases) every webhook the simulator sends: webhooks that are slow to land.
    pub async fn hold_webhooks(&self, hold: bool) {
        self.sim_control("/_sim/chaos", &json!({"hold": hold}))
            .await;
    }

    /// Waits (10 s deadline) until every event the simulator sent has been stored by tollgate,
    /// so that nothing lands later.
    pub async fn wait_for_webhooks(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let sent = self.sim_events().await.len() as i64;
            let stored = self.count("stripe_events").await;
            if stored >= sent {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{stored} of {sent} events stored"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
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

    /// `POST /api/billing/checkout` as `c`, whatever the answer.
    pub async fn try_checkout(&self, c: &Client, plan: &str, interval: &str) -> Response {
        self.post_json_with(
            c,
            "/api/billing/checkout",
            &json!({"plan": plan, "interval": interval}),
        )
        .await
    }

    /// `POST /api/billing/portal` as `c`, whatever the answer.
    pub async fn try_portal(&self, c: &Client) -> Response {
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

    /// Every event the simulator has sent, oldest first.
    pub async fn sim_events(&self) -> Vec<Value> {
        let list: Value = client()
            .get(self.sim_url("/_sim/events"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["data"].as_array().unwrap().clone()
    }

    /// The first event of type `kind` the simulator sent, if any.
    pub async fn sim_event(&self, kind: &str) -> Option<Value> {
        self.sim_events()
            .await
            .into_iter()
            .find(|e| e["type"] == kind)
    }

    /// Presses "pay" on the simulator's hosted Checkout page, whatever it answers.
    pub async fn try_pay(&self, checkout_url: &str) -> Response {
        client()
            .post(checkout_url)
            .form(&[("action", "pay")])
            .send()
            .await
            .unwrap()
    }

    /// Pays on the simulator's hosted Checkout page; returns the success URL it redirects to.
    pub async fn pay(&self, checkout_url: &str) -> String {
        let r = self.try_pay(checkout_url).await;
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

/// Maps a fresh user to `customer`, as a finished checkout would have; returns the user id.
pub async fn map_customer(app: &TestApp, email: &str, customer: &str) -> String {
    let c = app.user(email).await;
    app.map_customer_of(&c, customer).await
}

/// Clicks a portal action for the only subscription of the user behind `c`.
pub async fn portal_action(app: &TestApp, c: &Client, action: &str, price: Option<&str>) {
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

/// Schedules `c`'s cancellation in the portal and waits until tollgate shows it; returns `/api/me`.
pub async fn cancel_at_period_end(app: &TestApp, c: &Client) -> Value {
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

/// The row of subscription `sub`: status, plan, period end, cancel at period end, past due
/// since, and the Stripe stamp.
pub async fn row_of(app: &TestApp, sub: &str) -> Value {
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

/// The subscription of the user registered as `email` (its one row) and its stamp, once every
/// event the simulator sent has landed and the row has stopped moving (an event's follow-up, a
/// re-fetch, may still be applying just after the event is stored).
pub async fn subscription_of(app: &TestApp, email: &str) -> (String, i64) {
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = read().await;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = read().await;
        if now == last {
            return (now.0, now.1);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{email}'s subscription kept changing for 10 s"
        );
        last = now;
    }
}
