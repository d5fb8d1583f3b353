//! The attacker's side: replayed codes, guessing, an expired or forged pending sign-in, racing
//! the same code, and a stolen session without the second factor.

use serde_json::json;

use super::{first_step, fresh, second_step, user_with_2fa};
use crate::helpers::{PASSWORD, app_with_mail, session_cookie, spawn_app};

#[tokio::test]
async fn a_code_is_accepted_once_and_a_recovery_code_too() {
    let app = spawn_app().await;
    let Some((_, mut otp, codes)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let code = otp.next_code().await;
    let first = first_step(&app, &fresh(), "ann@example.com", json!({})).await;
    let (status, _) = second_step(&app, &fresh(), &first, json!({"code": code})).await;
    assert_eq!(status, 200);
    let again = first_step(&app, &fresh(), "ann@example.com", json!({})).await;
    let (status, body) = second_step(&app, &fresh(), &again, json!({"code": code})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("second_factor_invalid")),
        "replayed"
    );
    // So is an earlier code of the window, once a later one was used.
    let earlier = otp.code_of(otp.last_step().unwrap() - 1);
    let (status, _) = second_step(&app, &fresh(), &again, json!({"code": earlier})).await;
    assert_eq!(status, 400, "a step before the last used");

    let (status, _) = second_step(&app, &fresh(), &again, json!({"recovery_code": codes[3]})).await;
    assert_eq!(status, 200);
    let third = first_step(&app, &fresh(), "ann@example.com", json!({})).await;
    let (status, body) =
        second_step(&app, &fresh(), &third, json!({"recovery_code": codes[3]})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("second_factor_invalid")),
        "spent"
    );
}

#[tokio::test]
async fn two_requests_racing_with_one_code_sign_in_once() {
    let app = spawn_app().await;
    let Some((_, mut otp, _)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let code = otp.next_code().await;
    let a = first_step(&app, &fresh(), "ann@example.com", json!({})).await;
    let b = first_step(&app, &fresh(), "ann@example.com", json!({})).await;
    let (ca, cb) = (fresh(), fresh());
    let ((sa, _), (sb, _)) = tokio::join!(
        second_step(&app, &ca, &a, json!({"code": code})),
        second_step(&app, &cb, &b, json!({"code": code})),
    );
    let mut statuses = [sa, sb];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "exactly one sign-in");
}

