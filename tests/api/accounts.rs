//! Registration, login, password policy and password change over the JSON API.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, client, event, spawn_app};

#[tokio::test]
async fn register_me_logout_round_trip() {
    let app = spawn_app().await;

    let user = app.register("Ann.Lee@Example.com", PASSWORD).await;
    assert_eq!(user["email"], "Ann.Lee@Example.com");
    assert_eq!(user["email_verified"], false);
    assert!(user["id"].as_str().unwrap().len() > 16);
    assert_eq!(user["access"]["plan"], "free");
    assert_eq!(user["access"]["status"], "none");

    let me: Value = app.get("/api/me").await.json().await.unwrap();
    assert_eq!(me, user, "/api/me answers the same user JSON");

    let out = app.post_json("/api/auth/logout", &json!({})).await;
    assert_eq!(out.status(), 204);
    assert_eq!(app.get("/api/me").await.status(), 401);
}

#[tokio::test]
async fn login_matches_the_address_case_insensitively() {
    let app = spawn_app().await;
    app.register_with(&client(), "Ann@Example.com", PASSWORD)
        .await;

    let response = app
        .post_json(
            "/api/auth/login",
            &json!({"email": "  ann@EXAMPLE.com ", "password": PASSWORD}),
        )
        .await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["email"], "Ann@Example.com", "stored as typed");
    assert_eq!(app.get("/api/me").await.status(), 200);
}

