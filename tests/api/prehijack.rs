//! No pre-hijacking through a mailbox proof: a password set on an address before its owner proved
//! the mailbox, and every session from before that proof, stop working once the owner proves it.

use serde_json::json;

use crate::helpers::{PASSWORD, SmtpSink, TestApp, client, me_status, session_cookie};

const VICTIM: &str = "victim@example.com";

async fn app_with_mail(privacy: bool) -> (TestApp, SmtpSink) {
    crate::helpers::app_with_mail(&[("TOLLGATE_REGISTRATION_PRIVACY", &privacy.to_string())]).await
}

/// The attacker registers the victim's address with its own password; in normal mode it keeps the
/// session registration opens.
async fn attacker_registers(app: &TestApp) -> Option<String> {
    let register = json!({"email": VICTIM, "password": PASSWORD});
    let r = app
        .post_json_with(&client(), "/api/auth/register", &register)
        .await;
    session_cookie(r.headers())
}

/// An API key made with the session `cookie`.
async fn make_key(app: &TestApp, cookie: &str) -> String {
    let made: serde_json::Value = client()
        .post(app.url("/api/keys"))
        .header("cookie", cookie)
        .header("content-type", "application/json")
        .body(json!({"name": "mine now", "scopes": ["read"]}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    made["key"].as_str().expect("a key").to_owned()
}

/// The victim asks for a magic link (the `nth` mail to the address) and signs in with it: the
/// victim's client and session cookie.
async fn victim_signs_in_by_magic_link(
    app: &TestApp,
    sink: &SmtpSink,
    nth: usize,
) -> (reqwest::Client, String) {
    let victim = client();
    let asked = app
        .post_json_with(&victim, "/api/auth/magic-link", &json!({"email": VICTIM}))
        .await;
    assert_eq!(asked.status(), 202);
    let mail = sink.wait_for(VICTIM, nth).await;
    let consumed = app
        .post_json_with(
            &victim,
            "/api/auth/magic-link/consume",
            &json!({"token": mail.token("magic")}),
        )
        .await;
    assert_eq!(consumed.status(), 200);
    let cookie = session_cookie(consumed.headers()).expect("victim's session");
    (victim, cookie)
}

#[tokio::test]
async fn an_attackers_password_and_session_die_when_the_owner_signs_in_by_magic_link() {
    for privacy in [false, true] {
        let (app, sink) = app_with_mail(privacy).await;
        let attacker_cookie = attacker_registers(&app).await;
        assert_eq!(attacker_cookie.is_some(), !privacy, "privacy={privacy}");
        sink.wait_for(VICTIM, 1).await;
        // With its session, the attacker makes an API key that would outlive a password.
        let attacker_key = match &attacker_cookie {
            Some(cookie) => Some(make_key(&app, cookie).await),
            None => None,
        };

        let (_, victim_cookie) = victim_signs_in_by_magic_link(&app, &sink, 2).await;

        if let Some(key) = &attacker_key {
            let me = client()
                .get(app.url("/api/me"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert_eq!(me.status(), 401, "the attacker's API key ended");
        }

        if let Some(cookie) = &attacker_cookie {
            assert_eq!(
                me_status(&app, cookie).await,
                401,
                "attacker's session ended"
            );
        }
        assert_eq!(
            app.login_status(VICTIM, PASSWORD).await,
            401,
            "privacy={privacy}: the attacker's password was removed"
        );
        assert_eq!(
            me_status(&app, &victim_cookie).await,
            200,
            "the victim is in"
        );
    }
}

#[tokio::test]
async fn verifying_from_another_browser_without_the_password_removes_it_and_ends_sessions() {
    for privacy in [false, true] {
        let (app, sink) = app_with_mail(privacy).await;
        let attacker_cookie = attacker_registers(&app).await;
        let mail = sink.wait_for(VICTIM, 1).await;

        // The owner opens the verification link in their own browser, knowing no password.
        let verified = app
            .post_json_with(
                &client(),
                "/api/auth/verify-email",
                &json!({"token": mail.token("verify-email")}),
            )
            .await;
        assert_eq!(verified.status(), 200, "privacy={privacy}");

        if let Some(cookie) = &attacker_cookie {
            assert_eq!(
                me_status(&app, cookie).await,
                401,
                "attacker's session ended"
            );
        }
        assert_eq!(
            app.login_status(VICTIM, PASSWORD).await,
            401,
            "privacy={privacy}: the unproven password was removed"
        );
    }
}

#[tokio::test]
async fn the_registrant_keeps_the_password_when_verifying_in_its_session_or_with_it() {
    for privacy in [false, true] {
        let (app, sink) = app_with_mail(privacy).await;
        let registrant = client();
        let register = json!({"email": VICTIM, "password": PASSWORD});
        app.post_json_with(&registrant, "/api/auth/register", &register)
            .await;
        let mail = sink.wait_for(VICTIM, 1).await;
        // Normal mode: the registrant's own session; privacy mode (no session): the password.
        let body = if privacy {
            json!({"token": mail.token("verify-email"), "password": PASSWORD})
        } else {
            json!({"token": mail.token("verify-email")})
        };
        let verified = app
            .post_json_with(&registrant, "/api/auth/verify-email", &body)
            .await;
        assert_eq!(verified.status(), 200, "privacy={privacy}");
        assert_eq!(
            app.login_status(VICTIM, PASSWORD).await,
            200,
            "privacy={privacy}: the registrant's password works"
        );
        if !privacy {
            let me = registrant.get(app.url("/api/me")).send().await.unwrap();
            assert_eq!(me.status(), 200, "the registrant's session goes on");
        }
    }
}

#[tokio::test]
async fn privacy_mode_registration_obeys_the_per_address_mail_limit() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .with("SMTP_URL", &sink.url())
        .with("TOLLGATE_REGISTRATION_PRIVACY", "true")
        .with("TOLLGATE_RATE_LIMIT", "on")
        .spawn()
        .await;
    // Five mailing requests per address and hour, the same as reset and magic-link requests.
    let register = json!({"email": VICTIM, "password": PASSWORD});
    for i in 1..=5 {
        let r = app
            .post_json_with(&client(), "/api/auth/register", &register)
            .await;
        assert_eq!(r.status(), 202, "registration {i}");
    }
    sink.wait_for(VICTIM, 5).await;
    let sixth = app
        .post_json_with(&client(), "/api/auth/register", &register)
        .await;
    assert_eq!(sixth.status(), 429);
    assert!(sixth.headers().get("retry-after").is_some());
    // The limit is shared with the other mailing requests of the address.
    let magic = app
        .post_json_with(&client(), "/api/auth/magic-link", &json!({"email": VICTIM}))
        .await;
    assert_eq!(magic.status(), 429);
    assert_eq!(sink.to(VICTIM).len(), 5, "no sixth mail");
}

#[tokio::test]
async fn an_email_change_link_the_attacker_kept_dies_when_the_owner_proves_the_mailbox() {
    let (app, sink) = app_with_mail(false).await;
    let attacker = attacker_registers(&app).await.expect("attacker's session");
    sink.wait_for(VICTIM, 1).await;
    // The attacker asks to move the account to its own address and keeps the link.
    let r = crate::helpers::post_with_cookie(
        &app,
        "/api/auth/email/change",
        &attacker,
        &json!({"password": PASSWORD, "new_email": "evil@example.com"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let kept = sink
        .wait_for("evil@example.com", 1)
        .await
        .token("confirm-email");

    // (The victim's mailbox also got the change notice.)
    let (victim, _) = victim_signs_in_by_magic_link(&app, &sink, 3).await;

    let r = app
        .post_json_with(
            &client(),
            "/api/auth/email/confirm",
            &json!({"token": kept}),
        )
        .await;
    assert_eq!(r.status(), 400, "the kept link is dead");
    assert_eq!(crate::helpers::error_of(r).await, "token_invalid");
    assert_eq!(app.me(&victim).await["email"], VICTIM);
}

#[tokio::test]
async fn in_privacy_mode_the_signup_form_answers_alike_and_signs_nobody_in() {
    let (app, sink) = app_with_mail(true).await;
    app.post_json_with(
        &client(),
        "/api/auth/register",
        &json!({"email": "taken@example.com", "password": PASSWORD}),
    )
    .await;
    sink.wait_for("taken@example.com", 1).await;
    let mut pages = Vec::new();
    for address in ["taken@example.com", VICTIM] {
        let browser = client();
        let token = app.csrf_token(&browser, "/signup").await;
        let r = browser
            .post(app.url("/signup"))
            .form(&[
                ("csrf_token", token.as_str()),
                ("email", address),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{address}");
        assert!(
            session_cookie(r.headers()).is_none(),
            "{address}: no session"
        );
        let text = r.text().await.unwrap();
        assert!(text.contains("Check your email"), "{address}");
        pages.push(text.replace(&token, ""));
        assert_eq!(app.get_with(&browser, "/api/me").await.status(), 401);
    }
    // The two pages differ only in their CSRF token.
    assert_eq!(pages[0], pages[1]);
}

#[tokio::test]
async fn in_privacy_mode_a_re_registration_ends_the_sessions_of_the_pending_account() {
    // An unverified account's session can only exist from before privacy mode was turned on.
    let db = {
        let (app, sink) = app_with_mail(false).await;
        let cookie = attacker_registers(&app).await.expect("session");
        sink.wait_for(VICTIM, 1).await;
        (app.db.clone(), cookie)
    };
    let (db, attacker) = db;
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .on_db(db)
        .with("SMTP_URL", &sink.url())
        .with("TOLLGATE_REGISTRATION_PRIVACY", "true")
        .spawn()
        .await;
    assert_eq!(me_status(&app, &attacker).await, 200);
    let r = app
        .post_json_with(
            &client(),
            "/api/auth/register",
            &json!({"email": VICTIM, "password": "the victim's own passphrase"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        me_status(&app, &attacker).await,
        401,
        "the pending session ended"
    );
}

#[tokio::test]
async fn a_mistyped_password_on_verification_is_refused_and_removes_nothing() {
    let (app, sink) = app_with_mail(false).await;
    app.register_with(&client(), VICTIM, PASSWORD).await;
    let token = sink.wait_for(VICTIM, 1).await.token("verify-email");
    let verify = |password: &'static str| {
        let body = json!({"token": token, "password": password});
        let app = &app;
        async move {
            app.post_json_with(&client(), "/api/auth/verify-email", &body)
                .await
        }
    };
    let typo = verify("correct horse battery stapel").await;
    assert_eq!(typo.status(), 401);
    assert_eq!(crate::helpers::error_of(typo).await, "invalid_credentials");
    assert_eq!(
        app.login_status(VICTIM, PASSWORD).await,
        200,
        "the password is kept"
    );
    // The link still works with the right password.
    assert_eq!(verify(PASSWORD).await.status(), 200);
    assert_eq!(app.login_status(VICTIM, PASSWORD).await, 200);
}

#[tokio::test]
async fn privacy_mode_registrations_refused_for_bad_input_do_not_use_up_the_mail_limit() {
    let (app, sink) = app_with_mail(true).await;
    let app = TestApp::builder()
        .on_db(app.db.clone())
        .with("SMTP_URL", &sink.url())
        .with("TOLLGATE_REGISTRATION_PRIVACY", "true")
        .with("TOLLGATE_RATE_LIMIT", "on")
        .spawn()
        .await;
    for _ in 0..6 {
        let r = app
            .post_json_with(
                &client(),
                "/api/auth/register",
                &json!({"email": VICTIM, "password": "short"}),
            )
            .await;
        assert_eq!(r.status(), 400);
    }
    let r = app
        .post_json_with(
            &client(),
            "/api/auth/register",
            &json!({"email": VICTIM, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 202, "typos did not spend the address's mail");
    sink.wait_for(VICTIM, 1).await;
}
