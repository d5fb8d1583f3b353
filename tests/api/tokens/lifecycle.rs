//! A token pair's life: obtained by a password or magic-link sign-in or a session, used at the
//! gates, refreshed (rotating, with reuse ending the family), and carrying the plan (endings are
//! in `endings.rs`).

use serde_json::{Value, json};

use super::{
    access, bearer_get, bearer_post, decode, kids, login_tokens, me_status, refresh, refresh_of,
};
use crate::helpers::{PASSWORD, TestApp, client, error_of, pro_subscription_updated, spawn_app};

#[tokio::test]
async fn a_token_sign_in_answers_a_pair_with_the_claims_and_starts_no_session() {
    let app = spawn_app().await;
    app.user("ann@example.com").await;
    let r = app
        .post_json_with(
            &client(),
            "/api/auth/login",
            &json!({"email": "ann@example.com", "password": PASSWORD, "token": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()
            .get("set-cookie")
            .is_none_or(|c| !c.to_str().unwrap().contains("tollgate_session")),
        "no session cookie"
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    let pair: Value = r.json().await.unwrap();
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 600);
    assert!(refresh_of(&pair).starts_with("tgr_"));
    assert_eq!(pair["user"]["email"], "ann@example.com");

    let (header, claims) = decode(&access(&pair));
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert!(
        kids(&app)
            .await
            .contains(&header["kid"].as_str().unwrap().to_owned())
    );
    let issuer = app.address.clone();
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["aud"], issuer.as_str());
    assert_eq!(claims["sub"], pair["user"]["id"]);
    assert_eq!(claims["email"], "ann@example.com");
    assert_eq!(claims["email_verified"], false);
    assert_eq!(claims["plan"], "free");
    assert_eq!(claims["tier"], 0);
    assert_eq!(claims["status"], "none");
    assert!(claims["features"].is_array());
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 600);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
    assert!(claims["sid"].as_str().unwrap().starts_with("fam_"));

    let me = bearer_get(&app, "/api/me", &access(&pair)).await;
    assert_eq!(me.status(), 200);
    assert_eq!(
        me.json::<Value>().await.unwrap()["email"],
        "ann@example.com"
    );
    assert_eq!(
        bearer_get(&app, "/api/demo/free", &access(&pair))
            .await
            .status(),
        200
    );
    let pro = bearer_get(&app, "/api/demo/pro", &access(&pair)).await;
    assert_eq!(pro.status(), 403);
    let forward = super::forward(&app, &access(&pair)).await;
    assert_eq!(forward.status(), 200);
    assert_eq!(forward.headers()["x-tollgate-plan"], "free");
}

#[tokio::test]
async fn the_lifetime_is_a_setting_and_the_token_expires_by_it() {
    let app = TestApp::builder()
        .with("TOLLGATE_ACCESS_TOKEN_SECS", "300")
        .spawn()
        .await;
    app.user("ann@example.com").await;
    let pair = login_tokens(&app, "ann@example.com").await;
    assert_eq!(pair["expires_in"], 300);
    assert_eq!(me_status(&app, &access(&pair)).await, 200);
    app.state.clock.advance(301);
    assert_eq!(me_status(&app, &access(&pair)).await, 401);
    // The refresh token outlives it.
    let next = refresh(&app, &refresh_of(&pair)).await;
    assert_eq!(next.status(), 200);
    let next: Value = next.json().await.unwrap();
    assert_eq!(me_status(&app, &access(&next)).await, 200);
}

#[tokio::test]
async fn refresh_rotates_and_a_used_refresh_token_ends_its_whole_family() {
    let app = spawn_app().await;
    app.user("ann@example.com").await;
    let first = login_tokens(&app, "ann@example.com").await;
    let other_family = login_tokens(&app, "ann@example.com").await;

    let second: Value = refresh(&app, &refresh_of(&first))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(refresh_of(&second), refresh_of(&first));
    assert_ne!(access(&second), access(&first));
    assert_eq!(
        decode(&access(&second)).1["sid"],
        decode(&access(&first)).1["sid"]
    );
    assert_eq!(me_status(&app, &access(&second)).await, 200);

    // The first refresh token comes back (a thief, or the owner after a thief): the family ends.
    let reused = refresh(&app, &refresh_of(&first)).await;
    assert_eq!(reused.status(), 401);
    assert_eq!(error_of(reused).await, "refresh_token_invalid");
    let after = refresh(&app, &refresh_of(&second)).await;
    assert_eq!(error_of(after).await, "refresh_token_invalid");
    assert_eq!(me_status(&app, &access(&second)).await, 401);
    assert_eq!(me_status(&app, &access(&first)).await, 401);

    // Another sign-in of the same user is another family, untouched.
    assert_eq!(me_status(&app, &access(&other_family)).await, 200);
    assert_eq!(
        refresh(&app, &refresh_of(&other_family)).await.status(),
        200
    );

    for junk in ["", "tgr_", "tgr_zz", &"a".repeat(10_000), "tg_0000"] {
        let r = refresh(&app, junk).await;
        assert_eq!(error_of(r).await, "refresh_token_invalid", "{junk:.20}");
    }
}

