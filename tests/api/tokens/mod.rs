//! Access tokens (JWTs) and refresh tokens: obtained by signing in with `"token": true` or by
//! exchanging a session, accepted as `Bearer` by the gates and forward-auth, refreshed with
//! rotation and reuse detection, ended by everything that ends sessions, and published keys
//! (`/.well-known/jwks.json`) that verify them. Forged tokens are signed here with `ring` and
//! assembled by hand, so no code of tollgate's JWT path is shared with the tests.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::Response;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, client};

mod attacks;
mod endings;
mod lifecycle;
mod rotation;

/// An Ed25519 private key (PKCS#8 DER in base64; seed bytes 1 to 32) given to apps that tests
/// forge tokens for.
pub(super) const SIGNING_KEY: &str =
    "MC4CAQAwBQYDK2VwBCIEIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g";

/// Signs in `email` (password [`PASSWORD`]) with `"token": true` from a fresh client: the answer.
pub(super) async fn login_tokens(app: &TestApp, email: &str) -> Value {
    let r = app
        .post_json_with(
            &client(),
            "/api/auth/login",
            &json!({"email": email, "password": PASSWORD, "token": true}),
        )
        .await;
    assert_eq!(r.status(), 200, "token sign-in of {email}");
    r.json().await.unwrap()
}

/// The access token of a token answer.
pub(super) fn access(pair: &Value) -> String {
    pair["access_token"].as_str().unwrap().to_owned()
}

/// The refresh token of a token answer.
pub(super) fn refresh_of(pair: &Value) -> String {
    pair["refresh_token"].as_str().unwrap().to_owned()
}

/// GET `path` with `token` as a bearer token, from a client without cookies.
pub(super) async fn bearer_get(app: &TestApp, path: &str, token: &str) -> Response {
    client()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// POST JSON `body` to `path` with `token` (an access token or a key) as a bearer token, from a
/// client without cookies.
pub(super) async fn bearer_post(app: &TestApp, path: &str, token: &str, body: &Value) -> Response {
    client()
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Forward-auth of `/app` with `token`, as a proxy asks.
pub(super) async fn forward(app: &TestApp, token: &str) -> Response {
    client()
        .get(app.url("/auth/forward"))
        .header("x-forwarded-uri", "/app")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// `/api/me`'s status with `token`.
pub(super) async fn me_status(app: &TestApp, token: &str) -> u16 {
    bearer_get(app, "/api/me", token).await.status().as_u16()
}

/// Exchanges `refresh_token`: the answer.
pub(super) async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.post_json_with(
        &client(),
        "/api/auth/token/refresh",
        &json!({"refresh_token": refresh_token}),
    )
    .await
}

/// The header and claims of a JWT, decoded (not verified).
pub(super) fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let part = |p: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    (part(parts[0]), part(parts[1]))
}

/// A compact JWS of `header` and `claims` signed by `sign` over `header.claims`.
pub(super) fn assemble(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Signs with the Ed25519 key whose PKCS#8 document is `pkcs8_b64`.
pub(super) fn ed25519(pkcs8_b64: &str) -> impl Fn(&[u8]) -> Vec<u8> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(pkcs8_b64)
        .unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).unwrap();
    move |msg| pair.sign(msg).as_ref().to_vec()
}

/// The published key set.
pub(super) async fn jwks(app: &TestApp) -> Value {
    let r = client()
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The key ids of the published key set.
pub(super) async fn kids(app: &TestApp) -> Vec<String> {
    jwks(app).await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}
