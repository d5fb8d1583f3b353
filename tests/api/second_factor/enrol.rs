//! Enrolment, recovery codes, turning off, and re-authentication for sensitive changes.

use serde_json::json;

use super::{Authenticator, enable, first_step, post, second_step};
use crate::helpers::{PASSWORD, app_with_mail, spawn_app};

#[tokio::test]
async fn an_enrolment_counts_only_once_a_first_code_confirms_it_and_a_notice_is_mailed() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = app.user("ann@example.com").await;
    let (status, _) = post(&app, &c, "/api/account/2fa", &json!({})).await;
    assert_eq!(status, 405, "status is a GET");
    let state = super::two_factor_state(&app, &c).await;
    assert_eq!(state["enabled"], false, "{state}");

    let (status, begun) = post(&app, &c, "/api/account/2fa/totp", &json!({})).await;
    assert_eq!(status, 200, "{begun}");
    let secret = begun["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32, "160 bits in base32: {secret}");
    let uri = begun["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")) && uri.contains("ann%40example.com"));
    let svg = begun["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
    let Some(mut otp) = Authenticator::new(secret) else {
        return;
    };
    let state = super::two_factor_state(&app, &c).await;
    assert_eq!(
        (state["enabled"].clone(), state["enrolling"].clone()),
        (json!(false), json!(true))
    );

    // Unconfirmed, it asks nothing at sign-in.
    assert_eq!(app.login_status("ann@example.com", PASSWORD).await, 200);
    let wrong = otp.wrong_code();
    let (status, body) = post(
        &app,
        &c,
        "/api/account/2fa/totp/confirm",
        &json!({"code": wrong}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("second_factor_invalid"))
    );
    let (status, body) = post(
        &app,
        &c,
        "/api/account/2fa/totp/confirm",
        &json!({"code": "12345"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("second_factor_invalid")),
        "five digits"
    );

    let code = otp.next_code().await;
    let (status, done) = post(
        &app,
        &c,
        "/api/account/2fa/totp/confirm",
        &json!({"code": code}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let codes = super::codes_of(&done);
    assert_eq!(codes.len(), 10);
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "distinct codes");
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 19 && c.matches('-').count() == 3),
        "{codes:?}"
    );

    let state = super::two_factor_state(&app, &c).await;
    assert_eq!(state["enabled"], true);
    assert_eq!(state["recovery_codes_left"], 10);
    sink.wait_for_subject("ann@example.com", "Two-factor sign-in is on")
        .await;

    let (status, body) = post(&app, &c, "/api/account/2fa/totp", &json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("second_factor_enabled"))
    );
    let (status, body) = post(
        &app,
        &c,
        "/api/account/2fa/totp/confirm",
        &json!({"code": code}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("second_factor_enabled"))
    );
    // From now on, sign-in is two steps.
    let pending = first_step(
        &app,
        &crate::helpers::client(),
        "ann@example.com",
        json!({}),
    )
    .await;
    assert!(
        pending.starts_with("tgp_") && pending.len() == 68,
        "{pending}"
    );
}

