//! The refusals: every one answers 400 `passkey_invalid`, signs nobody in, and (but for a race's
//! loser) leaves the passkey's counter where it was.

use serde_json::{Value, json};

use super::{Device, answer, options, post, refusal, register, verified_user};
use crate::helpers::{TestApp, app_with_mail, client, spawn_app};

/// A sign-in answer built by `make` from fresh sign-in options: its refusal, checking that the
/// client it came from is still signed out.
async fn refused_sign_in(
    app: &TestApp,
    device: &mut Device,
    make: impl FnOnce(&mut Device, &Value) -> Value,
) -> (u16, String) {
    let c = client();
    let opts = options(app, &c, "/api/auth/passkey/options", json!({})).await;
    let body = make(device, &opts);
    let r = refusal(post(app, &c, "/api/auth/passkey", &body).await);
    assert_eq!(app.get_with(&c, "/api/me").await.status(), 401);
    r
}

const INVALID: (u16, &str) = (400, "passkey_invalid");

fn is_invalid(r: (u16, String)) -> bool {
    (r.0, r.1.as_str()) == INVALID
}

#[tokio::test]
async fn answers_from_another_origin_or_relying_party_or_without_verification_are_refused() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "ann@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    register(&app, &c, &mut device, "Key").await;
    let origin = device.origin.clone();

    // A phishing page on another origin relays our challenge to the user's authenticator.
    let r = refused_sign_in(&app, &mut device, |d, opts| {
        d.origin = "http://localhost:1".into();
        let credential = d.get(opts);
        answer(opts, credential)
    })
    .await;
    assert!(is_invalid(r.clone()), "{r:?}");
    device.origin = origin;
    for knobs in [json!({"rp_id": "evil.example"}), json!({"uv": false})] {
        let r = refused_sign_in(&app, &mut device, |d, opts| {
            answer(opts, d.get_with(opts, knobs.clone()))
        })
        .await;
        assert!(is_invalid(r.clone()), "{knobs}: {r:?}");
    }
    // Still usable as it should be.
    let (status, _) = super::sign_in(&app, &client(), &mut device, json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_replayed_answer_and_a_counter_going_back_are_refused() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "bo@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    register(&app, &c, &mut device, "Key").await;
    let first = client();
    let opts = options(&app, &first, "/api/auth/passkey/options", json!({})).await;
    let body = answer(&opts, device.get(&opts));
    let (status, _) = post(&app, &first, "/api/auth/passkey", &body).await;
    assert_eq!(status, 200);
    // The same answer again, from another browser: its ceremony was taken.
    let thief = client();
    let r = refusal(post(&app, &thief, "/api/auth/passkey", &body).await);
    assert!(is_invalid(r.clone()), "{r:?}");
    // The same signed answer under a fresh ceremony: the challenge is not that one.
    let opts = options(&app, &thief, "/api/auth/passkey/options", json!({})).await;
    let mut replay = body.clone();
    replay["ceremony"] = opts["ceremony"].clone();
    let r = refusal(post(&app, &thief, "/api/auth/passkey", &replay).await);
    assert!(is_invalid(r.clone()), "{r:?}");

    // A clone of the authenticator, behind the original's counter.
    let seen = device.counter();
    let r = refused_sign_in(&app, &mut device, |d, opts| {
        answer(opts, d.get_with(opts, json!({"counter": seen})))
    })
    .await;
    assert!(is_invalid(r.clone()), "same counter: {r:?}");
    let r = refused_sign_in(&app, &mut device, |d, opts| {
        answer(opts, d.get_with(opts, json!({"counter": 1})))
    })
    .await;
    assert!(is_invalid(r.clone()), "counter went back: {r:?}");
    // The original, ahead of the clone, still signs in.
    let (status, _) = super::sign_in(&app, &client(), &mut device, json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn of_two_racing_answers_with_the_same_counter_one_signs_in() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "cy@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    register(&app, &c, &mut device, "Key").await;
    let (a, b) = (client(), client());
    let opts_a = options(&app, &a, "/api/auth/passkey/options", json!({})).await;
    let opts_b = options(&app, &b, "/api/auth/passkey/options", json!({})).await;
    let next = device.counter() + 1;
    let body_a = answer(&opts_a, device.get_with(&opts_a, json!({"counter": next})));
    let body_b = answer(&opts_b, device.get_with(&opts_b, json!({"counter": next})));
    let (ra, rb) = tokio::join!(
        post(&app, &a, "/api/auth/passkey", &body_a),
        post(&app, &b, "/api/auth/passkey", &body_b)
    );
    let mut statuses = [ra.0, rb.0];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{ra:?} {rb:?}");
}

#[tokio::test]
async fn a_user_handle_of_another_account_a_ceremony_of_another_kind_or_an_old_one_is_refused() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "di@example.com").await;
    let victim = verified_user(&app, &sink, "vic@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    let Some(mut victims) = Device::new(&app) else {
        return;
    };
    register(&app, &c, &mut device, "Mine").await;
    register(&app, &victim, &mut victims, "Theirs").await;

    // My passkey, signing for the victim's user handle.
    let handle = victims.state["user_handle"].clone();
    let r = refused_sign_in(&app, &mut device, |d, opts| {
        let mut credential = d.get(opts);
        credential["response"]["userHandle"] = handle;
        answer(opts, credential)
    })
    .await;
    assert!(is_invalid(r.clone()), "{r:?}");
    // No user handle at all.
    let r = refused_sign_in(&app, &mut device, |d, opts| {
        let mut credential = d.get(opts);
        credential["response"]["userHandle"] = Value::Null;
        answer(opts, credential)
    })
    .await;
    assert!(is_invalid(r.clone()), "{r:?}");

    // A registration's ceremony at a sign-in.
    let reg = options(&app, &c, "/api/account/passkeys/options", json!({})).await;
    let r = refused_sign_in(&app, &mut device, |d, opts| answer(&reg, d.get(opts))).await;
    assert!(is_invalid(r.clone()), "{r:?}");

    // A sign-in ceremony past its 5 minutes.
    let late = client();
    let opts = options(&app, &late, "/api/auth/passkey/options", json!({})).await;
    app.state.clock.advance(301);
    let body = answer(&opts, device.get(&opts));
    let r = refusal(post(&app, &late, "/api/auth/passkey", &body).await);
    assert!(is_invalid(r.clone()), "{r:?}");
}

