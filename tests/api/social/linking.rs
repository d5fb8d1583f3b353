//! Linking without takeover: an identity whose verified address an account has is linked only
//! when the owner confirms from their mailbox in the browser that asked; the attacker whose
//! provider claims the victim's address gets nothing. Linking and unlinking from the account,
//! and never the last way in.

use serde_json::json;

use super::{app_with_providers, consent, location, sign_in, verified};
use crate::helpers::{PASSWORD, TestApp, client};

/// The `tgl_` link of the newest "Link … sign-in" mail to `address`.
async fn link_token(sink: &crate::helpers::SmtpSink, address: &str) -> String {
    let mail = sink.wait_for_subject(address, "sign-in to your").await;
    mail.token("auth/link")
}

/// POSTs a form with only its CSRF token.
async fn post_form(
    app: &TestApp,
    c: &reqwest::Client,
    path: &str,
    csrf: &str,
) -> reqwest::Response {
    c.post(app.url(path))
        .form(&[("csrf_token", csrf)])
        .send()
        .await
        .unwrap()
}

/// Presses "Link and sign in" on `c`.
async fn confirm(app: &TestApp, c: &reqwest::Client, token: &str) -> reqwest::Response {
    let csrf = app
        .csrf_token(c, &format!("/auth/link?token={token}"))
        .await;
    c.post(app.url("/auth/link"))
        .form(&[("csrf_token", csrf.as_str()), ("token", token)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_provider_claiming_an_existing_address_links_only_when_the_owner_confirms() {
    let Some((app, sink, providers)) = app_with_providers().await else {
        return;
    };
    let owner = app.user("ann@example.com").await;
    let owner_id = app.me(&owner).await["id"].clone();

    // The attacker's provider account claims the victim's address, verified.
    providers
        .next(verified("attacker-sub", "ann@example.com"))
        .await;
    let attacker = client();
    let r = sign_in(&app, &attacker, "oidc").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Check your email") && page.contains("ann@example.com"),
        "{page}"
    );
    assert_eq!(
        app.get_with(&attacker, "/api/me").await.status(),
        401,
        "never silently"
    );
    assert_eq!(app.count("social_identities").await, 0);

    // The mail reaches the owner, whose browser is not the one that asked: nothing is linked,
    // and the link dies.
    let token = link_token(&sink, "ann@example.com").await;
    let r = confirm(&app, &owner, &token).await;
    assert_eq!(r.status(), 400);
    assert_eq!(app.count("social_identities").await, 0);
    // The attacker, in the browser that asked, holds no mailbox: the token is not theirs to use,
    // and it is spent anyway.
    let r = confirm(&app, &attacker, &token).await;
    assert_eq!(r.status(), 400);
    assert_eq!(app.get_with(&attacker, "/api/me").await.status(), 401);
    assert_eq!(
        app.login_status("ann@example.com", PASSWORD).await,
        200,
        "untouched"
    );
    assert_eq!(app.me(&owner).await["id"], owner_id);
}

#[tokio::test]
async fn the_owner_links_by_the_mailed_link_in_the_same_browser_and_signs_in_with_it_after() {
    let Some((app, sink, providers)) = app_with_providers().await else {
        return;
    };
    let owner_session = app.user("bo@example.com").await;
    let owner_id = app.me(&owner_session).await["id"].clone();
    providers.next(verified("bo-sub", "bo@example.com")).await;
    let browser = client();
    let r = sign_in(&app, &browser, "oidc").await;
    assert_eq!(r.status(), 200);
    let token = link_token(&sink, "bo@example.com").await;
    let r = confirm(&app, &browser, &token).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(app.me(&browser).await["id"], owner_id);
    assert_eq!(
        app.me(&browser).await["email_verified"],
        true,
        "the mailbox was proven"
    );
    sink.wait_for_subject("bo@example.com", "was linked").await;
    // Used once.
    assert_eq!(confirm(&app, &browser, &token).await.status(), 400);

    // From now on the provider signs in to that account directly.
    providers.next(verified("bo-sub", "bo@example.com")).await;
    let later = client();
    let r = sign_in(&app, &later, "oidc").await;
    assert_eq!(r.status(), 303);
    assert_eq!(app.me(&later).await["id"], owner_id);
}

#[tokio::test]
async fn an_unverified_provider_address_never_links_or_makes_anything() {
    let Some((app, _sink, providers)) = app_with_providers().await else {
        return;
    };
    app.user("cy@example.com").await;
    for claims in [
        json!({"sub": "s1", "email": "cy@example.com", "email_verified": false}),
        json!({"sub": "s2", "email": "new@example.com", "email_verified": "false"}),
        json!({"sub": "s3", "email": null}),
        json!({"sub": "s4", "email": "num@example.com", "email_verified": 1}),
    ] {
        providers.next(json!({"claims": claims})).await;
        let r = sign_in(&app, &client(), "oidc").await;
        assert_eq!(r.status(), 403, "{claims}");
    }
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("social_identities").await, 0);
    assert_eq!(app.count("pending_links").await, 0);
}

#[tokio::test]
async fn a_signed_in_owner_links_and_unlinks_but_never_the_last_way_in() {
    let Some((app, sink, providers)) = app_with_providers().await else {
        return;
    };
    // An account made by GitHub: no password, GitHub its only way in.
    providers
        .next(json!({"github": {"id": 77, "emails": [
            {"email": "di@example.com", "primary": true, "verified": true}]}}))
        .await;
    let c = client();
    assert_eq!(sign_in(&app, &c, "github").await.status(), 303);
    let csrf = app.csrf_token(&c, "/account/social").await;
    let r = post_form(&app, &c, "/account/social/github/unlink", &csrf).await;
    assert_eq!(location(&r), "/account/social?notice=last_method");
    assert_eq!(app.count("social_identities").await, 1);

    // Link the OpenID Connect provider too (another identity, any address): then GitHub may go.
    providers
        .next(verified("di-oidc", "di.work@example.com"))
        .await;
    let r = post_form(&app, &c, "/account/social/oidc/link", &csrf).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    let authorize = reqwest::Url::parse(&location(&r)).unwrap();
    let r = c.get(consent(&authorize).await).send().await.unwrap();
    assert_eq!(location(&r), "/account/social?notice=linked");
    sink.wait_for_subject("di@example.com", "was linked").await;
    let page = app
        .get_with(&c, "/account/social")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("as di.work@example.com"), "{page}");
    let r = post_form(&app, &c, "/account/social/github/unlink", &csrf).await;
    assert_eq!(location(&r), "/account/social?notice=unlinked");
    assert_eq!(app.count("social_identities").await, 1);
}

