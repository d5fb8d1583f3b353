//! The two-step sign-in on every path: password (session and tokens), magic link, recovery codes,
//! trusted devices.

use serde_json::json;

use super::{cookie_names, first_step, fresh, post, second_step, status_of, user_with_2fa};
use crate::helpers::{PASSWORD, app_with_mail, spawn_app};

#[tokio::test]
async fn a_password_sign_in_completes_only_with_the_code_and_the_first_step_grants_nothing() {
    let app = spawn_app().await;
    let Some((_, mut otp, _)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let c = fresh();
    let r = app
        .post_json_with(
            &c,
            "/api/auth/login",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let names = cookie_names(&r);
    assert!(
        !names
            .iter()
            .any(|n| n.contains("session") || n.contains("device")),
        "no session, no device cookie yet: {names:?}"
    );
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["methods"], json!(["totp", "recovery_code"]));
    assert_eq!(answer["expires_in"], 300);
    let pending = answer["pending_token"].as_str().unwrap().to_owned();

    // Nothing is granted by the first step, on any route, with the cookie jar or the token.
    assert_eq!(status_of(&app, &c, "/api/me").await, 401);
    let r = c
        .get(app.url("/auth/forward"))
        .header("x-forwarded-uri", "/app")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "forward-auth sends it to log in");
    let (status, body) = post(&app, &c, "/api/auth/token", &json!({})).await;
    assert_eq!(status, 401, "{body}");
    for header in [format!("Bearer {pending}"), pending.clone()] {
        let r = fresh()
            .get(app.url("/api/me"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "the pending token is no credential");
    }

    let code = otp.next_code().await;
    let r = app
        .post_json_with(
            &c,
            "/api/auth/2fa/verify",
            &json!({"pending_token": pending, "code": code}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let names = cookie_names(&r);
    assert!(names.iter().any(|n| n.contains("device")), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("trust")),
        "not asked to trust: {names:?}"
    );
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["email"], "ann@example.com");
    assert_eq!(app.me(&c).await["email"], "ann@example.com");
    // Finished: the pending token is spent.
    let code = otp.next_code().await;
    let (status, body) = second_step(&app, &fresh(), &pending, json!({"code": code})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("pending_sign_in_invalid"))
    );
}

