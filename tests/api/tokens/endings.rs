//! How token sign-ins end: a client's revocation, logout (by the API, with an access token, or
//! by the page's form), a password change or reset, account deletion, and the end of the session
//! they were exchanged from.

use serde_json::{Value, json};

use super::{access, bearer_post, login_tokens, me_status, refresh, refresh_of};
use crate::helpers::{PASSWORD, SmtpSink, TestApp, client, error_of, spawn_app};

#[tokio::test]
async fn logout_ends_every_family_and_a_client_can_revoke_its_own() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let a = login_tokens(&app, "ann@example.com").await;
    let b = login_tokens(&app, "ann@example.com").await;

    // A client gives its tokens up: its family ends, the other lives; unknown tokens get the
    // same answer.
    for token in [refresh_of(&a), "tgr_unknown".into()] {
        let r = app
            .post_json_with(
                &client(),
                "/api/auth/token/revoke",
                &json!({"refresh_token": token}),
            )
            .await;
        assert_eq!(r.status(), 204);
    }
    assert_eq!(me_status(&app, &access(&a)).await, 401);
    assert_eq!(refresh(&app, &refresh_of(&a)).await.status(), 401);
    assert_eq!(me_status(&app, &access(&b)).await, 200);

    // An API key cannot log its user out.
    let made = app
        .post_json_with(&c, "/api/keys", &json!({"name": "k", "scopes": ["read"]}))
        .await;
    let key = made.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = bearer_post(&app, "/api/auth/logout", &key, &json!({})).await;
    assert_eq!(error_of(r).await, "session_required");
    assert_eq!(me_status(&app, &access(&b)).await, 200);

    // Logging out ends every family of the user.
    let c2 = login_tokens(&app, "ann@example.com").await;
    let r = app.post_json_with(&c, "/api/auth/logout", &json!({})).await;
    assert_eq!(r.status(), 204);
    for pair in [&b, &c2] {
        assert_eq!(me_status(&app, &access(pair)).await, 401);
        assert_eq!(refresh(&app, &refresh_of(pair)).await.status(), 401);
    }
    // So does signing out with the page's form.
    let f = login_tokens(&app, "ann@example.com").await;
    let browser = client();
    let body = json!({"email": "ann@example.com", "password": PASSWORD});
    assert_eq!(
        app.post_json_with(&browser, "/api/auth/login", &body)
            .await
            .status(),
        200
    );
    let exchanged: Value = app
        .post_json_with(&browser, "/api/auth/token", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let csrf = app.csrf_token(&browser, "/account").await;
    let r = browser
        .post(app.url("/logout"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    for pair in [&f, &exchanged] {
        assert_eq!(me_status(&app, &access(pair)).await, 401);
        assert_eq!(refresh(&app, &refresh_of(pair)).await.status(), 401);
    }

    // A logout with an access token tollgate refuses (expired) signs nothing out: 401, and the
    // app revokes its refresh token instead.
    let g = login_tokens(&app, "ann@example.com").await;
    app.state.clock.advance(601);
    let r = bearer_post(&app, "/api/auth/logout", &access(&g), &json!({})).await;
    assert_eq!(error_of(r).await, "unauthenticated");
    let g: Value = refresh(&app, &refresh_of(&g)).await.json().await.unwrap();
    assert_eq!(me_status(&app, &access(&g)).await, 200);

    // A logout made with an access token ends its own sign-in only: a backend the token was
    // handed to cannot sign the user out everywhere.
    let d = login_tokens(&app, "ann@example.com").await;
    let e = login_tokens(&app, "ann@example.com").await;
    let r = bearer_post(&app, "/api/auth/logout", &access(&d), &json!({})).await;
    assert_eq!(r.status(), 204);
    assert_eq!(me_status(&app, &access(&d)).await, 401);
    assert_eq!(refresh(&app, &refresh_of(&d)).await.status(), 401);
    assert_eq!(me_status(&app, &access(&e)).await, 200);
    assert_eq!(refresh(&app, &refresh_of(&e)).await.status(), 200);
}

#[tokio::test]
async fn a_session_exchanged_for_tokens_hands_on_only_the_time_it_has_left() {
    let app = TestApp::builder()
        .with("TOLLGATE_SESSION_ABSOLUTE_SECS", "120")
        .spawn()
        .await;
    let c = app.user("ann@example.com").await;
    let pair: Value = app
        .post_json_with(&c, "/api/auth/token", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    // Neither token outlives the session's absolute timeout, the access token included.
    assert!(
        pair["refresh_token_expires_in"].as_i64().unwrap() <= 120,
        "{pair}"
    );
    assert!(pair["expires_in"].as_i64().unwrap() <= 120, "{pair}");
    let claims = super::decode(&access(&pair)).1;
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 120);
    app.state.clock.advance(121);
    assert_eq!(refresh(&app, &refresh_of(&pair)).await.status(), 401);
}

#[tokio::test]
async fn a_password_change_a_reset_and_deletion_end_every_family() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .with("SMTP_URL", &sink.url())
        .spawn()
        .await;
    let c = app.user("ann@example.com").await;
    sink.wait_for("ann@example.com", 1).await;

    let before = login_tokens(&app, "ann@example.com").await;
    let body = json!({"current_password": PASSWORD, "new_password": "the second passphrase"});
    let r = app
        .post_json_with(&c, "/api/auth/password/change", &body)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(me_status(&app, &access(&before)).await, 401);
    assert_eq!(refresh(&app, &refresh_of(&before)).await.status(), 401);

    let r = app
        .post_json_with(
            &client(),
            "/api/auth/password/forgot",
            &json!({"email": "ann@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let pair = {
        let body =
            json!({"email": "ann@example.com", "password": "the second passphrase", "token": true});
        let r = app
            .post_json_with(&client(), "/api/auth/login", &body)
            .await;
        r.json::<Value>().await.unwrap()
    };
    assert_eq!(me_status(&app, &access(&pair)).await, 200);
    // The verification and this reset (a password change sends no mail of its own).
    let mail = sink.wait_for("ann@example.com", 2).await;
    let r = app
        .post_json_with(
            &client(),
            "/api/auth/password/reset",
            &json!({"token": mail.token("reset-password"), "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(me_status(&app, &access(&pair)).await, 401);
    assert_eq!(refresh(&app, &refresh_of(&pair)).await.status(), 401);

    let last = login_tokens(&app, "ann@example.com").await;
    let owner = crate::helpers::client();
    let body = json!({"email": "ann@example.com", "password": PASSWORD});
    assert_eq!(
        app.post_json_with(&owner, "/api/auth/login", &body)
            .await
            .status(),
        200
    );
    app.delete_account(&owner).await;
    assert_eq!(me_status(&app, &access(&last)).await, 401);
    assert_eq!(refresh(&app, &refresh_of(&last)).await.status(), 401);
    assert_eq!(app.count("token_families").await, 0);
}

#[tokio::test]
async fn a_user_holds_at_most_fifty_live_token_sign_ins_and_a_new_one_ends_the_oldest() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let mut pairs = vec![];
    for _ in 0..51 {
        let r = app.post_json_with(&c, "/api/auth/token", &json!({})).await;
        pairs.push(r.json::<Value>().await.unwrap());
        // One second apart, so "the oldest" is one sign-in.
        app.state.clock.advance(1);
    }
    assert_eq!(
        refresh(&app, &refresh_of(&pairs[0])).await.status(),
        401,
        "the oldest"
    );
    assert_eq!(me_status(&app, &access(&pairs[0])).await, 401);
    for pair in [&pairs[1], &pairs[50]] {
        assert_eq!(me_status(&app, &access(pair)).await, 200);
    }
    let live: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM token_families WHERE ended_at IS NULL")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(live.0, 50);
}
