//! Email flows end to end: lettre speaks real SMTP over TCP to a sink on loopback, and the tests
//! read what it received. Split by flow; the helpers the flows share are here.

mod change;
mod delivery;
mod tokens;
mod verification;

use reqwest::Client;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, SmtpSink, TestApp, client};

pub use crate::helpers::app_with_mail;

/// POSTs JSON `body` to `path` as `c`.
pub async fn post(app: &TestApp, c: &Client, path: &str, body: Value) -> reqwest::Response {
    app.post_json_with(c, path, &body).await
}

/// POSTs `body` to `path` from a fresh client (no session).
pub async fn anonymous(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    post(app, &client(), path, body).await
}

/// Asks, from a fresh client, for the mail `path` sends to `email` (a reset or sign-in link);
/// the answer is 202 whether or not the address is known.
pub async fn ask_for_mail(app: &TestApp, path: &str, email: &str) -> reqwest::Response {
    let r = anonymous(app, path, json!({"email": email})).await;
    assert_eq!(r.status(), 202, "{path} for {email}");
    r
}

/// Asks to change `c`'s address to `new_email` (the first mail to it); returns the confirmation
/// token sent there.
pub async fn change_link(app: &TestApp, c: &Client, sink: &SmtpSink, new_email: &str) -> String {
    let change = post(
        app,
        c,
        "/api/auth/email/change",
        json!({"password": PASSWORD, "new_email": new_email}),
    )
    .await;
    assert_eq!(change.status(), 202);
    sink.wait_for(new_email, 1).await.token("confirm-email")
}