#[tokio::test]
async fn a_pending_sign_in_takes_five_codes_and_the_account_ten_per_window() {
    // Even with TOLLGATE_RATE_LIMIT=off (the tests' default): the cap is the factor's security.
    let app = spawn_app().await;
    super::start_of_code_window(&app);
    let Some((_, mut otp, _)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let wrong = otp.wrong_code();
    let pending = first_step(&app, &fresh(), "ann@example.com", json!({})).await;
    for _ in 0..5 {
        let (status, body) = second_step(&app, &fresh(), &pending, json!({"code": wrong})).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("second_factor_invalid"))
        );
    }
    let code = otp.next_code().await;
    let (status, body) = second_step(&app, &fresh(), &pending, json!({"code": code})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("pending_sign_in_invalid")),
        "out of attempts, even for the right code"
    );
    // New pending sign-ins do not add up to more guesses: the account stops at ten codes per
    // window.
    let next = first_step(&app, &fresh(), "ann@example.com", json!({})).await;
    for _ in 0..5 {
        let (status, _) = second_step(&app, &fresh(), &next, json!({"code": wrong})).await;
        assert_eq!(status, 400);
    }
    let last = first_step(&app, &fresh(), "ann@example.com", json!({})).await;
    let r = app
        .post_json_with(
            &fresh(),
            "/api/auth/2fa/verify",
            &json!({"pending_token": last, "code": code}),
        )
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_pending_sign_in_expires_after_five_minutes_and_a_made_up_one_is_nothing() {
    let app = spawn_app().await;
    let Some((_, mut otp, _)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let pending = first_step(&app, &fresh(), "ann@example.com", json!({})).await;
    app.state.clock.advance(301);
    let code = otp.next_code().await;
    let (status, body) = second_step(&app, &fresh(), &pending, json!({"code": code})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("pending_sign_in_invalid"))
    );
    let forged = format!("tgp_{}", "0".repeat(64));
    for token in [forged.as_str(), "tgp_", "", "x".repeat(5000).as_str()] {
        let (status, body) = second_step(&app, &fresh(), token, json!({"code": code})).await;
        assert!(
            status == 401 || status == 413,
            "{token:.10}: {status} {body}"
        );
    }
    let (status, body) = second_step(
        &app,
        &fresh(),
        &pending,
        json!({"code": code, "recovery_code": "x"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_field")),
        "one proof only"
    );
}

/// A session cookie stolen from a signed-in owner lacks the authenticator: it cannot turn the
/// factor off, renew the recovery codes after ten minutes, or start a new enrolment.
#[tokio::test]
async fn a_stolen_session_without_the_second_factor_cannot_turn_it_off() {
    let app = spawn_app().await;
    let Some((_, mut otp, _)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let owner = fresh();
    let pending = first_step(&app, &owner, "ann@example.com", json!({})).await;
    let code = otp.next_code().await;
    let r = app
        .post_json_with(
            &owner,
            "/api/auth/2fa/verify",
            &json!({"pending_token": pending, "code": code}),
        )
        .await;
    let cookie = session_cookie(r.headers()).expect("a session cookie");
    let thief = reqwest::Client::builder().build().unwrap();
    let steal = |path: &str, body: serde_json::Value| {
        thief
            .post(app.url(path))
            .header("cookie", &cookie)
            .json(&body)
            .send()
    };
    let wrong = otp.wrong_code();
    let r = steal("/api/account/2fa/disable", json!({"code": wrong}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = steal("/api/account/2fa/disable", json!({})).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = steal("/api/account/2fa/totp", json!({})).await.unwrap();
    assert_eq!(r.status(), 409, "no second enrolment over the first");
    // Nor can it mint recovery codes to use for the factor it lacks.
    for body in [json!({}), json!({"code": wrong})] {
        let r = steal("/api/account/2fa/recovery-codes", body)
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    app.state.clock.advance(601);
    for path in [
        "/api/account/2fa/recovery-codes",
        "/api/account/2fa/disable",
    ] {
        let r = steal(path, json!({"code": wrong})).await.unwrap();
        assert_eq!(r.status(), 403, "{path}: the proof is old");
    }
    let r = steal("/api/auth/reauth", json!({"code": wrong}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let state = super::two_factor_state(&app, &owner).await;
    assert_eq!(state["enabled"], true, "still on");
    assert_eq!(
        app.login_status("ann@example.com", PASSWORD).await,
        200,
        "first step only"
    );
}

/// Someone registers an address that is not theirs and enrols an authenticator on it: the
/// owner's proof of the mailbox takes the account back, factor and all. A factor enrolled on a
/// proven address survives a password reset (mail alone never removes it).
#[tokio::test]
async fn a_squatters_second_factor_goes_when_the_owner_proves_the_mailbox() {
    let (app, sink) = app_with_mail(&[]).await;
    let squatter = app.user("ann@example.com").await;
    let Some(_) = super::enable(&app, &squatter).await else {
        return;
    };
    sink.wait_for("ann@example.com", 2).await;
    let owner = fresh();
    let ask = json!({"email": "ann@example.com"});
    app.post_json_with(&owner, "/api/auth/magic-link", &ask)
        .await;
    let mail = sink.wait_for("ann@example.com", 3).await;
    let consume = json!({"token": mail.token("magic")});
    let r = app
        .post_json_with(&owner, "/api/auth/magic-link/consume", &consume)
        .await;
    assert_eq!(r.status(), 200);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        me["email"], "ann@example.com",
        "signed in, no code asked: {me}"
    );
    assert_eq!(
        super::two_factor_state(&app, &owner).await["enabled"],
        false
    );
    assert_eq!(app.get_with(&squatter, "/api/me").await.status(), 401);

    // Now proven: the owner's own factor survives a reset by mail.
    let Some(_) = super::enable(&app, &owner).await else {
        return;
    };
    app.post_json_with(&fresh(), "/api/auth/password/forgot", &ask)
        .await;
    let reset = sink.wait_for_subject("ann@example.com", "Reset your").await;
    let new_password = "a brand new passphrase here";
    let body = json!({"token": reset.token("reset-password"), "password": new_password});
    let r = app
        .post_json_with(&fresh(), "/api/auth/password/reset", &body)
        .await;
    assert_eq!(r.status(), 204);
    let login = json!({"email": "ann@example.com", "password": new_password});
    let r = app
        .post_json_with(&fresh(), "/api/auth/login", &login)
        .await;
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["second_factor_required"], true, "{answer}");
}

#[tokio::test]
async fn a_reset_of_an_unproven_address_removes_a_squatters_factor() {
    let (app, sink) = app_with_mail(&[]).await;
    let squatter = app.user("ann@example.com").await;
    let Some(_) = super::enable(&app, &squatter).await else {
        return;
    };
    let ask = json!({"email": "ann@example.com"});
    app.post_json_with(&fresh(), "/api/auth/password/forgot", &ask)
        .await;
    let reset = sink.wait_for_subject("ann@example.com", "Reset your").await;
    let new_password = "a brand new passphrase here";
    let body = json!({"token": reset.token("reset-password"), "password": new_password});
    let r = app
        .post_json_with(&fresh(), "/api/auth/password/reset", &body)
        .await;
    assert_eq!(r.status(), 204);
    let c = fresh();
    let login = json!({"email": "ann@example.com", "password": new_password});
    let r = app.post_json_with(&c, "/api/auth/login", &login).await;
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["email"], "ann@example.com", "no code asked: {me}");
}

/// An attacker with an authenticator on their own account asks to move it to the victim's
/// address: the victim's click on the emailed link alone attaches nothing (it proves the mailbox,
/// not the account), so the victim's address never ends up behind the attacker's second factor.
#[tokio::test]
async fn an_email_change_link_alone_cannot_move_a_strangers_address_into_an_account() {
    let (app, sink) = app_with_mail(&[]).await;
    let attacker = app.user("mallory@evil.example").await;
    let Some(_) = super::enable(&app, &attacker).await else {
        return;
    };
    let change = json!({"password": PASSWORD, "new_email": "ann@example.com"});
    let r = app
        .post_json_with(&attacker, "/api/auth/email/change", &change)
        .await;
    assert_eq!(r.status(), 202);
    let link = sink.wait_for("ann@example.com", 1).await;
    // The victim presses "confirm" on the page, from their own browser.
    let victim = fresh();
    let csrf = app.csrf_token(&victim, "/login").await;
    let r = victim
        .post(app.url("/confirm-email"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("token", &link.token("confirm-email")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Someone asked to make this the address"),
        "{page}"
    );
    assert_eq!(app.me(&attacker).await["email"], "mallory@evil.example");
    // The address is still free for its owner.
    let r = app
        .post_json_with(
            &fresh(),
            "/api/auth/register",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 201);
}

/// A stolen session guessing codes (to turn the factor off, say) spends its own allowance, not
/// the account's: the owner still signs in with their code.
#[tokio::test]
async fn a_sessions_wrong_codes_do_not_lock_the_owner_out() {
    let app = spawn_app().await;
    super::start_of_code_window(&app);
    let Some((thief, mut otp, _)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let wrong = otp.wrong_code();
    for _ in 0..9 {
        let r = app
            .post_json_with(&thief, "/api/account/2fa/disable", &json!({"code": wrong}))
            .await;
        assert_eq!(r.status(), 400);
    }
    let r = app
        .post_json_with(&thief, "/api/account/2fa/disable", &json!({"code": wrong}))
        .await;
    assert_eq!(
        r.status(),
        429,
        "the session's tenth (the enrolment was its first)"
    );
    let pending = first_step(&app, &fresh(), "ann@example.com", json!({})).await;
    let code = otp.next_code().await;
    let (status, _) = second_step(&app, &fresh(), &pending, json!({"code": code})).await;
    assert_eq!(status, 200, "the owner's sign-in");
}