#[tokio::test]
async fn malformed_answers_are_refused_with_one_code_and_change_nothing() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "eve@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    register(&app, &c, &mut device, "Key").await;
    let garbage = [
        json!("not an object"),
        json!({}),
        json!({"rawId": "!!!", "response": {}}),
        json!({"rawId": "AAAA", "response": {"clientDataJSON": "", "authenticatorData": "",
            "signature": ""}}),
        json!({"rawId": "A".repeat(10_000), "response": {"clientDataJSON": "x",
            "authenticatorData": "x", "signature": "x", "userHandle": "x"}}),
    ];
    for credential in garbage {
        let c2 = client();
        let opts = options(&app, &c2, "/api/auth/passkey/options", json!({})).await;
        let r = refusal(
            post(
                &app,
                &c2,
                "/api/auth/passkey",
                &answer(&opts, credential.clone()),
            )
            .await,
        );
        assert!(is_invalid(r.clone()), "{credential}: {r:?}");
    }
    for ceremony in [json!("tgw_nope"), json!(""), json!(42)] {
        let body = json!({"ceremony": ceremony, "credential": {}});
        let r = refusal(post(&app, &client(), "/api/auth/passkey", &body).await);
        assert!(r.0 == 400, "{ceremony}: {r:?}");
    }
    let r = refusal(post(&app, &client(), "/api/auth/passkey", &json!({})).await);
    assert_eq!(r, (400, "invalid_field".into()));
    let (status, list) = (
        200,
        app.get_with(&c, "/api/account/passkeys")
            .await
            .json::<Value>()
            .await
            .unwrap(),
    );
    assert_eq!(
        (status, list[0]["last_used_at"].clone()),
        (200, Value::Null)
    );
}