#[tokio::test]
async fn duplicate_registration_is_refused_with_email_taken() {
    let app = spawn_app().await;
    app.register("ann@example.com", PASSWORD).await;

    let response = app
        .post_json_with(
            &client(),
            "/api/auth/register",
            &json!({"email": "ANN@example.com", "password": PASSWORD}),
        )
        .await;

    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "email_taken");
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn concurrent_registrations_of_one_address_create_exactly_one_account() {
    let app = spawn_app().await;
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..8 {
        let url = app.url("/api/auth/register");
        let email = if i % 2 == 0 {
            "race@example.com"
        } else {
            "RACE@example.com"
        };
        attempts.spawn(async move {
            client()
                .post(url)
                .header("content-type", "application/json")
                .body(json!({"email": email, "password": PASSWORD}).to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }

    let statuses = attempts.join_all().await;

    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_fail_identically() {
    let app = spawn_app().await;
    app.register_with(&client(), "ann@example.com", PASSWORD)
        .await;

    let wrong_password = app
        .post_json(
            "/api/auth/login",
            &json!({"email": "ann@example.com", "password": "not the password"}),
        )
        .await;
    let unknown_email = app
        .post_json(
            "/api/auth/login",
            &json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;

    assert_eq!(wrong_password.status(), 401);
    assert_eq!(unknown_email.status(), 401);
    assert!(wrong_password.headers().get("set-cookie").is_none());
    assert!(unknown_email.headers().get("set-cookie").is_none());
    let a = wrong_password.bytes().await.unwrap();
    let b = unknown_email.bytes().await.unwrap();
    assert_eq!(a, b, "byte-identical bodies");
    let body: Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(body["error"], "invalid_credentials");
}

#[tokio::test]
async fn password_policy_is_enforced_at_registration() {
    let app = spawn_app().await;
    let cases = [
        ("short", "password_too_short", "below 8 characters"),
        ("password1", "password_too_common", "on the blocklist"),
        (
            "Qwertyuiop",
            "password_too_common",
            "blocklist ignores case",
        ),
    ];
    for (password, code, why) in cases {
        let response = app
            .post_json_with(
                &client(),
                "/api/auth/register",
                &json!({"email": "ann@example.com", "password": password}),
            )
            .await;
        assert_eq!(response.status(), 400, "{why}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{why}");
    }
    assert_eq!(app.count("users").await, 0, "nothing was created");

    let long_passphrase = "a long passphrase that keeps going well beyond sixty-four characters!";
    assert!(long_passphrase.len() > 64);
    app.register("long@example.com", long_passphrase).await;
}

#[tokio::test]
async fn passwords_are_compared_after_nfkc_normalisation() {
    let app = spawn_app().await;
    // Fullwidth letters are NFKC-equivalent to ASCII ones.
    app.register_with(
        &client(),
        "wide@example.com",
        "ｃｏｒｒｅｃｔ horse battery",
    )
    .await;

    let response = app
        .post_json(
            "/api/auth/login",
            &json!({"email": "wide@example.com", "password": "correct horse battery"}),
        )
        .await;

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_oversized_password_is_refused_before_hashing_and_changes_nothing() {
    let app = spawn_app().await;
    let huge = "x".repeat(1025);

    let response = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "ann@example.com", "password": huge}),
        )
        .await;

    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "password_too_long");
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn bad_bodies_get_documented_errors_and_change_nothing() {
    let app = spawn_app().await;
    let cases: &[(&str, u16, &str, &str)] = &[
        ("not json", 400, "invalid_json", "not JSON"),
        ("[1, 2]", 400, "invalid_json", "not an object"),
        (
            "{\"email\": \"a@b.io\"}",
            400,
            "invalid_field",
            "missing password",
        ),
        (
            "{\"email\": 5, \"password\": \"x\"}",
            400,
            "invalid_field",
            "wrong type",
        ),
        (
            "{\"email\": \"nope\", \"password\": \"correct horse battery\"}",
            400,
            "invalid_email",
            "bad address",
        ),
    ];
    for (body, status, code, why) in cases {
        let response = app
            .client
            .post(app.url("/api/auth/register"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), *status, "{why}");
        let json: Value = response.json().await.unwrap();
        assert_eq!(json["error"], *code, "{why}");
        assert!(json["message"].is_string(), "{why}: a message for people");
    }
    let missing: Value = app
        .post_json("/api/auth/register", &json!({"email": "a@b.io"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(missing["field"], "password");

    let oversized = format!(
        "{{\"email\":\"a@b.io\",\"password\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let response = app
        .client
        .post(app.url("/api/auth/register"))
        .header("content-type", "application/json")
        .body(oversized)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"], "payload_too_large");
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn password_change_ends_the_other_sessions_and_keeps_this_one() {
    let app = spawn_app().await;
    app.register("ann@example.com", PASSWORD).await;
    let other = client();
    let login = app
        .post_json_with(
            &other,
            "/api/auth/login",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status(), 200);

    let wrong = app
        .post_json(
            "/api/auth/password/change",
            &json!({"current_password": "wrong one", "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    let changed = app
        .post_json(
            "/api/auth/password/change",
            &json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;

    assert_eq!(changed.status(), 204);
    assert_eq!(app.get("/api/me").await.status(), 200, "this session stays");
    let other_me = other.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(other_me.status(), 401, "the other session ended");
    let old = app
        .post_json_with(
            &client(),
            "/api/auth/login",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(old.status(), 401, "the old password no longer works");
    let new = app
        .post_json_with(
            &client(),
            "/api/auth/login",
            &json!({"email": "ann@example.com", "password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(new.status(), 200);
}

#[tokio::test]
async fn login_rehashes_when_argon2_parameters_change() {
    let cheap = TestApp::builder()
        .with("TOLLGATE_ARGON2_M_KIB", "8192")
        .with("TOLLGATE_ARGON2_T", "1")
        .spawn()
        .await;
    cheap.register("ann@example.com", PASSWORD).await;
    let stored = |app: &TestApp| {
        let pool = app.state.db.pool.clone();
        async move {
            let (hash,): (String,) = sqlx::query_as(
                "SELECT password_hash FROM users WHERE email_norm = 'ann@example.com'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            hash
        }
    };
    let before = stored(&cheap).await;
    assert!(before.contains("m=8192,t=1,p=1"), "{before}");

    let owasp = TestApp::builder().on_db(cheap.db.clone()).spawn().await;
    let login = owasp
        .post_json(
            "/api/auth/login",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;

    assert_eq!(login.status(), 200);
    let after = stored(&owasp).await;
    assert!(
        after.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{after}"
    );
    let again = owasp
        .post_json_with(
            &client(),
            "/api/auth/login",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(again.status(), 200, "the new hash verifies");
}

#[tokio::test]
async fn login_is_rate_limited_with_retry_after() {
    let app = TestApp::builder()
        .with("TOLLGATE_RATE_LIMIT", "on")
        .spawn()
        .await;
    let body = json!({"email": "victim@example.com", "password": "guess guess guess"});
    let http = client();
    let attempt = || app.post_json_with(&http, "/api/auth/login", &body);
    // The per-account limit (10 per 5 minutes) trips first.
    for i in 0..10 {
        assert_eq!(attempt().await.status(), 401, "attempt {i}");
    }

    let limited = attempt().await;

    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    // The trail records the first refusal of the window, not each one of a flood.
    for _ in 0..5 {
        assert_eq!(attempt().await.status(), 429);
    }
    let events: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT actor, payload, subject FROM audit_events WHERE type = 'auth.rate_limited'",
    )
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let payload: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(events[0].0, "anonymous");
    assert_eq!(payload["limit"], "login-account");
    assert_eq!(payload["address"], "v***@example.com");
    assert!(
        payload["retry_after"]
            .as_i64()
            .is_some_and(|s| (1..=300).contains(&s))
    );
    // Another account from the same address is still served until the per-address limit.
    let other = app
        .post_json_with(
            &client(),
            "/api/auth/login",
            &json!({"email": "other@example.com", "password": "guess guess guess"}),
        )
        .await;
    assert_eq!(other.status(), 401);
}

#[tokio::test]
async fn deleting_an_account_cancels_the_subscription_and_frees_the_address() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "team").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let (sub,): (String,) = sqlx::query_as("SELECT id FROM subscriptions")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();

    let wrong = app
        .post_json_with(
            &c,
            "/api/account/delete",
            &json!({"password": "not it at all"}),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        app.count("users").await,
        1,
        "a wrong password changes nothing"
    );

    let r = app
        .post_json_with(&c, "/api/account/delete", &json!({"password": PASSWORD}))
        .await;
    assert_eq!(r.status(), 204);

    assert_eq!(app.get_with(&c, "/api/me").await.status(), 401);
    assert_eq!(app.count("users").await, 0);
    assert_eq!(app.count("sessions").await, 0);
    let stripe = app.stripe_get(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(stripe["status"], "canceled", "canceled in Stripe at once");
    let (deleted, user): (i64, Option<String>) = sqlx::query_as(
        "SELECT deleted, user_id FROM billing_customers WHERE stripe_customer_id = $1",
    )
    .bind(&customer)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (deleted, user),
        (1, None),
        "the customer is kept, marked deleted"
    );

    // Later events for the customer are orphans, and the address can sign up again.
    let event = event(
        "evt_after_delete",
        "customer.subscription.updated",
        app.state.clock.now() + 5,
        json!({"id": sub, "customer": customer, "status": "active"}),
    );
    assert_eq!(app.deliver(&event).await["outcome"], "orphan");
    app.register_with(&client(), "ann@example.com", PASSWORD)
        .await;
}
