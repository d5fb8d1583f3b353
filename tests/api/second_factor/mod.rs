//! Two-factor sign-in: enrolment with an authenticator app, the two-step sign-in on every path
//! (password, magic link, tokens, pages), recovery codes, trusted devices, re-authentication,
//! and the attacks (a pending sign-in granting nothing, replayed codes, guessing, a stolen
//! session without the second factor).
//!
//! The codes come from pyotp (from the Python package registry, scripts/install-test-deps), an
//! implementation nobody here wrote; without it the tests are skipped with a notice, unless
//! `TOLLGATE_REQUIRE_PYTHON=1` (CI), which fails instead.

mod attacks;
mod enrol;
mod operator;
mod pages;
mod sign_in;

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use reqwest::{Client, Response};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, client};

/// An authenticator app holding one secret, as pyotp computes its codes. It remembers the last
/// 30-second step it gave a code for, as the server remembers the last one used, so every code it
/// gives is one the server has not seen (waiting for the next step when it must).
pub(super) struct Authenticator {
    python: PathBuf,
    /// The base32 secret.
    pub secret: String,
    last: Option<i64>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Authenticator {
    /// An app for `secret`, or `None` (the test is skipped) without Python.
    pub fn new(secret: &str) -> Option<Self> {
        Some(Self {
            python: crate::interop::python()?,
            secret: secret.to_owned(),
            last: None,
        })
    }

    /// The code of `step` (pyotp's `TOTP(secret).at(step * 30)`).
    pub fn code_of(&self, step: i64) -> String {
        let out = std::process::Command::new(&self.python)
            .args([
                "-c",
                "import pyotp, sys; print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))",
                &self.secret,
                &(step * 30).to_string(),
            ])
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "pyotp: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// The next code the server accepts: of the current step, or of the one after the last used.
    pub async fn next_code(&mut self) -> String {
        loop {
            let current = unix_now() / 30;
            let step = self.last.map_or(current, |last| (last + 1).max(current));
            if step <= current + 1 {
                self.last = Some(step);
                return self.code_of(step);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The step of the last code given.
    pub fn last_step(&self) -> Option<i64> {
        self.last
    }

    /// A code the server refuses now (none of the three it would take).
    pub fn wrong_code(&self) -> String {
        let current = unix_now() / 30;
        let taken: Vec<String> = (current - 2..=current + 2)
            .map(|s| self.code_of(s))
            .collect();
        (0..)
            .map(|n: u32| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
            .find(|c| !taken.contains(c))
            .unwrap()
    }
}

/// Moves the app's clock to just past the start of a 15-minute window, so a test that fills the
/// code allowance does not see its window end half-way (TOTP codes follow the wall clock, which
/// this does not move).
pub(super) fn start_of_code_window(app: &TestApp) {
    let now = app.state.clock.now();
    app.state.clock.advance(900 - now.rem_euclid(900) + 1);
}

/// POSTs JSON with `c` and returns the status and body (`Value::Null` when not JSON).
pub(super) async fn post(app: &TestApp, c: &Client, path: &str, body: &Value) -> (u16, Value) {
    let r = app.post_json_with(c, path, body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Turns two-factor on for the signed-in `c`: the app holding the secret, and the recovery codes.
pub(super) async fn enable(app: &TestApp, c: &Client) -> Option<(Authenticator, Vec<String>)> {
    let (status, begun) = post(app, c, "/api/account/2fa/totp", &json!({})).await;
    assert_eq!(status, 200, "{begun}");
    let mut otp = Authenticator::new(begun["secret"].as_str().unwrap())?;
    let code = otp.next_code().await;
    let (status, done) = post(
        app,
        c,
        "/api/account/2fa/totp/confirm",
        &json!({"code": code}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    Some((otp, codes_of(&done)))
}

/// The recovery codes of an answer.
pub(super) fn codes_of(answer: &Value) -> Vec<String> {
    answer["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

/// `GET /api/account/2fa` of `c`.
pub(super) async fn two_factor_state(app: &TestApp, c: &Client) -> Value {
    app.get_with(c, "/api/account/2fa")
        .await
        .json()
        .await
        .unwrap()
}

/// Proves the address of the signed-in `c` with the verification link mailed at registration
/// (the first mail to it): the account's password and factor are then the owner's for sure.
pub(super) async fn verify_address(
    app: &TestApp,
    sink: &crate::helpers::SmtpSink,
    c: &Client,
    email: &str,
) {
    let mail = sink.wait_for(email, 1).await;
    let body = json!({"token": mail.token("verify-email")});
    let r = app.post_json_with(c, "/api/auth/verify-email", &body).await;
    assert_eq!(r.status(), 200);
}

/// A registered user with two-factor on: their signed-in client, app and recovery codes.
pub(super) async fn user_with_2fa(
    app: &TestApp,
    email: &str,
) -> Option<(Client, Authenticator, Vec<String>)> {
    let c = app.user(email).await;
    let (otp, codes) = enable(app, &c).await?;
    Some((c, otp, codes))
}

/// A password sign-in of `email` on `c` that must stop at the second step: the pending token.
pub(super) async fn first_step(app: &TestApp, c: &Client, email: &str, extra: Value) -> String {
    let mut body = json!({"email": email, "password": PASSWORD});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, answer) = post(app, c, "/api/auth/login", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["second_factor_required"], true, "{answer}");
    assert!(answer.get("id").is_none() && answer.get("access_token").is_none());
    answer["pending_token"].as_str().unwrap().to_owned()
}

/// The second step with `proof` (`{"code": …}` or `{"recovery_code": …}`) on `c`.
pub(super) async fn second_step(
    app: &TestApp,
    c: &Client,
    pending: &str,
    proof: Value,
) -> (u16, Value) {
    let mut body = json!({"pending_token": pending});
    body.as_object_mut()
        .unwrap()
        .extend(proof.as_object().unwrap().clone());
    post(app, c, "/api/auth/2fa/verify", &body).await
}

/// GET `path` on `c`: the status.
pub(super) async fn status_of(app: &TestApp, c: &Client, path: &str) -> u16 {
    app.get_with(c, path).await.status().as_u16()
}

/// The `Set-Cookie` names of a response.
pub(super) fn cookie_names(r: &Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split('=').next())
        .map(str::to_owned)
        .collect()
}

/// A fresh client.
pub(super) fn fresh() -> Client {
    client()
}
