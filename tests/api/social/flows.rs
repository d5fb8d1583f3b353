//! Sign-up and sign-in with an OpenID Connect provider and with GitHub, a paid sign-up through
//! Checkout, the buttons, and what the authorization request carries.

use serde_json::json;

use super::{app_with_providers, consent, location, sign_in, start, verified};
use crate::helpers::client;

#[tokio::test]
async fn a_new_verified_identity_makes_an_account_without_a_password_and_signs_in_again() {
    let Some((app, _sink, providers)) = app_with_providers().await else {
        return;
    };
    providers
        .next(verified("oidc-ann", "ann@example.com"))
        .await;
    let c = client();
    let r = sign_in(&app, &c, "oidc").await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(location(&r), "/account");
    let me = app.me(&c).await;
    assert_eq!(me["email"], "ann@example.com");
    assert_eq!(me["email_verified"], true, "the provider proved it");
    // No password: a password sign-in cannot work.
    assert_eq!(
        app.login_status("ann@example.com", "anything at all").await,
        401
    );

    // Again, from another browser: the same account.
    providers
        .next(verified("oidc-ann", "ann@example.com"))
        .await;
    let other = client();
    let r = sign_in(&app, &other, "oidc").await;
    assert_eq!(r.status(), 303);
    assert_eq!(app.me(&other).await["id"], me["id"]);
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn github_signs_up_with_its_verified_primary_address_and_refuses_an_unverified_one() {
    let Some((app, _sink, providers)) = app_with_providers().await else {
        return;
    };
    providers
        .next(json!({"github": {"id": 4242, "emails": [
            {"email": "old@example.com", "primary": false, "verified": true},
            {"email": "bo@example.com", "primary": true, "verified": true}
        ]}}))
        .await;
    let c = client();
    let r = sign_in(&app, &c, "github").await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(app.me(&c).await["email"], "bo@example.com");

    providers
        .next(json!({"github": {"id": 4343, "emails": [
            {"email": "cy@example.com", "primary": true, "verified": false}
        ]}}))
        .await;
    let r = sign_in(&app, &client(), "github").await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("no verified email address"), "{page}");
    assert_eq!(app.count("users").await, 1, "nothing made");
}

#[tokio::test]
async fn the_authorization_request_carries_pkce_s256_a_state_a_nonce_and_the_exact_redirect() {
    let Some((app, _sink, _providers)) = app_with_providers().await else {
        return;
    };
    let c = client();
    let url = start(&app, &c, "oidc", &[]).await;
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43, "SHA-256, base64url");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "tollgate-test");
    assert!(q["scope"].contains("openid") && q["scope"].contains("email"));
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43);
    assert_eq!(q["redirect_uri"], app.url("/auth/oidc/callback"));
    let login = app.get_with(&c, "/login").await.text().await.unwrap();
    assert!(login.contains("Continue with Acme ID") && login.contains("Continue with GitHub"));
    let signup = app.get_with(&c, "/signup").await.text().await.unwrap();
    assert!(signup.contains(r#"action="/auth/github""#));
    // A provider that is not configured.
    let csrf = app.csrf_token(&c, "/login").await;
    let r = c
        .post(app.url("/auth/google"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_paid_sign_up_with_a_provider_goes_on_to_checkout() {
    let Some((app, _sink, providers)) = app_with_providers().await else {
        return;
    };
    providers
        .next(verified("oidc-dee", "dee@example.com"))
        .await;
    let c = client();
    let signup = app
        .get_with(&c, "/signup?plan=pro")
        .await
        .text()
        .await
        .unwrap();
    assert!(signup.contains(r#"name="plan" value="pro""#), "{signup}");
    let authorize = start(&app, &c, "oidc", &[("plan", "pro"), ("interval", "month")]).await;
    let r = c.get(consent(&authorize).await).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert!(to.contains("/checkout/"), "Checkout next: {to}");
    assert_eq!(app.me(&c).await["email"], "dee@example.com");
}

#[tokio::test]
async fn a_user_with_two_factor_on_still_gives_the_code_after_a_provider() {
    let Some((app, _sink, providers)) = app_with_providers().await else {
        return;
    };
    providers
        .next(verified("oidc-eve", "eve@example.com"))
        .await;
    let c = client();
    assert_eq!(sign_in(&app, &c, "oidc").await.status(), 303);
    if crate::second_factor::enable(&app, &c).await.is_none() {
        return;
    }
    providers
        .next(verified("oidc-eve", "eve@example.com"))
        .await;
    let other = client();
    let r = sign_in(&app, &other, "oidc").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Enter your code"));
    assert_eq!(app.get_with(&other, "/api/me").await.status(), 401);
}
