//! Using a key: Bearer and Basic, scopes, the gates and forward-auth, and what is refused.

use reqwest::Client;
use serde_json::{Value, json};

use super::{create, get_with_key, key_of, post_with_key};
use crate::helpers::{client, error_of, spawn_app};

#[tokio::test]
async fn a_key_is_shown_once_stored_as_a_hash_and_works_as_bearer_and_as_the_basic_password() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let r = create(&app, &c, json!({"name": "ci deploy", "scopes": ["read"]})).await;
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tg_") && key.len() == 67, "{key}");
    assert!(key[3..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(made["hint"], format!("tg_…{}", &key[63..]));
    assert_eq!(made["scopes"], json!(["read"]));
    assert_eq!(made["expires_at"], Value::Null);

    let listed = app.get_with(&c, "/api/keys").await.text().await.unwrap();
    assert!(!listed.contains(&key[3..]), "the secret is shown once");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["keys"][0]["id"], made["id"]);
    assert_eq!(listed["keys"][0]["name"], "ci deploy");
    assert_eq!(listed["keys"][0]["last_used_at"], Value::Null);

    let stored: Vec<(String, String, String)> =
        sqlx::query_as("SELECT secret_hash, hint, name FROM api_keys")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].0.contains(&key[3..]) && stored[0].0.len() == 64);

    let me = app.me(&c).await;
    let by_bearer: Value = get_with_key(&app, "/api/me", &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_bearer["id"], me["id"]);
    for user in ["", "anything"] {
        let by_basic = client()
            .get(app.url("/api/me"))
            .basic_auth(user, Some(&key))
            .send()
            .await
            .unwrap();
        assert_eq!(by_basic.status(), 200, "Basic with user {user:?}");
    }
    let listed: Value = app.get_with(&c, "/api/keys").await.json().await.unwrap();
    assert!(
        listed["keys"][0]["last_used_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{listed}"
    );
}

#[tokio::test]
async fn a_bad_key_is_refused_and_never_falls_back_to_the_session_cookie() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let key = key_of(&app, &c, &["read"]).await;
    let mut wrong = key.clone();
    wrong.replace_range(10..11, if &key[10..11] == "a" { "b" } else { "a" });
    let send = |value: String| {
        c.get(app.url("/api/me"))
            .header("authorization", value)
            .send()
    };
    // Anything that presents a tollgate key is judged by it alone: a bad one is 401 even beside
    // a valid session cookie.
    for value in [
        format!("Bearer {wrong}"),
        "Bearer tg_short".into(),
        format!("Bearer tg_{}", key[3..].to_uppercase()),
        format!("Digest {key}"),
        format!("Token {key}"),
    ] {
        let r = send(value.clone()).await.unwrap();
        assert_eq!(r.status(), 401, "{value}");
        assert_eq!(error_of(r).await, "unauthenticated", "{value}");
    }
    // An Authorization header for something else (an upstream app's own) is not tollgate's: the
    // cookie decides, and without one there is no user.
    for value in [
        "Bearer eyJhbGciOiJFZERTQSJ9.e30.x",
        "Basic dXBzdHJlYW06cGFzcw==",
        "Bearer",
    ] {
        assert_eq!(send(value.into()).await.unwrap().status(), 200, "{value}");
        let alone = client()
            .get(app.url("/api/me"))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(alone.status(), 401, "{value} without a cookie");
    }
    let wrong_basic = c
        .get(app.url("/api/me"))
        .basic_auth("ann", Some(&wrong))
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong_basic.status(),
        401,
        "a wrong key as the Basic password"
    );
    let by_user_name = client()
        .get(app.url("/api/me"))
        .basic_auth(&key, None::<&str>)
        .send()
        .await
        .unwrap();
    assert_eq!(by_user_name.status(), 200, "curl -u tg_…:");
    for second in [format!("Bearer {key}"), "Basic dXBzdHJlYW06cGFzcw==".into()] {
        let twice = client()
            .get(app.url("/api/me"))
            .header("authorization", format!("Bearer {key}"))
            .header("authorization", second)
            .send()
            .await
            .unwrap();
        assert_eq!(
            twice.status(),
            401,
            "a key among several Authorization headers"
        );
    }
    let not_utf8 = reqwest::header::HeaderValue::from_bytes(b"Bearer tg_\xff").unwrap();
    let r = c
        .get(app.url("/api/me"))
        .header("authorization", not_utf8)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a header tollgate cannot read is refused");
    assert_eq!(
        app.get_with(&c, "/api/me").await.status(),
        200,
        "the cookie alone works"
    );
}

