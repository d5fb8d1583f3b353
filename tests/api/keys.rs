//! API keys: made and revoked by a session, used as `Bearer` or as the Basic password, bounded by
//! their scopes, never reaching account changes, and refused (never falling back to a cookie)
//! when they are bad.

use reqwest::{Client, Response};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, client, error_of, spawn_app};

/// Creates a key for `c`'s session; the whole answer.
async fn create(app: &TestApp, c: &Client, body: Value) -> Response {
    app.post_json_with(c, "/api/keys", &body).await
}

/// A key with `scopes` for `c`'s user: its secret.
async fn key_of(app: &TestApp, c: &Client, scopes: &[&str]) -> String {
    let r = create(app, c, json!({"name": "test", "scopes": scopes})).await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Revokes key `id` as `c`'s session; the status.
async fn revoke(app: &TestApp, c: &Client, id: &str) -> u16 {
    c.delete(app.url(&format!("/api/keys/{id}")))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// GET `path` with `key` as a bearer token, from a client without cookies.
async fn get_with_key(app: &TestApp, path: &str, key: &str) -> Response {
    client()
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// POST JSON `body` to `path` with `key` as a bearer token, from `c` (its cookies too).
async fn post_with_key(app: &TestApp, c: &Client, path: &str, key: &str, body: Value) -> Response {
    c.post(app.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

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
        (json!({"name": "a\u{0}b", "scopes": ["read"]}), "name"),
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

#[tokio::test]
async fn a_key_never_reaches_account_changes_even_beside_a_valid_session_cookie() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let key = key_of(&app, &c, &["read", "billing"]).await;
    let attempts = [
        (
            "/api/auth/password/change",
            json!({"current_password": PASSWORD, "new_password": "another long passphrase"}),
        ),
        (
            "/api/auth/email/change",
            json!({"password": PASSWORD, "new_email": "mallory@example.com"}),
        ),
        ("/api/account/delete", json!({"password": PASSWORD})),
        ("/api/auth/verify-email/request", json!({})),
        ("/api/keys", json!({"name": "more", "scopes": ["read"]})),
    ];
    for (path, body) in attempts {
        for from in [&client(), &c] {
            let r = post_with_key(&app, from, path, &key, body.clone()).await;
            assert_eq!(r.status(), 403, "{path}");
            assert_eq!(error_of(r).await, "session_required", "{path}");
        }
    }
    let listed = get_with_key(&app, "/api/keys", &key).await;
    assert_eq!(error_of(listed).await, "session_required");
    let id = app
        .get_with(&c, "/api/keys")
        .await
        .json::<Value>()
        .await
        .unwrap()["keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke = client()
        .delete(app.url(&format!("/api/keys/{id}")))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(revoke).await, "session_required");

    assert_eq!(app.login_status("ann@example.com", PASSWORD).await, 200);
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("api_keys").await, 1);
    assert_eq!(get_with_key(&app, "/api/me", &key).await.status(), 200);
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
    for value in [
        format!("Bearer {wrong}"),
        "Bearer tg_short".into(),
        format!("Bearer {}", key.to_uppercase()),
        "Bearer".into(),
        format!("Digest {key}"),
        "Basic not-base64!".into(),
        format!("Token {key}"),
    ] {
        let r = send(value.clone()).await.unwrap();
        assert_eq!(r.status(), 401, "{value}");
        assert_eq!(error_of(r).await, "unauthenticated", "{value}");
    }
    let twice = client()
        .get(app.url("/api/me"))
        .header("authorization", format!("Bearer {key}"))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 401, "a repeated Authorization header");
    let not_utf8 = reqwest::header::HeaderValue::from_bytes(b"Bearer tg_\xff").unwrap();
    let r = c
        .get(app.url("/api/me"))
        .header("authorization", not_utf8)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        app.get_with(&c, "/api/me").await.status(),
        200,
        "the cookie alone works"
    );
}

#[tokio::test]
async fn revoked_expired_and_deleted_accounts_keys_stop_working() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let revoked = key_of(&app, &c, &["read"]).await;
    let listed: Value = app.get_with(&c, "/api/keys").await.json().await.unwrap();
    let id = listed["keys"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(revoke(&app, &c, &id).await, 204);
    assert_eq!(get_with_key(&app, "/api/me", &revoked).await.status(), 401);
    assert_eq!(revoke(&app, &c, &id).await, 404, "revoked once");
    let other = app.user("bob@example.com").await;
    let bobs = key_of(&app, &other, &["read"]).await;
    let listed: Value = app
        .get_with(&other, "/api/keys")
        .await
        .json()
        .await
        .unwrap();
    let bobs_id = listed["keys"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(revoke(&app, &c, &bobs_id).await, 404, "not Ann's key");
    assert_eq!(get_with_key(&app, "/api/me", &bobs).await.status(), 200);

    let r = create(
        &app,
        &c,
        json!({"name": "short", "scopes": ["read"], "expires_in_days": 1}),
    )
    .await;
    let made: Value = r.json().await.unwrap();
    assert!(
        made["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let expiring = made["key"].as_str().unwrap().to_owned();
    assert_eq!(get_with_key(&app, "/api/me", &expiring).await.status(), 200);
    app.advance(86_400 + 1).await;
    assert_eq!(
        get_with_key(&app, "/api/me", &expiring).await.status(),
        401,
        "expired"
    );

    let lasting = key_of(&app, &c, &["read"]).await;
    app.delete_account(&c).await;
    assert_eq!(get_with_key(&app, "/api/me", &lasting).await.status(), 401);
    assert_eq!(
        app.count("api_keys").await,
        1,
        "Ann's keys went with her; Bob's stays"
    );
}

#[tokio::test]
async fn keys_end_with_a_password_change_only_when_asked() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let key = key_of(&app, &c, &["read"]).await;
    let second = "a second long passphrase";
    for (from, to, revoke, then) in [
        (PASSWORD, second, false, 200),
        (second, PASSWORD, true, 401),
    ] {
        let body = json!({"current_password": from, "new_password": to, "revoke_api_keys": revoke});
        let r = app
            .post_json_with(&c, "/api/auth/password/change", &body)
            .await;
        assert_eq!(r.status(), 204);
        let status = get_with_key(&app, "/api/me", &key).await.status();
        assert_eq!(status, then, "revoke_api_keys: {revoke}");
    }
    let listed: Value = app.get_with(&c, "/api/keys").await.json().await.unwrap();
    assert_eq!(listed["keys"], json!([]));
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
async fn a_user_holds_at_most_twenty_live_keys() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    for _ in 0..20 {
        key_of(&app, &c, &["read"]).await;
    }
    let r = create(&app, &c, json!({"name": "one more", "scopes": ["read"]})).await;
    assert_eq!(r.status(), 409);
    assert_eq!(error_of(r).await, "too_many_keys");
    let listed: Value = app.get_with(&c, "/api/keys").await.json().await.unwrap();
    let id = listed["keys"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(revoke(&app, &c, &id).await, 204);
    assert_eq!(
        create(&app, &c, json!({"name": "now", "scopes": ["read"]}))
            .await
            .status(),
        201
    );
}
