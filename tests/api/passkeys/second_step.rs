//! A passkey as the second step of a two-step sign-in, and as the fresh proof sensitive changes
//! ask for.

use serde_json::json;

use super::{Device, answer, options, post, refusal, register, verified_user};
use crate::{
    helpers::{PASSWORD, app_with_mail, client},
    second_factor::{enable, first_step, second_step},
};

#[tokio::test]
async fn a_passkey_finishes_a_two_step_sign_in_and_only_the_one_it_was_asked_for() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "ann@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    register(&app, &c, &mut device, "Key").await;
    let Some(_app_codes) = enable(&app, &c).await else {
        return;
    };

    let browser = client();
    let pending = first_step(&app, &browser, "ann@example.com", json!({})).await;
    let (_, answer_json) = post(
        &app,
        &browser,
        "/api/auth/login",
        &json!({"email": "ann@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(
        answer_json["methods"],
        json!(["totp", "recovery_code", "passkey"]),
        "{answer_json}"
    );
    let other_pending = answer_json["pending_token"].as_str().unwrap().to_owned();

    let body = json!({"pending_token": pending});
    let opts = options(&app, &browser, "/api/auth/2fa/passkey/options", body).await;
    assert_eq!(
        opts["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{opts}"
    );
    assert_eq!(
        app.get_with(&browser, "/api/me").await.status(),
        401,
        "nothing granted yet"
    );

    // The ceremony belongs to the first pending sign-in: it cannot finish the other.
    let credential = device.get(&opts);
    let proof = json!({"passkey": answer(&opts, credential.clone())});
    let (status, body) = second_step(&app, &browser, &other_pending, proof.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("passkey_invalid"))
    );

    // Its own pending sign-in, with a fresh ceremony, passes.
    let body = json!({"pending_token": pending});
    let opts = options(&app, &browser, "/api/auth/2fa/passkey/options", body).await;
    let proof = json!({"passkey": answer(&opts, device.get(&opts))});
    let (status, me) = second_step(&app, &browser, &pending, proof).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(app.me(&browser).await["email"], "ann@example.com");

    // A dead pending sign-in gets no options.
    let body = json!({"pending_token": pending});
    let r = post(&app, &browser, "/api/auth/2fa/passkey/options", &body).await;
    assert_eq!(refusal(r), (401, "pending_sign_in_invalid".into()));
}

#[tokio::test]
async fn an_account_without_a_passkey_is_not_offered_one_at_the_second_step() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "bo@example.com").await;
    if enable(&app, &c).await.is_none() {
        return;
    }
    let browser = client();
    let (_, first) = post(
        &app,
        &browser,
        "/api/auth/login",
        &json!({"email": "bo@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(first["methods"], json!(["totp", "recovery_code"]));
    let body = json!({"pending_token": first["pending_token"]});
    let r = post(&app, &browser, "/api/auth/2fa/passkey/options", &body).await;
    assert_eq!(refusal(r), (409, "no_passkey".into()));
}

#[tokio::test]
async fn a_passkey_is_a_fresh_proof_for_sensitive_changes() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "cy@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    register(&app, &c, &mut device, "Key").await;
    app.state.clock.advance(601);
    let r = post(&app, &c, "/api/account/passkeys/options", &json!({})).await;
    assert_eq!(
        refusal(r),
        (403, "reauth_required".into()),
        "the sign-in's proof is old"
    );

    let opts = options(&app, &c, "/api/auth/reauth/passkey/options", json!({})).await;
    let (status, body) = post(
        &app,
        &c,
        "/api/auth/reauth",
        &json!({"passkey": answer(&opts, device.get(&opts))}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    options(&app, &c, "/api/account/passkeys/options", json!({})).await;

    // A reauth ceremony proves nothing at a sign-in, and a used one nothing at all.
    app.state.clock.advance(601);
    let opts = options(&app, &c, "/api/auth/reauth/passkey/options", json!({})).await;
    let body = answer(&opts, device.get(&opts));
    let r = post(&app, &client(), "/api/auth/passkey", &body).await;
    assert_eq!(refusal(r), (400, "passkey_invalid".into()));
    let r = post(&app, &c, "/api/auth/reauth", &json!({"passkey": body})).await;
    assert_eq!(
        refusal(r),
        (400, "passkey_invalid".into()),
        "taken by the first answer"
    );
}

#[tokio::test]
async fn turning_two_factor_off_takes_a_passkey_as_the_current_factor() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "di@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    register(&app, &c, &mut device, "Key").await;
    if enable(&app, &c).await.is_none() {
        return;
    }
    let opts = options(&app, &c, "/api/auth/reauth/passkey/options", json!({})).await;
    let proof = json!({"passkey": answer(&opts, device.get(&opts))});
    let (status, body) = post(&app, &c, "/api/account/2fa/disable", &proof).await;
    assert_eq!(status, 204, "{body}");
    let state = crate::second_factor::two_factor_state(&app, &c).await;
    assert_eq!(state["enabled"], false);

    // Off, a passkey answer cannot turn it "off" again or mint recovery codes.
    let opts = options(&app, &c, "/api/auth/reauth/passkey/options", json!({})).await;
    let proof = json!({"passkey": answer(&opts, device.get(&opts))});
    let r = post(&app, &c, "/api/account/2fa/recovery-codes", &proof).await;
    assert_eq!(refusal(r), (409, "second_factor_off".into()));
}

#[tokio::test]
async fn with_two_factor_on_adding_a_passkey_takes_a_current_code_so_a_stolen_session_cannot() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "eve@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    let Some((mut otp, codes)) = enable(&app, &c).await else {
        return;
    };
    // The session is fresh (it just proved itself), and still that is not enough.
    let path = "/api/account/passkeys/options";
    let r = post(&app, &c, path, &json!({})).await;
    assert_eq!(refusal(r), (403, "second_factor_required".into()));
    let r = post(&app, &c, path, &json!({"code": otp.wrong_code()})).await;
    assert_eq!(refusal(r), (400, "second_factor_invalid".into()));
    assert_eq!(app.count("passkeys").await, 0);

    let opts = options(&app, &c, path, json!({"code": otp.next_code().await})).await;
    let (status, _) = post(
        &app,
        &c,
        "/api/account/passkeys",
        &answer(&opts, device.create(&opts)),
    )
    .await;
    assert_eq!(status, 201);
    // A recovery code does as well (and is spent).
    let recovery = json!({"recovery_code": codes[0]});
    options(&app, &c, path, recovery.clone()).await;
    let r = post(&app, &c, path, &recovery).await;
    assert_eq!(
        refusal(r),
        (400, "second_factor_invalid".into()),
        "used once"
    );
}

