//! Addresses that look the same are the same account; invisible characters are refused.

use serde_json::json;

use crate::helpers::{PASSWORD, SmtpSink, client, error_of, spawn_app};

/// Forms of `ann@bücher.de`: (the form, the status of its registration, the error code, what it
/// is). Lookalikes answer as the address; format characters are refused.
const LOOKALIKES: &[(&str, u16, &str, &str)] = &[
    ("ＡＮＮ@ＢÜＣＨＥＲ.ＤＥ", 409, "email_taken", "fullwidth"),
    (
        "ann@xn--bcher-kva.de",
        409,
        "email_taken",
        "punycode domain",
    ),
    ("ann＠bücher.de", 409, "email_taken", "fullwidth at sign"),
    ("ann@bu\u{308}cher.de", 409, "email_taken", "decomposed ü"),
    (
        "ann\u{200b}@bücher.de",
        400,
        "invalid_email",
        "zero-width space",
    ),
    (
        "ann@bü\u{200d}cher.de",
        400,
        "invalid_email",
        "zero-width joiner",
    ),
    (
        "\u{2066}ann@bücher.de",
        400,
        "invalid_email",
        "bidi isolate",
    ),
    (
        "ann\u{fe0f}@bücher.de",
        400,
        "invalid_email",
        "variation selector",
    ),
    (
        "a\u{34f}nn@bücher.de",
        400,
        "invalid_email",
        "grapheme joiner",
    ),
    (
        "ann\u{3164}@bücher.de",
        400,
        "invalid_email",
        "Hangul filler",
    ),
    (
        "ann\u{2800}@bücher.de",
        400,
        "invalid_email",
        "braille blank",
    ),
    ("annx\u{300}@bücher.de", 400, "invalid_email", "stray mark"),
    (
        "\"ann\"@bücher.de",
        400,
        "invalid_email",
        "quoted local part",
    ),
];

#[tokio::test]
async fn lookalike_forms_of_an_address_answer_as_that_address_and_format_characters_are_refused() {
    let app = spawn_app().await;
    app.register_with(&client(), "ann@bücher.de", PASSWORD)
        .await;

    for (address, status, code, why) in LOOKALIKES {
        let r = app
            .post_json_with(
                &client(),
                "/api/auth/register",
                &json!({"email": address, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), *status, "{why}: {address:?}");
        assert_eq!(error_of(r).await, *code, "{why}");
    }
    assert_eq!(app.count("users").await, 1, "never a second account");

    // A lookalike form signs in to the one account.
    let login = app
        .post_json_with(
            &client(),
            "/api/auth/login",
            &json!({"email": "ＡＮＮ@xn--bcher-kva.de", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status(), 200);
}

#[tokio::test]
async fn a_reset_asked_for_a_lookalike_form_goes_to_the_accounts_address() {
    let sink = SmtpSink::start().await;
    let app = crate::helpers::TestApp::builder()
        .with("SMTP_URL", &sink.url())
        .spawn()
        .await;
    app.register_with(&client(), "ann@example.com", PASSWORD)
        .await;
    sink.wait_for("ann@example.com", 1).await;
    let r = app
        .post_json_with(
            &client(),
            "/api/auth/password/forgot",
            &json!({"email": "ＡＮＮ@ＥＸＡＭＰＬＥ.ＣＯＭ"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let mail = sink.wait_for("ann@example.com", 2).await;
    assert!(
        mail.subject().to_lowercase().contains("password"),
        "the same reset mail"
    );
}

#[tokio::test]
async fn accounts_stored_under_the_old_normal_form_still_sign_in_after_an_upgrade() {
    let app = spawn_app().await;
    app.register_with(&client(), "ann@bücher.de", PASSWORD)
        .await;
    // As an older tollgate stored it: the punycode form as typed, lower-cased, and no marker.
    sqlx::query(
        "UPDATE users SET email = 'Ann@xn--bcher-kva.de', email_norm = 'ann@xn--bcher-kva.de'",
    )
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM app_secrets WHERE name = 'email_norm_nfkc_idna'")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let upgraded = crate::helpers::TestApp::builder()
        .on_db(app.db.clone())
        .spawn()
        .await;
    let login = upgraded
        .post_json_with(
            &client(),
            "/api/auth/login",
            &json!({"email": "ann@bücher.de", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status(), 200);
    let again = upgraded
        .post_json_with(
            &client(),
            "/api/auth/register",
            &json!({"email": "ann@bücher.de", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        again.status(),
        409,
        "never a second account for the same mailbox"
    );
}