#[tokio::test]
async fn a_second_enrolment_replaces_an_unconfirmed_one_and_the_old_secret_confirms_nothing() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let (_, first) = post(&app, &c, "/api/account/2fa/totp", &json!({})).await;
    let (_, second) = post(&app, &c, "/api/account/2fa/totp", &json!({})).await;
    assert_ne!(first["secret"], second["secret"]);
    let Some(mut old) = Authenticator::new(first["secret"].as_str().unwrap()) else {
        return;
    };
    let code = old.next_code().await;
    let (status, _) = post(
        &app,
        &c,
        "/api/account/2fa/totp/confirm",
        &json!({"code": code}),
    )
    .await;
    assert_eq!(status, 400, "the replaced secret");
    let mut new = Authenticator::new(second["secret"].as_str().unwrap()).unwrap();
    let code = new.next_code().await;
    let (status, _) = post(
        &app,
        &c,
        "/api/account/2fa/totp/confirm",
        &json!({"code": code}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn turning_off_takes_a_current_code_mails_a_notice_and_ends_the_recovery_codes() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = app.user("ann@example.com").await;
    let Some((mut otp, codes)) = enable(&app, &c).await else {
        return;
    };
    let (status, body) = post(&app, &c, "/api/account/2fa/disable", &json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_field")),
        "no code"
    );
    let wrong = otp.wrong_code();
    let (status, body) = post(
        &app,
        &c,
        "/api/account/2fa/disable",
        &json!({"code": wrong}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("second_factor_invalid"))
    );
    let code = otp.next_code().await;
    let (status, _) = post(&app, &c, "/api/account/2fa/disable", &json!({"code": code})).await;
    assert_eq!(status, 204);
    sink.wait_for_subject("ann@example.com", "Two-factor sign-in is off")
        .await;
    let state = super::two_factor_state(&app, &c).await;
    assert_eq!(
        (
            state["enabled"].clone(),
            state["recovery_codes_left"].clone()
        ),
        (json!(false), json!(0))
    );
    // One step again; the old recovery codes are nothing.
    assert_eq!(app.login_status("ann@example.com", PASSWORD).await, 200);
    let (status, body) = post(
        &app,
        &c,
        "/api/account/2fa/disable",
        &json!({"recovery_code": codes[0]}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("second_factor_off"))
    );
}

#[tokio::test]
async fn new_recovery_codes_replace_the_old_set() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let Some((_otp, old)) = enable(&app, &c).await else {
        return;
    };
    let (status, body) = post(&app, &c, "/api/account/2fa/recovery-codes", &json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_field")),
        "it takes a current code"
    );
    let renew = json!({"recovery_code": old[9]});
    let (status, renewed) = post(&app, &c, "/api/account/2fa/recovery-codes", &renew).await;
    assert_eq!(status, 200);
    let new = super::codes_of(&renewed);
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|c| !old.contains(c)));
    let fresh = crate::helpers::client();
    let pending = first_step(&app, &fresh, "ann@example.com", json!({})).await;
    let (status, body) =
        second_step(&app, &fresh, &pending, json!({"recovery_code": old[0]})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("second_factor_invalid")),
        "an old code"
    );
    let (status, _) = second_step(&app, &fresh, &pending, json!({"recovery_code": new[0]})).await;
    assert_eq!(status, 200, "a new code");
}

/// Ten minutes after the last proof, sensitive changes answer 403 `reauth_required` until the
/// password (or a code) is typed again.
#[tokio::test]
async fn sensitive_changes_need_a_proof_from_the_last_ten_minutes() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.state.clock.advance(601);
    let key = json!({"name": "ci", "scopes": ["read"]});
    for (path, body) in [
        ("/api/account/2fa/totp", json!({})),
        ("/api/keys", key.clone()),
    ] {
        let (status, answer) = post(&app, &c, path, &body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (403, Some("reauth_required")),
            "{path}"
        );
    }
    let (status, body) = post(
        &app,
        &c,
        "/api/auth/reauth",
        &json!({"password": "wrong password!"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let (status, body) = post(&app, &c, "/api/auth/reauth", &json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_field"))
    );
    let (status, _) = post(&app, &c, "/api/auth/reauth", &json!({"password": PASSWORD})).await;
    assert_eq!(status, 204);
    let (status, _) = post(&app, &c, "/api/keys", &key).await;
    assert_eq!(status, 201);
    let Some((mut otp, codes)) = enable(&app, &c).await else {
        return;
    };

    // With two-factor on, a code is a proof too.
    app.state.clock.advance(601);
    let renew = json!({"recovery_code": codes[0]});
    let (status, _) = post(&app, &c, "/api/account/2fa/recovery-codes", &renew).await;
    assert_eq!(status, 403);
    let code = otp.next_code().await;
    let (status, _) = post(&app, &c, "/api/auth/reauth", &json!({"code": code})).await;
    assert_eq!(status, 204);
    let (status, _) = post(&app, &c, "/api/account/2fa/recovery-codes", &renew).await;
    assert_eq!(status, 200);
}
