//! API keys: made and revoked by a session, used as `Bearer` or as the Basic password, bounded by
//! their scopes, never reaching account changes, and refused (never falling back to a cookie)
//! when they are bad.

use reqwest::{Client, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, client};

mod documented;
mod headers;
mod lifecycle;
mod pages;

/// Creates a key for `c`'s session; the whole answer.
pub(super) async fn create(app: &TestApp, c: &Client, body: Value) -> Response {
    app.post_json_with(c, "/api/keys", &body).await
}

/// A key with `scopes` for `c`'s user: its secret.
pub(super) async fn key_of(app: &TestApp, c: &Client, scopes: &[&str]) -> String {
    let r = create(app, c, json!({"name": "test", "scopes": scopes})).await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Revokes key `id` as `c`'s session; the status.
pub(super) async fn revoke(app: &TestApp, c: &Client, id: &str) -> u16 {
    c.delete(app.url(&format!("/api/keys/{id}")))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// GET `path` with `key` as a bearer token, from a client without cookies.
pub(super) async fn get_with_key(app: &TestApp, path: &str, key: &str) -> Response {
    client()
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// POST JSON `body` to `path` with `key` as a bearer token, from `c` (its cookies too).
pub(super) async fn post_with_key(
    app: &TestApp,
    c: &Client,
    path: &str,
    key: &str,
    body: Value,
) -> Response {
    c.post(app.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}
