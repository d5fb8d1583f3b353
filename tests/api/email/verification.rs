//! Address verification: the link sent at sign-up, privacy mode's registrations, and the
//! development mailbox.

use serde_json::{Value, json};

use super::{anonymous, app_with_mail, post};
use crate::helpers::{PASSWORD, TestApp, client, error_of};

#[tokio::test]
async fn registration_sends_a_verification_link_whose_get_changes_nothing() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = app.user("ann@example.com").await;
    let mail = sink.wait_for("ann@example.com", 1).await;
    assert!(mail.subject().contains("Confirm your email address"));
    let link = mail.link("verify-email");
    assert!(link.starts_with(&app.url("/verify-email?token=")), "{link}");

    // Opening the link shows a form and changes nothing.
    let page = client().get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Confirm my address"));
    assert_eq!(app.me(&c).await["email_verified"], false);

    let token = mail.token("verify-email");
    let r = post(&app, &c, "/api/auth/verify-email", json!({"token": token})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["email_verified"], true);
    let again = post(&app, &c, "/api/auth/verify-email", json!({"token": token})).await;
    assert_eq!(again.status(), 400);
    assert_eq!(error_of(again).await, "token_invalid");

    let resend = post(&app, &c, "/api/auth/verify-email/request", json!({})).await;
    assert_eq!(resend.status(), 202);
    sink.wait_for("ann@example.com", 2).await;
}

/// Registers `email` with `password` from a fresh client; the answer.
async fn register(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    let body = json!({"email": email, "password": password});
    anonymous(app, "/api/auth/register", body).await
}

#[tokio::test]
async fn privacy_mode_answers_alike_and_protects_unverified_addresses() {
    let (app, sink) = app_with_mail(&[("TOLLGATE_REGISTRATION_PRIVACY", "true")]).await;
    let new = register(&app, "ann@example.com", PASSWORD).await;
    assert_eq!(new.status(), 202);
    assert!(new.headers().get("set-cookie").is_none(), "no session");
    let new_body = new.bytes().await.unwrap();
    let verify = sink.wait_for("ann@example.com", 1).await;

    // Unverified: password sign-in is refused like a wrong password.
    assert_eq!(app.login_status("ann@example.com", PASSWORD).await, 401);

    // A second registration of the unverified address replaces the pending password.
    let again = register(&app, "ann@example.com", "the real owner's passphrase").await;
    assert_eq!(again.bytes().await.unwrap(), new_body, "same answer");
    let second = sink.wait_for("ann@example.com", 2).await;
    assert_eq!(app.count("users").await, 1);

    // The verification POST, with the password chosen at sign-up, signs in with that password
    // in force.
    let browser = client();
    let r = post(
        &app,
        &browser,
        "/api/auth/verify-email",
        json!({"token": second.token("verify-email"), "password": "the real owner's passphrase"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.me(&browser).await["email_verified"], true);
    let stale = anonymous(
        &app,
        "/api/auth/verify-email",
        json!({"token": verify.token("verify-email")}),
    )
    .await;
    assert_eq!(
        stale.status(),
        400,
        "the link of the replaced registration is dead"
    );
    let login = app
        .login_status("ann@example.com", "the real owner's passphrase")
        .await;
    assert_eq!(login, 200);

    // A verified owner: same answer, and a sign-in link instead of an account.
    let taken = register(&app, "ann@example.com", "an attacker's passphrase").await;
    assert_eq!(taken.status(), 202);
    assert_eq!(taken.bytes().await.unwrap(), new_body);
    let warning = sink.wait_for("ann@example.com", 3).await;
    assert!(warning.subject().contains("tried to sign up"));
    assert!(warning.link("magic").contains("/magic?token="));
    let attacker = app
        .login_status("ann@example.com", "an attacker's passphrase")
        .await;
    assert_eq!(attacker, 401);
}

#[tokio::test]
async fn the_development_mailbox_lists_mail_only_without_smtp() {
    let app = TestApp::builder().spawn().await;
    app.user("ann@example.com").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let listed = loop {
        let r: Value = app.get("/dev/mailbox.json").await.json().await.unwrap();
        if r["messages"].as_array().is_some_and(|m| !m.is_empty()) {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the development mailbox never listed the mail"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(listed["messages"][0]["to"], "ann@example.com");
    assert!(
        listed["messages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("/verify-email?token=")
    );
    let page = app.get("/dev/mailbox").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Confirm my address"));

    let (with_smtp, _sink) = app_with_mail(&[]).await;
    assert_eq!(with_smtp.get("/dev/mailbox").await.status(), 404);
    assert_eq!(with_smtp.get("/dev/mailbox.json").await.status(), 404);
}
