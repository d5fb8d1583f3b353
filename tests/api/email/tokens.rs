//! Mailed tokens: password resets, magic links and codes, and the tokens refused.

use serde_json::{Value, json};

use super::{anonymous, app_with_mail, ask_for_mail, change_link, post};
use crate::helpers::{PASSWORD, client, error_of};

#[tokio::test]
async fn password_reset_ends_sessions_does_not_sign_in_and_sends_a_notice() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = app.user("ann@example.com").await;
    sink.wait_for("ann@example.com", 1).await;

    let known = ask_for_mail(&app, "/api/auth/password/forgot", "ann@example.com").await;
    let unknown = ask_for_mail(&app, "/api/auth/password/forgot", "nobody@example.com").await;
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    assert_eq!(
        known.bytes().await.unwrap(),
        unknown.bytes().await.unwrap(),
        "byte-identical"
    );

    let mail = sink.wait_for("ann@example.com", 2).await;
    let token = mail.token("reset-password");
    assert!(sink.to("nobody@example.com").is_empty());

    // A refused password keeps the token usable.
    let short = anonymous(
        &app,
        "/api/auth/password/reset",
        json!({"token": token, "password": "short"}),
    )
    .await;
    assert_eq!(error_of(short).await, "password_too_short");
    let reset = anonymous(
        &app,
        "/api/auth/password/reset",
        json!({"token": token, "password": "a fresh new passphrase"}),
    )
    .await;
    assert_eq!(reset.status(), 204);
    assert!(reset.headers().get("set-cookie").is_none(), "no sign-in");

    assert_eq!(
        app.get_with(&c, "/api/me").await.status(),
        401,
        "sessions ended"
    );
    let login = anonymous(
        &app,
        "/api/auth/login",
        json!({"email": "ann@example.com", "password": "a fresh new passphrase"}),
    )
    .await;
    assert_eq!(login.status(), 200);
    assert_eq!(
        login.json::<Value>().await.unwrap()["email_verified"],
        true,
        "a reset proves the address"
    );
    let notice = sink.wait_for("ann@example.com", 3).await;
    assert!(notice.subject().contains("password was changed"));
    let reuse = anonymous(
        &app,
        "/api/auth/password/reset",
        json!({"token": token, "password": "yet another passphrase"}),
    )
    .await;
    assert_eq!(error_of(reuse).await, "token_invalid");
}

#[tokio::test]
async fn magic_links_sign_in_once_and_codes_die_after_five_wrong_tries() {
    let (app, sink) = app_with_mail(&[]).await;
    app.user("ann@example.com").await;
    sink.wait_for("ann@example.com", 1).await;

    let r = ask_for_mail(&app, "/api/auth/magic-link", "ann@example.com").await;
    assert_eq!(r.status(), 202);
    let mail = sink.wait_for("ann@example.com", 2).await;
    let token = mail.token("magic");
    // A link scanner's GET uses nothing up.
    assert_eq!(
        client()
            .get(mail.link("magic"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let browser = client();
    let r = post(
        &app,
        &browser,
        "/api/auth/magic-link/consume",
        json!({"token": token}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_some());
    assert_eq!(app.me(&browser).await["email"], "ann@example.com");
    let again = anonymous(
        &app,
        "/api/auth/magic-link/consume",
        json!({"token": token}),
    )
    .await;
    assert_eq!(error_of(again).await, "token_invalid");

    // The code: five wrong tries kill it, even for the right one after.
    ask_for_mail(&app, "/api/auth/magic-link", "ann@example.com").await;
    let mail = sink.wait_for("ann@example.com", 3).await;
    let code = mail.code();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let r = anonymous(
            &app,
            "/api/auth/magic-link/consume",
            json!({"email": "ann@example.com", "code": wrong}),
        )
        .await;
        assert_eq!(error_of(r).await, "token_invalid");
    }
    let r = anonymous(
        &app,
        "/api/auth/magic-link/consume",
        json!({"email": "ann@example.com", "code": code}),
    )
    .await;
    assert_eq!(
        error_of(r).await,
        "token_invalid",
        "dead after five wrong codes"
    );

    ask_for_mail(&app, "/api/auth/magic-link", "ann@example.com").await;
    let mail = sink.wait_for("ann@example.com", 4).await;
    let r = anonymous(
        &app,
        "/api/auth/magic-link/consume",
        json!({"email": "ANN@example.com", "code": mail.code()}),
    )
    .await;
    assert_eq!(r.status(), 200, "a right code signs in");
}

#[tokio::test]
async fn magic_links_never_create_accounts_and_answer_alike() {
    let (app, sink) = app_with_mail(&[]).await;
    app.user("ann@example.com").await;
    let known = ask_for_mail(&app, "/api/auth/magic-link", "ann@example.com").await;
    let unknown = ask_for_mail(&app, "/api/auth/magic-link", "new@example.com").await;
    assert_eq!(known.bytes().await.unwrap(), unknown.bytes().await.unwrap());
    sink.wait_for("ann@example.com", 2).await;
    assert_eq!(app.count("users").await, 1);
    assert!(sink.to("new@example.com").is_empty());
}

#[tokio::test]
async fn tokens_are_refused_when_tampered_expired_misused_or_for_an_old_address() {
    let (app, sink) = app_with_mail(&[("TOLLGATE_TOKEN_TTL_MAGIC_SECS", "60")]).await;
    let c = app.user("ann@example.com").await;
    let verify = sink
        .wait_for("ann@example.com", 1)
        .await
        .token("verify-email");
    ask_for_mail(&app, "/api/auth/password/forgot", "ann@example.com").await;
    let reset = sink
        .wait_for("ann@example.com", 2)
        .await
        .token("reset-password");

    let cases = [
        (
            "/api/auth/magic-link/consume",
            json!({"token": reset}),
            "a reset token as a magic link",
        ),
        (
            "/api/auth/verify-email",
            json!({"token": format!("{reset}x")}),
            "tampered",
        ),
        ("/api/auth/verify-email", json!({"token": ""}), "empty"),
        (
            "/api/auth/email/confirm",
            json!({"token": verify}),
            "a verify token as an email change",
        ),
    ];
    for (path, body, why) in cases {
        let r = anonymous(&app, path, body).await;
        assert_eq!(r.status(), 400, "{why}");
        assert_eq!(error_of(r).await, "token_invalid", "{why}");
    }

    // Expiry, moved by the shared clock.
    ask_for_mail(&app, "/api/auth/magic-link", "ann@example.com").await;
    let magic = sink.wait_for("ann@example.com", 3).await.token("magic");
    app.state.clock.advance(61);
    let r = anonymous(
        &app,
        "/api/auth/magic-link/consume",
        json!({"token": magic}),
    )
    .await;
    assert_eq!(error_of(r).await, "token_invalid", "expired");

    // An email change kills tokens sent to the old address.
    let confirm = change_link(&app, &c, &sink, "ann@new.example").await;
    let body = json!({"token": confirm, "password": PASSWORD});
    let r = anonymous(&app, "/api/auth/email/confirm", body).await;
    assert_eq!(r.status(), 200);
    let r = anonymous(&app, "/api/auth/verify-email", json!({"token": verify})).await;
    assert_eq!(
        error_of(r).await,
        "token_invalid",
        "a token for the old address"
    );
}