#[tokio::test]
async fn a_token_sign_in_gets_its_pair_only_from_the_second_step() {
    let app = spawn_app().await;
    let Some((_, mut otp, _)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let c = fresh();
    let pending = first_step(&app, &c, "ann@example.com", json!({"token": true})).await;
    let code = otp.next_code().await;
    let (status, pair) = second_step(&app, &c, &pending, json!({"code": code})).await;
    assert_eq!(status, 200, "{pair}");
    let access = pair["access_token"].as_str().unwrap();
    assert!(pair["refresh_token"].as_str().unwrap().starts_with("tgr_"));
    let r = fresh()
        .get(app.url("/api/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        status_of(&app, &c, "/api/me").await,
        401,
        "tokens, not a session"
    );
}

#[tokio::test]
async fn a_magic_link_sign_in_asks_for_the_code_too_and_a_recovery_code_mails_a_notice() {
    let (app, sink) = app_with_mail(&[]).await;
    let owner = app.user("ann@example.com").await;
    // A proven address: a magic link to an unproven one takes the account back from whoever
    // registered it, factor and all (tests/api/second_factor/attacks.rs).
    super::verify_address(&app, &sink, &owner, "ann@example.com").await;
    let Some((_, codes)) = super::enable(&app, &owner).await else {
        return;
    };
    let c = fresh();
    let (status, _) = post(
        &app,
        &c,
        "/api/auth/magic-link",
        &json!({"email": "ann@example.com"}),
    )
    .await;
    assert_eq!(status, 202);
    // The verification and "two-factor is on" mails came first.
    let mail = sink.wait_for("ann@example.com", 3).await;
    let token = mail.token("magic");
    let (status, answer) = post(
        &app,
        &c,
        "/api/auth/magic-link/consume",
        &json!({"token": token}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["second_factor_required"], true, "{answer}");
    assert_eq!(status_of(&app, &c, "/api/me").await, 401);
    let pending = answer["pending_token"].as_str().unwrap();
    // Typed as printed, in capitals, or with spaces: the same code.
    let typed = codes[0].to_uppercase().replace('-', " ");
    let (status, _) = second_step(&app, &c, pending, json!({"recovery_code": typed})).await;
    assert_eq!(status, 200);
    assert_eq!(app.me(&c).await["email"], "ann@example.com");
    let notice = sink
        .wait_for_subject("ann@example.com", "recovery code was used")
        .await;
    assert!(
        notice.text().contains("You have 9 left"),
        "{}",
        notice.text()
    );
    let state = super::two_factor_state(&app, &c).await;
    assert_eq!(state["recovery_codes_left"], 9);
}

#[tokio::test]
async fn a_trusted_device_skips_the_code_until_the_factor_or_the_sessions_change() {
    let app = spawn_app().await;
    let Some((owner, mut otp, codes)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let laptop = fresh();
    let pending = first_step(&app, &laptop, "ann@example.com", json!({})).await;
    let code = otp.next_code().await;
    let r = app
        .post_json_with(
            &laptop,
            "/api/auth/2fa/verify",
            &json!({"pending_token": pending, "code": code, "trust_device": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let trust = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("tollgate_trust="))
        .expect("a trust cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Max-Age=2592000", "Path=/"] {
        assert!(trust.contains(attribute), "{trust}");
    }
    let login = json!({"email": "ann@example.com", "password": PASSWORD});
    let (status, _) = post(&app, &laptop, "/api/auth/logout", &json!({})).await;
    assert_eq!(status, 204);
    let (status, me) = post(&app, &laptop, "/api/auth/login", &login).await;
    assert_eq!(
        (status, me["email"].as_str()),
        (200, Some("ann@example.com")),
        "trusted: one step"
    );
    // Another browser is not trusted.
    first_step(&app, &fresh(), "ann@example.com", json!({})).await;

    // Turned off and on again: a new factor, and the old trust names the old one.
    let off = json!({"recovery_code": codes[0]});
    let (status, _) = post(&app, &owner, "/api/account/2fa/disable", &off).await;
    assert_eq!(status, 204);
    let (status, me) = post(&app, &laptop, "/api/auth/login", &login).await;
    assert_eq!(
        (status, me["email"].as_str()),
        (200, Some("ann@example.com")),
        "2FA off"
    );
    super::enable(&app, &owner).await.unwrap();
    first_step(&app, &laptop, "ann@example.com", json!({})).await;
}

#[tokio::test]
async fn a_password_change_ends_device_trust_and_pending_sign_ins() {
    let app = spawn_app().await;
    let Some((owner, mut otp, codes)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let laptop = fresh();
    let pending = first_step(&app, &laptop, "ann@example.com", json!({})).await;
    let code = otp.next_code().await;
    let trusting = json!({"pending_token": pending, "code": code, "trust_device": true});
    let (status, _) = post(&app, &laptop, "/api/auth/2fa/verify", &trusting).await;
    assert_eq!(status, 200);
    let waiting = first_step(&app, &fresh(), "ann@example.com", json!({})).await;

    let new_password = "another horse battery staple";
    let change = json!({"current_password": PASSWORD, "new_password": new_password});
    let (status, _) = post(&app, &owner, "/api/auth/password/change", &change).await;
    assert_eq!(status, 204);
    // Even a good code: the sign-in began under the old password.
    let good = json!({"recovery_code": codes[0]});
    let (status, body) = second_step(&app, &fresh(), &waiting, good).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("pending_sign_in_invalid"))
    );
    let login = json!({"email": "ann@example.com", "password": new_password});
    let (status, answer) = post(&app, &laptop, "/api/auth/login", &login).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["second_factor_required"], true,
        "trust ended: {answer}"
    );
}

#[tokio::test]
async fn signing_out_everywhere_else_ends_device_trust() {
    let app = spawn_app().await;
    let Some((owner, mut otp, _)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let laptop = fresh();
    let pending = first_step(&app, &laptop, "ann@example.com", json!({})).await;
    let code = otp.next_code().await;
    let trusting = json!({"pending_token": pending, "code": code, "trust_device": true});
    let (status, _) = post(&app, &laptop, "/api/auth/2fa/verify", &trusting).await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &app,
        &owner,
        "/api/account/devices/sign-out-others",
        &json!({}),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(status_of(&app, &laptop, "/api/me").await, 401);
    first_step(&app, &laptop, "ann@example.com", json!({})).await;
}

/// The README's two-step sign-in with curl, run as it stands there: the password step answers
/// the pending token, and the code step (with a pending token and the app's current code) signs in.
#[tokio::test]
async fn the_readmes_two_step_sign_in_runs() {
    let app = spawn_app().await;
    let Some((_, mut otp, _)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let pending = first_step(&app, &fresh(), "ann@example.com", json!({})).await;
    let code = otp.next_code().await;
    let block = crate::interop::snippets::sh_block(
        "curl -s -H 'Content-Type: application/json' \\\n  -d '{\"email\":\"ann@example.com\"",
    );
    let env = [("PENDING_TOKEN", pending.as_str()), ("CODE", code.as_str())];
    let (got, stated) = crate::interop::snippets::run_curl_block(&app, block, &env).await;
    assert_eq!(stated, [200, 200], "{block}");
    assert_eq!(got, stated, "{block}");
}