#[tokio::test]
async fn an_identity_linked_to_one_account_cannot_be_linked_to_another() {
    let Some((app, sink, providers)) = app_with_providers().await else {
        return;
    };
    providers
        .next(verified("shared-sub", "eve@example.com"))
        .await;
    assert_eq!(sign_in(&app, &client(), "oidc").await.status(), 303);
    // Another account, its address proven, tries to link the same identity.
    let other = app.user("fay@example.com").await;
    crate::second_factor::verify_address(&app, &sink, &other, "fay@example.com").await;
    providers
        .next(verified("shared-sub", "eve@example.com"))
        .await;
    let csrf = app.csrf_token(&other, "/account/social").await;
    let r = post_form(&app, &other, "/account/social/oidc/link", &csrf).await;
    let authorize = reqwest::Url::parse(&location(&r)).unwrap();
    let r = other.get(consent(&authorize).await).send().await.unwrap();
    assert_eq!(r.status(), 409);
    // Linking needs a proven address.
    let unproven = app.user("gil@example.com").await;
    let csrf = app.csrf_token(&unproven, "/account/social").await;
    let r = post_form(&app, &unproven, "/account/social/oidc/link", &csrf).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn an_account_made_by_a_provider_changes_its_email_and_deletes_itself_with_a_recent_proof() {
    let Some((app, sink, providers)) = app_with_providers().await else {
        return;
    };
    providers.next(verified("gus-sub", "gus@example.com")).await;
    let c = client();
    assert_eq!(sign_in(&app, &c, "oidc").await.status(), 303);
    // Fresh from its sign-in, no password asked.
    let body = serde_json::json!({"new_email": "gus.new@example.com"});
    let r = app
        .post_json_with(&c, "/api/auth/email/change", &body)
        .await;
    assert_eq!(r.status(), 202);
    sink.wait_for("gus.new@example.com", 1).await;
    // Past ten minutes, the proof is old: the change asks for a new one.
    app.state.clock.advance(601);
    let r = app
        .post_json_with(&c, "/api/account/delete", &json!({}))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(crate::helpers::error_of(r).await, "reauth_required");
    // A password typed for an account without one proves nothing either.
    let r = app
        .post_json_with(&c, "/api/account/delete", &json!({"password": "guess"}))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(app.count("users").await, 1);
    // Signing in again with the provider is a fresh proof: then it goes.
    providers.next(verified("gus-sub", "gus@example.com")).await;
    assert_eq!(sign_in(&app, &c, "oidc").await.status(), 303);
    let r = app
        .post_json_with(&c, "/api/account/delete", &json!({}))
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn the_last_passkey_of_an_account_without_a_password_or_provider_stays() {
    let Some((app, _sink, providers)) = app_with_providers().await else {
        return;
    };
    providers.next(verified("hal-sub", "hal@example.com")).await;
    let c = client();
    assert_eq!(sign_in(&app, &c, "oidc").await.status(), 303);
    let Some(mut device) = crate::passkeys::Device::new(&app) else {
        return;
    };
    let passkey = crate::passkeys::register(&app, &c, &mut device, "Only key").await;
    // The provider may go: the passkey remains a way in.
    let csrf = app.csrf_token(&c, "/account/social").await;
    let r = post_form(&app, &c, "/account/social/oidc/unlink", &csrf).await;
    assert_eq!(location(&r), "/account/social?notice=unlinked");
    // Then the passkey may not.
    let path = format!("/api/account/passkeys/{}", passkey["id"].as_str().unwrap());
    assert_eq!(crate::passkeys::delete(&app, &c, &path).await, 409);
    assert_eq!(app.count("passkeys").await, 1);
}

#[tokio::test]
async fn an_unlink_racing_the_removal_of_the_last_passkey_leaves_one_way_in() {
    let Some((app, _sink, providers)) = app_with_providers().await else {
        return;
    };
    for n in 0..3 {
        let email = format!("race{n}@example.com");
        providers.next(verified(&format!("race-{n}"), &email)).await;
        let c = client();
        assert_eq!(sign_in(&app, &c, "oidc").await.status(), 303);
        let Some(mut device) = crate::passkeys::Device::new(&app) else {
            return;
        };
        let passkey = crate::passkeys::register(&app, &c, &mut device, "Key").await;
        let path = format!("/api/account/passkeys/{}", passkey["id"].as_str().unwrap());
        let csrf = app.csrf_token(&c, "/account/social").await;
        let (unlinked, removed) = tokio::join!(
            post_form(&app, &c, "/account/social/oidc/unlink", &csrf),
            crate::passkeys::delete(&app, &c, &path)
        );
        let unlinked = location(&unlinked) == "/account/social?notice=unlinked";
        assert!(
            unlinked != (removed == 204),
            "exactly one of the two may go (unlinked {unlinked}, removal {removed})"
        );
    }
}
