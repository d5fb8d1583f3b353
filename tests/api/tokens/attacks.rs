//! The attacker's tokens: `alg: none`, HS256 keyed with the public key, another issuer or
//! audience, expired, mistyped claims, another signer, tampered claims, a dead family, and
//! tokens beside other credentials. The app signs with a key the test knows, so each forgery is
//! the genuine token with one thing changed, and the genuine one re-signed here passes.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

use super::{
    SIGNING_KEY, access, assemble, bearer_get, decode, ed25519, jwks, login_tokens, me_status,
    refresh_of,
};
use crate::helpers::{TestApp, client, error_of};

async fn app_with_known_key() -> TestApp {
    TestApp::builder()
        .with("TOLLGATE_JWT_SIGNING_KEY", SIGNING_KEY)
        .spawn()
        .await
}

/// Another Ed25519 key (seed bytes 33 to 64).
const OTHER_KEY: &str = "MC4CAQAwBQYDK2VwBCIEICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9A";

#[tokio::test]
async fn forged_and_altered_tokens_are_refused_and_the_genuine_one_re_signed_passes() {
    let app = app_with_known_key().await;
    app.user("ann@example.com").await;
    let pair = login_tokens(&app, "ann@example.com").await;
    let (header, claims) = decode(&access(&pair));
    let sign = ed25519(SIGNING_KEY);

    // The machinery is sound: the same header and claims signed here are accepted.
    let resigned = assemble(&header, &claims, &sign);
    assert_eq!(me_status(&app, &resigned).await, 200);

    let now = app.state.clock.now();
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = claims.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let public = URL_SAFE_NO_PAD
        .decode(jwks(&app).await["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let hs256 = |msg: &[u8]| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&public).unwrap();
        mac.update(msg);
        mac.finalize().into_bytes().to_vec()
    };
    let mut none_header = header.clone();
    none_header["alg"] = json!("none");
    let mut hs_header = header.clone();
    hs_header["alg"] = json!("HS256");
    let mut jwt_typ = header.clone();
    jwt_typ["typ"] = json!("JWT");
    let mut crit = header.clone();
    crit["crit"] = json!(["exp"]);
    let long_lived = {
        let mut c = claims.clone();
        c["iat"] = json!(now);
        c["exp"] = json!(now + 3_600);
        c
    };
    let overflowing = {
        let mut c = claims.clone();
        c["iat"] = json!(-9_223_372_036_854_774_808_i64);
        c["exp"] = json!(i64::MAX);
        c
    };
    let mut unknown_kid = header.clone();
    unknown_kid["kid"] = json!("tollgate-not-a-key");
    let none_token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(none_header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let forgeries: Vec<(&str, String)> = vec![
        ("alg none, no signature", none_token),
        ("alg none, signed", assemble(&none_header, &claims, &sign)),
        (
            "HS256 keyed with the public key",
            assemble(&hs_header, &claims, hs256),
        ),
        ("another typ", assemble(&jwt_typ, &claims, &sign)),
        ("an unknown kid", assemble(&unknown_kid, &claims, &sign)),
        (
            "another signer, our kid",
            assemble(&header, &claims, ed25519(OTHER_KEY)),
        ),
        (
            "another issuer",
            assemble(&header, &with("iss", json!("https://evil.example")), &sign),
        ),
        (
            "another audience",
            assemble(&header, &with("aud", json!("https://other.example")), &sign),
        ),
        (
            "audience list without ours",
            assemble(&header, &with("aud", json!(["x", "y"])), &sign),
        ),
        (
            "expired",
            assemble(&header, &with("exp", json!(now - 1)), &sign),
        ),
        (
            "exp as a string",
            assemble(&header, &with("exp", json!("never")), &sign),
        ),
        ("no exp", assemble(&header, &without("exp"), &sign)),
        ("no sub", assemble(&header, &without("sub"), &sign)),
        (
            "issued in the future",
            assemble(&header, &with("iat", json!(now + 3_600)), &sign),
        ),
        ("a critical extension", assemble(&crit, &claims, &sign)),
        (
            "longer-lived than the setting",
            assemble(&header, &long_lived, &sign),
        ),
        (
            "not before an hour from now",
            assemble(&header, &with("nbf", json!(now + 3_600)), &sign),
        ),
        (
            "exp at the end of time",
            assemble(&header, &with("exp", json!(i64::MAX)), &sign),
        ),
        (
            "a lifetime that overflows",
            assemble(&header, &overflowing, &sign),
        ),
        (
            "not before in 30 s",
            assemble(&header, &with("nbf", json!(now + 30)), &sign),
        ),
        (
            "a family that does not exist",
            assemble(&header, &with("sid", json!("fam_nope")), &sign),
        ),
        (
            "another user in the family",
            assemble(&header, &with("sub", json!("usr_other")), &sign),
        ),
    ];
    for (why, token) in &forgeries {
        let r = bearer_get(&app, "/api/me", token).await;
        assert_eq!(r.status(), 401, "{why}");
        assert_eq!(error_of(r).await, "unauthenticated", "{why}");
        let forward = super::forward(&app, token).await;
        assert_eq!(forward.status(), 401, "forward-auth: {why}");
    }

    // Tampering with the genuine token's claims breaks its signature.
    let genuine = access(&pair);
    let parts: Vec<&str> = genuine.split('.').collect();
    let team = URL_SAFE_NO_PAD.encode(with("plan", json!("team")).to_string());
    let tampered = format!("{}.{team}.{}", parts[0], parts[2]);
    assert_eq!(me_status(&app, &tampered).await, 401);
    assert_eq!(me_status(&app, &genuine).await, 200);
}

#[tokio::test]
async fn a_token_beside_another_credential_is_refused_and_a_cookie_does_not_rescue_a_bad_one() {
    let app = app_with_known_key().await;
    let c = app.user("ann@example.com").await;
    let pair = login_tokens(&app, "ann@example.com").await;
    let token = access(&pair);
    let (header, claims) = decode(&token);
    let mut expired = claims.clone();
    expired["exp"] = json!(app.state.clock.now() - 1);
    let expired = assemble(&header, &expired, ed25519(SIGNING_KEY));

    // A valid session cookie beside a bad token: judged by the token.
    let r = c
        .get(app.url("/api/me"))
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Two credentials: refused.
    let r = client()
        .get(app.url("/api/me"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", "Bearer tg_0000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // An upstream app's own JWT is not tollgate's: the request is a cookie request.
    let theirs = assemble(
        &json!({"alg": "EdDSA", "kid": "upstream-key"}),
        &claims,
        ed25519(OTHER_KEY),
    );
    let r = c
        .get(app.url("/api/me"))
        .bearer_auth(&theirs)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the cookie decides");
}

#[tokio::test]
async fn a_bearer_token_without_a_cookie_skips_the_origin_rule_and_with_a_cookie_keeps_it() {
    let app = spawn_with_key_and_user().await;
    let (c, pair) = app;
    let url = c.1.url("/api/billing/portal");
    let evil = "https://evil.example";
    let r = client()
        .post(&url)
        .bearer_auth(access(&pair))
        .header("origin", evil)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    // Past the Origin rule (the user has no customer yet).
    assert_ne!(error_of(r).await, "csrf_failed");
    let r =
        c.0.post(&url)
            .bearer_auth(access(&pair))
            .header("origin", evil)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
    assert_eq!(error_of(r).await, "csrf_failed");
    // A refresh token is never a bearer credential.
    let r = client()
        .get(c.1.url("/api/me"))
        .bearer_auth(refresh_of(&pair))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn spawn_with_key_and_user() -> ((reqwest::Client, TestApp), Value) {
    let app = app_with_known_key().await;
    let c = app.user("ann@example.com").await;
    let pair = login_tokens(&app, "ann@example.com").await;
    ((c, app), pair)
}