#[tokio::test]
async fn a_key_beside_a_cookie_does_not_lift_the_origin_rule() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let key = key_of(&app, &c, &["read", "billing"]).await;
    for authorization in [format!("Bearer {key}"), "x".into()] {
        let logout = c
            .post(app.url("/api/auth/logout"))
            .header("content-type", "application/json")
            .header("origin", "https://evil.example")
            .header("authorization", authorization.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(logout.status(), 403, "{authorization}");
        assert_eq!(error_of(logout).await, "csrf_failed");
    }
    assert_eq!(
        app.get_with(&c, "/api/me").await.status(),
        200,
        "still signed in"
    );
}

#[tokio::test]
async fn forward_auth_leaves_an_upstream_apps_own_authorization_alone() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let ask = |from: &Client, uri: &'static str, authorization: &'static str| {
        from.get(app.url("/auth/forward"))
            .header("x-forwarded-uri", uri)
            .header("authorization", authorization)
            .send()
    };
    let upstream = "Basic dXBzdHJlYW06cGFzcw==";
    assert_eq!(ask(&c, "/app", upstream).await.unwrap().status(), 200);
    let anonymous = ask(&client(), "/app", "Bearer eyJhbGciOi.e30.x")
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("x-tollgate-login-url"));
    // A bad tollgate key is a 401 that still says where to sign in.
    let bad = ask(&c, "/app", "Bearer tg_nonsense").await.unwrap();
    assert_eq!(bad.status(), 401);
    assert!(bad.headers().contains_key("x-tollgate-login-url"));
}

#[tokio::test]
async fn a_key_passes_the_plan_gate_and_forward_auth_by_its_users_plan() {
    let app = spawn_app().await;
    let pro = app.subscriber("pro@example.com", "pro").await;
    let free = app.user("free@example.com").await;
    let (pro_key, free_key) = (
        key_of(&app, &pro, &["read"]).await,
        key_of(&app, &free, &["read"]).await,
    );

    assert_eq!(
        get_with_key(&app, "/api/demo/pro", &pro_key).await.status(),
        200
    );
    let r = get_with_key(&app, "/api/demo/pro", &free_key).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_of(r).await, "plan_required");

    let forward = |key: String| {
        client()
            .get(app.url("/auth/forward"))
            .header("x-forwarded-uri", "/pro/report")
            .bearer_auth(key)
            .send()
    };
    let r = forward(pro_key).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-plan"], "pro");
    assert_eq!(forward(free_key).await.unwrap().status(), 403);
    assert_eq!(forward("tg_nonsense".into()).await.unwrap().status(), 401);
}

#[tokio::test]
async fn scopes_bound_what_a_key_does_and_bad_keys_are_refused_at_creation() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let read = key_of(&app, &c, &["read"]).await;
    let billing = key_of(&app, &c, &["billing"]).await;
    let checkout = json!({"plan": "pro", "interval": "month"});

    let r = post_with_key(
        &app,
        &client(),
        "/api/billing/checkout",
        &read,
        checkout.clone(),
    )
    .await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "scope_required");
    assert_eq!(body["required_scope"], "billing");
    assert_eq!(app.count("checkout_attempts").await, 0);

    let r = get_with_key(&app, "/api/me", &billing).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_of(r).await, "scope_required");
    // A key carries no ambient credential: a foreign Origin does not matter to it.
    let r = client()
        .post(app.url("/api/billing/checkout"))
        .bearer_auth(&billing)
        .header("content-type", "application/json")
        .header("origin", "https://elsewhere.example")
        .body(checkout.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a billing key starts a Checkout");

    for (body, field) in [
        (json!({"name": "x", "scopes": ["admin"]}), "scopes"),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (
            json!({"name": "x", "scopes": ["read", "everything"]}),
            "scopes",
        ),
        (json!({"name": " ", "scopes": ["read"]}), "name"),
        (json!({"name": "a\u{7}b", "scopes": ["read"]}), "name"),
        (json!({"name": "x".repeat(101), "scopes": ["read"]}), "name"),
        (
            json!({"name": "x", "scopes": ["read"], "expires_in_days": 0}),
            "expires_in_days",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "expires_in_days": 3651}),
            "expires_in_days",
        ),
    ] {
        let r = create(&app, &c, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["field"], field, "{body}");
    }
    assert_eq!(app.count("api_keys").await, 2, "nothing more was stored");
}