#[tokio::test]
async fn registering_needs_a_proven_address_a_fresh_proof_and_the_ceremony_of_this_account() {
    let (app, sink) = app_with_mail(&[]).await;
    let unproven = app.user("new@example.com").await;
    let r = refusal(post(&app, &unproven, "/api/account/passkeys/options", &json!({})).await);
    assert_eq!(r, (403, "email_unverified".into()));

    let c = verified_user(&app, &sink, "fay@example.com").await;
    let other = verified_user(&app, &sink, "gus@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    // Another account's ceremony cannot register a passkey here.
    let theirs = options(&app, &other, "/api/account/passkeys/options", json!({})).await;
    let body = answer(&theirs, device.create(&theirs));
    let r = refusal(post(&app, &c, "/api/account/passkeys", &body).await);
    assert!(is_invalid(r.clone()), "{r:?}");
    // Made on a phishing origin.
    let opts = options(&app, &c, "/api/account/passkeys/options", json!({})).await;
    let origin = std::mem::replace(&mut device.origin, "http://localhost:1".into());
    let body = answer(&opts, device.create(&opts));
    device.origin = origin;
    let r = refusal(post(&app, &c, "/api/account/passkeys", &body).await);
    assert!(is_invalid(r.clone()), "{r:?}");
    // Keys tollgate could not check, and ids past WebAuthn's 1023 bytes.
    for knobs in [
        json!({"cose_alg": -999}),
        json!({"cose_alg": -8}),
        json!({"id_len": 1024}),
        json!({"y_zero": true}),
    ] {
        let opts = options(&app, &c, "/api/account/passkeys/options", json!({})).await;
        let body = answer(&opts, device.create_with(&opts, knobs.clone()));
        let r = refusal(post(&app, &c, "/api/account/passkeys", &body).await);
        assert!(is_invalid(r.clone()), "{knobs}: {r:?}");
    }
    // The same credential twice.
    let first = register(&app, &c, &mut device, "Key").await;
    let opts = options(&app, &c, "/api/account/passkeys/options", json!({})).await;
    let excluded = opts["publicKey"]["excludeCredentials"].as_array().unwrap();
    assert_eq!(excluded.len(), 1, "{opts}");
    assert_eq!(app.count("passkeys").await, 1, "{first}");

    // A stale proof.
    app.state.clock.advance(601);
    let r = refusal(post(&app, &c, "/api/account/passkeys/options", &json!({})).await);
    assert_eq!(r, (403, "reauth_required".into()));
}

#[tokio::test]
async fn passkey_routes_need_a_session_and_an_ip_base_url_turns_passkeys_off() {
    let app = spawn_app().await;
    let r = refusal(post(&app, &client(), "/api/account/passkeys/options", &json!({})).await);
    assert_eq!(r.0, 401);
    let r = refusal(
        post(
            &app,
            &client(),
            "/api/auth/reauth/passkey/options",
            &json!({}),
        )
        .await,
    );
    assert_eq!(r.0, 401);

    let on_ip = TestApp::builder()
        .with("TOLLGATE_BASE_URL", "http://127.0.0.1:9/")
        .spawn()
        .await;
    let r = refusal(post(&on_ip, &client(), "/api/auth/passkey/options", &json!({})).await);
    assert_eq!(r, (503, "passkeys_unavailable".into()));
    let login = on_ip.get("/login").await.text().await.unwrap();
    assert!(
        !login.contains("data-passkey"),
        "no button that cannot work"
    );
}

#[tokio::test]
async fn racing_registrations_stop_at_twenty_passkeys() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = verified_user(&app, &sink, "hal@example.com").await;
    let Some(mut device) = Device::new(&app) else {
        return;
    };
    for n in 0..18 {
        register(&app, &c, &mut device, &format!("Key {n}")).await;
    }
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let opts = options(&app, &c, "/api/account/passkeys/options", json!({})).await;
        bodies.push(answer(&opts, device.create(&opts)));
    }
    let path = "/api/account/passkeys";
    let (a, b, c3, d) = tokio::join!(
        post(&app, &c, path, &bodies[0]),
        post(&app, &c, path, &bodies[1]),
        post(&app, &c, path, &bodies[2]),
        post(&app, &c, path, &bodies[3]),
    );
    let statuses = [a.0, b.0, c3.0, d.0];
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert_eq!(created, 2, "{statuses:?}");
    assert_eq!(app.count("passkeys").await, 20);
}
