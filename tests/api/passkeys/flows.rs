//! Registering, signing in with a passkey alone (session or tokens), the list, renaming and
//! removing, notices, and the pages.

use serde_json::json;

use super::{Device, answer, delete, options, patch, post, register, sign_in, verified_user};
use crate::helpers::{app_with_mail, client};

#[tokio::test]
async fn a_registered_passkey_signs_in_without_a_username_and_is_listed_with_its_last_use() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "ann@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    let options = options(&app, &c, "/api/account/passkeys/options", json!({})).await;
    let public_key = &options["publicKey"];
    assert_eq!(public_key["rp"]["id"], "localhost", "{options}");
    assert_eq!(
        public_key["authenticatorSelection"]["residentKey"],
        "required"
    );
    assert_eq!(
        public_key["authenticatorSelection"]["userVerification"],
        "required"
    );
    let handle = public_key["user"]["id"].as_str().unwrap();
    assert!(
        handle.len() >= 43,
        "a 32-byte handle, not the user id: {handle}"
    );
    assert!(!handle.contains("usr"));

    let mut body = answer(&options, device.create(&options));
    body["name"] = json!("  Laptop  ");
    let (status, passkey) = post(&app, &c, "/api/account/passkeys", &body).await;
    assert_eq!(status, 201, "{passkey}");
    assert_eq!(passkey["name"], "Laptop");
    assert!(passkey["id"].as_str().unwrap().starts_with("pk_"));
    assert!(passkey["last_used_at"].is_null());
    let mail = sink
        .wait_for_subject("ann@example.com", "passkey was added")
        .await;
    assert!(mail.text().contains("Laptop"), "{}", mail.text());

    // A new browser, no email typed: the passkey says who it is.
    let other = client();
    let (status, me) = sign_in(&app, &other, &mut device, json!({})).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "ann@example.com");
    assert_eq!(app.me(&other).await["email"], "ann@example.com");

    let list: serde_json::Value = app
        .get_with(&c, "/api/account/passkeys")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(list[0]["last_used_at"].as_i64().is_some(), "{list}");
    assert!(
        list[0].get("credential").is_none(),
        "no key material: {list}"
    );
}

#[tokio::test]
async fn a_passkey_sign_in_can_ask_for_tokens_instead_of_a_session() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "bo@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    register(&app, &c, &mut device, "Phone").await;
    let other = client();
    let (status, pair) = sign_in(&app, &other, &mut device, json!({"token": true})).await;
    assert_eq!(status, 200, "{pair}");
    assert!(pair["access_token"].as_str().is_some(), "{pair}");
    assert!(pair["refresh_token"].as_str().is_some(), "{pair}");
    let me = app.get_with(&other, "/api/me").await;
    assert_eq!(me.status(), 401, "no session came with the tokens");
}

#[tokio::test]
async fn passkeys_are_renamed_and_removed_and_a_removed_one_no_longer_signs_in() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "cy@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    let passkey = register(&app, &c, &mut device, "Old name").await;
    let id = passkey["id"].as_str().unwrap();
    let path = format!("/api/account/passkeys/{id}");

    assert_eq!(
        patch(&app, &c, &path, &json!({"name": "Work laptop"})).await,
        204
    );
    for bad in [
        json!({"name": ""}),
        json!({"name": "x".repeat(65)}),
        json!({"name": "a\u{7}b"}),
        json!({"name": "evil\u{202e}yek"}),
        json!({"name": "zero\u{200b}width"}),
        json!({"name": "two\u{2028}lines"}),
        json!({"name": "private\u{e000}use"}),
        json!({"name": "pile\u{301}\u{301}\u{301}"}),
    ] {
        assert_eq!(patch(&app, &c, &path, &bad).await, 400, "{bad}");
    }
    let list: serde_json::Value = app
        .get_with(&c, "/api/account/passkeys")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "Work laptop");

    // Another account cannot see, rename or remove it.
    let stranger = verified_user(&app, &sink, "eve@example.com").await;
    let renamed = patch(&app, &stranger, &path, &json!({"name": "mine"})).await;
    assert_eq!(renamed, 404);
    assert_eq!(delete(&app, &stranger, &path).await, 404);

    assert_eq!(delete(&app, &c, &path).await, 204);
    sink.wait_for_subject("cy@example.com", "passkey was removed")
        .await;
    let (status, body) = sign_in(&app, &client(), &mut device, json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("passkey_invalid"))
    );
    assert_eq!(delete(&app, &c, &path).await, 404, "already gone");
}

#[tokio::test]
async fn the_pages_offer_passkeys_and_serve_the_one_script_from_this_origin() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "di@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    let login = app.get("/login").await.text().await.unwrap();
    assert!(login.contains(r#"data-passkey="sign-in""#), "{login}");
    assert!(login.contains(r#"<script src="/static/passkeys.js" defer></script>"#));
    let signup = app.get("/signup").await.text().await.unwrap();
    assert!(
        !signup.contains("<script"),
        "no script where none is needed"
    );

    let script = app.get("/static/passkeys.js").await;
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let csp = script.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");

    let page = app
        .get_with(&c, "/account/passkeys")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("No passkeys yet"), "{page}");
    assert!(page.contains(r#"data-passkey="register""#));
    register(&app, &c, &mut device, "Desk <key>").await;
    let page = app
        .get_with(&c, "/account/passkeys")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Desk &lt;key&gt;"), "escaped: {page}");
    let account = app.get_with(&c, "/account").await.text().await.unwrap();
    assert!(account.contains(r#"href="/account/passkeys""#));
    // "Confirm it is you" offers the passkey, with the script.
    let confirm = app
        .get_with(&c, "/account/confirm")
        .await
        .text()
        .await
        .unwrap();
    assert!(confirm.contains(r#"data-passkey="reauth""#), "{confirm}");
    assert!(confirm.contains("/static/passkeys.js"));
}

#[tokio::test]
async fn a_password_reset_removes_every_passkey_as_it_ends_every_session() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "gil@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    register(&app, &c, &mut device, "Whose?").await;
    let (status, _) = post(
        &app,
        &client(),
        "/api/auth/password/forgot",
        &json!({"email": "gil@example.com"}),
    )
    .await;
    assert_eq!(status, 202);
    let mail = sink.wait_for_subject("gil@example.com", "eset").await;
    let body =
        json!({"token": mail.token("reset-password"), "password": "the owner's new passphrase"});
    let (status, _) = post(&app, &client(), "/api/auth/password/reset", &body).await;
    assert_eq!(status, 204);
    assert_eq!(app.count("passkeys").await, 0);
    let (status, body) = sign_in(&app, &client(), &mut device, json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("passkey_invalid"))
    );
}
