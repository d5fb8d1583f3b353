//! Idempotency keys as Stripe keeps them, and tollgate's retries under fresh keys.

use serde_json::{Value, json};

use crate::helpers::{TestApp, client, spawn_app};

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
    // Stripe compares parameters, not bytes: the same ones in another order are the same request.
    let with_metadata = [("email", "cy@example.com"), ("metadata[plan]", "pro")];
    let reordered = [("metadata[plan]", "pro"), ("email", "cy@example.com")];
    let made = post_with_key(&app, "/v1/customers", "k4", &with_metadata).await;
    let made: Value = made.json().await.unwrap();
    let again = post_with_key(&app, "/v1/customers", "k4", &reordered).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], made["id"]);

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
