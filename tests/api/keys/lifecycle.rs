//! A key's life: made, listed, limited, revoked, expired, and ended with its account, a reset or
//! a password change that asks; never reaching account changes.

use serde_json::{Value, json};

use super::{create, get_with_key, key_of, post_with_key, revoke};
use crate::helpers::{PASSWORD, client, error_of, spawn_app};

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

    // A day on, making a key needs a fresh proof (a sensitive change).
    let reauth = json!({"password": PASSWORD});
    let r = app.post_json_with(&c, "/api/auth/reauth", &reauth).await;
    assert_eq!(r.status(), 204);
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

#[tokio::test]
async fn a_password_reset_ends_every_key() {
    let (app, sink) = crate::helpers::app_with_mail(&[]).await;
    let c = app.user("ann@example.com").await;
    let key = key_of(&app, &c, &["read"]).await;
    sink.wait_for("ann@example.com", 1).await;
    let forgot = json!({"email": "ann@example.com"});
    let asked = app
        .post_json_with(&client(), "/api/auth/password/forgot", &forgot)
        .await;
    assert_eq!(asked.status(), 202);
    let token = sink
        .wait_for("ann@example.com", 2)
        .await
        .token("reset-password");
    let body = json!({"token": token, "password": "a fresh new passphrase"});
    let reset = app
        .post_json_with(&client(), "/api/auth/password/reset", &body)
        .await;
    assert_eq!(reset.status(), 204);
    assert_eq!(get_with_key(&app, "/api/me", &key).await.status(), 401);
}

#[tokio::test]
async fn key_names_refuse_characters_that_hide() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    for name in ["ci\u{202E}yek", "c\u{200B}i", "\u{2060}"] {
        let r = create(&app, &c, json!({"name": name, "scopes": ["read"]})).await;
        assert_eq!(r.status(), 400, "{name:?}");
    }
    assert_eq!(app.count("api_keys").await, 0);
}