#[tokio::test]
async fn a_pending_sign_in_dead_since_a_password_change_gets_no_passkey_options() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "fay@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    register(&app, &c, &mut device, "Key").await;
    if enable(&app, &c).await.is_none() {
        return;
    }
    let pending = first_step(&app, &client(), "fay@example.com", json!({})).await;
    let change = json!({"current_password": PASSWORD, "new_password": "another long passphrase"});
    let (status, _) = post(&app, &c, "/api/auth/password/change", &change).await;
    assert_eq!(status, 204);
    let body = json!({"pending_token": pending});
    let r = post(&app, &client(), "/api/auth/2fa/passkey/options", &body).await;
    assert_eq!(refusal(r), (401, "pending_sign_in_invalid".into()));
}

#[tokio::test]
async fn a_new_session_id_does_not_reset_the_count_of_codes_a_session_guesses() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "gus@example.com").await;
    let Some((otp, _)) = enable(&app, &c).await else {
        return;
    };
    crate::second_factor::start_of_code_window(&app);
    let wrong = json!({"code": otp.wrong_code()});
    for _ in 0..10 {
        let r = post(&app, &c, "/api/auth/reauth", &wrong).await;
        assert_eq!(refusal(r), (400, "second_factor_invalid".into()));
    }
    let r = post(&app, &c, "/api/auth/reauth", &wrong).await;
    assert_eq!(refusal(r).0, 429);
    // "Sign out everywhere else" gives this browser a new session id: the count stays.
    let (status, _) = post(&app, &c, "/api/account/devices/sign-out-others", &json!({})).await;
    assert_eq!(status, 204);
    let r = post(&app, &c, "/api/auth/reauth", &wrong).await;
    assert_eq!(refusal(r).0, 429, "still counted on the account's changes");
    // Sign-ins keep their own count: the owner still signs in with a code.
    let pending = first_step(&app, &client(), "gus@example.com", json!({})).await;
    let r = second_step(&app, &client(), &pending, json!({"code": otp.wrong_code()})).await;
    assert_eq!(refusal(r), (400, "second_factor_invalid".into()));
}

#[tokio::test]
async fn a_registration_begun_before_two_factor_was_on_cannot_finish_after() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "hil@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    let opts = options(&app, &c, "/api/account/passkeys/options", json!({})).await;
    if enable(&app, &c).await.is_none() {
        return;
    }
    let body = answer(&opts, device.create(&opts));
    let r = post(&app, &c, "/api/account/passkeys", &body).await;
    assert_eq!(refusal(r), (400, "passkey_invalid".into()));
    assert_eq!(app.count("passkeys").await, 0);
}

#[tokio::test]
async fn whoever_holds_the_password_cannot_use_up_the_owners_ceremonies() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "ida@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    register(&app, &c, &mut device, "Key").await;
    if enable(&app, &c).await.is_none() {
        return;
    }
    let thief = client();
    let pending = first_step(&app, &thief, "ida@example.com", json!({})).await;
    let body = json!({"pending_token": pending});
    for _ in 0..30 {
        options(&app, &thief, "/api/auth/2fa/passkey/options", body.clone()).await;
    }
    let r = post(&app, &thief, "/api/auth/2fa/passkey/options", &body).await;
    assert_eq!(refusal(r).0, 429);
    // The owner's own ceremonies are counted apart.
    options(&app, &c, "/api/auth/reauth/passkey/options", json!({})).await;
}

#[tokio::test]
async fn a_refused_registration_does_not_spend_the_code_it_carried() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "jo@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    for n in 0..20 {
        register(&app, &c, &mut device, &format!("Key {n}")).await;
    }
    let Some((_, codes)) = enable(&app, &c).await else {
        return;
    };
    let body = json!({"recovery_code": codes[0]});
    let r = post(&app, &c, "/api/account/passkeys/options", &body).await;
    assert_eq!(refusal(r), (409, "too_many_passkeys".into()));
    let state = crate::second_factor::two_factor_state(&app, &c).await;
    assert_eq!(state["recovery_codes_left"], 10, "{state}");
}