#[tokio::test]
async fn two_refreshes_of_one_token_at_once_leave_one_winner_at_most_and_end_the_family() {
    let app = spawn_app().await;
    app.user("ann@example.com").await;
    let pair = login_tokens(&app, "ann@example.com").await;
    let token = refresh_of(&pair);
    let answers = futures_join(&app, &token).await;
    let ok = answers.iter().filter(|s| **s == 200).count();
    assert!(ok <= 1, "{answers:?}");
    assert!(
        answers.iter().all(|s| *s == 200 || *s == 401),
        "{answers:?}"
    );
    // Whoever won holds a dead family: a race is a reuse.
    assert_eq!(me_status(&app, &access(&pair)).await, 401);
}

async fn futures_join(app: &TestApp, token: &str) -> Vec<u16> {
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (url, token) = (app.url("/api/auth/token/refresh"), token.to_owned());
            tokio::spawn(async move {
                client()
                    .post(url)
                    .json(&json!({"refresh_token": token}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut out = vec![];
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_session_is_exchanged_for_a_pair_but_a_key_or_a_token_is_not() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let r = app.post_json_with(&c, "/api/auth/token", &json!({})).await;
    assert_eq!(r.status(), 200);
    let pair: Value = r.json().await.unwrap();
    assert_eq!(me_status(&app, &access(&pair)).await, 200);
    // The session goes on.
    assert_eq!(app.me(&c).await["email"], "ann@example.com");

    let anonymous = app
        .post_json_with(&client(), "/api/auth/token", &json!({}))
        .await;
    assert_eq!(error_of(anonymous).await, "unauthenticated");
    let with_token = bearer_post(&app, "/api/auth/token", &access(&pair), &json!({})).await;
    assert_eq!(error_of(with_token).await, "session_required");
    // Nor does a token reach account changes.
    for (path, body) in [
        (
            "/api/auth/password/change",
            json!({"current_password": PASSWORD, "new_password": "another long passphrase"}),
        ),
        ("/api/account/delete", json!({"password": PASSWORD})),
        ("/api/keys", json!({"name": "k", "scopes": ["read"]})),
    ] {
        let r = bearer_post(&app, path, &access(&pair), &body).await;
        assert_eq!(error_of(r).await, "session_required", "{path}");
    }
    assert_eq!(app.me(&c).await["email"], "ann@example.com");
}

#[tokio::test]
async fn a_magic_link_or_code_signs_in_for_tokens() {
    let (app, sink) = crate::helpers::app_with_mail(&[]).await;
    app.user("ann@example.com").await;
    sink.wait_for("ann@example.com", 1).await;
    let ask = json!({"email": "ann@example.com"});
    assert_eq!(
        app.post_json_with(&client(), "/api/auth/magic-link", &ask)
            .await
            .status(),
        202
    );
    let mail = sink.wait_for("ann@example.com", 2).await;
    let r = app
        .post_json_with(
            &client(),
            "/api/auth/magic-link/consume",
            &json!({"email": "ann@example.com", "code": mail.code(), "issue_tokens": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().contains("tollgate_session")),
        "no session cookie"
    );
    let pair: Value = r.json().await.unwrap();
    assert_eq!(me_status(&app, &access(&pair)).await, 200);
    assert_eq!(refresh(&app, &refresh_of(&pair)).await.status(), 200);
}

#[tokio::test]
async fn a_plan_change_reaches_the_gate_at_once_and_the_claims_at_the_next_refresh() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let pair = login_tokens(&app, "ann@example.com").await;
    assert_eq!(decode(&access(&pair)).1["plan"], "free");

    app.map_customer_of(&c, "cus_ann").await;
    let now = app.state.clock.now();
    app.deliver(&pro_subscription_updated(
        &app,
        "ann",
        "cus_ann",
        "active",
        now,
        json!({}),
    ))
    .await;
    // tollgate's own gate applies the access of now, whatever the token says.
    assert_eq!(
        bearer_get(&app, "/api/demo/pro", &access(&pair))
            .await
            .status(),
        200
    );
    let next: Value = refresh(&app, &refresh_of(&pair))
        .await
        .json()
        .await
        .unwrap();
    let claims = decode(&access(&next)).1;
    assert_eq!(claims["plan"], "pro");
    assert_eq!(claims["status"], "active");

    // A subscription that cancels soon: the token does not outlive the paid access.
    let ends = now + 120;
    let cancelling = pro_subscription_updated(
        &app,
        "ann",
        "cus_ann",
        "active",
        now + 1,
        json!({"cancel_at": ends}),
    );
    app.deliver(&cancelling).await;
    let last: Value = refresh(&app, &refresh_of(&next))
        .await
        .json()
        .await
        .unwrap();
    let claims = decode(&access(&last)).1;
    assert_eq!(claims["plan"], "pro");
    assert_eq!(claims["exp"], ends);
    assert!(last["expires_in"].as_i64().unwrap() <= 120);
}

#[tokio::test]
async fn a_renewal_that_is_late_does_not_shorten_tokens() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.map_customer_of(&c, "cus_ann").await;
    let now = app.state.clock.now();
    app.deliver(&pro_subscription_updated(
        &app,
        "ann",
        "cus_ann",
        "active",
        now,
        json!({}),
    ))
    .await;
    // The period ended (in 10 days) and Stripe's renewal has not arrived yet: still pro, and a
    // token lives its full lifetime (not born expired at the past period end).
    app.state.clock.advance(11 * 86_400);
    let pair = login_tokens(&app, "ann@example.com").await;
    assert_eq!(pair["expires_in"], 600);
    assert_eq!(decode(&access(&pair)).1["plan"], "pro");
    assert_eq!(me_status(&app, &access(&pair)).await, 200);
}
