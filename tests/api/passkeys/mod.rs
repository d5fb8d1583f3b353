//! Passkeys over the JSON API, on both engines: registering, signing in without a username, the
//! second step of a two-step sign-in, re-authentication, the account's list, and the refusals
//! (another origin or relying party, a replayed answer, a counter going back, no user
//! verification, a ceremony of another kind or sign-in, racing answers).
//!
//! The authenticator is `authenticator.py` (keys and signatures by Python's `cryptography`, CBOR by
//! python-fido2), standing in for the user's device; the browser path runs in Chromium's virtual
//! authenticator (e2e/scenarios.mjs). Without Python the tests are skipped with a notice, unless
//! `TOLLGATE_REQUIRE_PYTHON=1` (CI), which fails instead.

mod attacks;
mod flows;
mod second_step;

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
};

use reqwest::Client;
use serde_json::{Value, json};

use crate::{
    helpers::{SmtpSink, TestApp},
    second_factor::{post, verify_address},
};

/// A passkey authenticator holding one credential (once `create` made it).
pub(super) struct Device {
    python: PathBuf,
    /// The origin the browser would report.
    pub origin: String,
    /// The authenticator's state: its key, credential id, user handle and counter.
    pub state: Value,
}

impl Device {
    /// A device used from the app's origin (`http://localhost:PORT`), or `None` without Python.
    pub fn new(app: &TestApp) -> Option<Self> {
        Some(Self {
            python: crate::interop::python()?,
            origin: app.address.replace("127.0.0.1", "localhost"),
            state: Value::Null,
        })
    }

    fn run(&mut self, op: &str, options: &Value, knobs: Value) -> Value {
        let mut request = json!({
            "op": op,
            "options": options["publicKey"],
            "origin": self.origin,
            "state": self.state,
        });
        request
            .as_object_mut()
            .unwrap()
            .extend(knobs.as_object().unwrap().clone());
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/api/passkeys/authenticator.py"
        );
        let mut child = Command::new(&self.python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "authenticator: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        self.state = answer["state"].clone();
        answer["credential"].clone()
    }

    /// `navigator.credentials.create()` for `options` (tollgate's answer, with `publicKey`).
    pub fn create(&mut self, options: &Value) -> Value {
        self.run("create", options, json!({}))
    }

    /// `navigator.credentials.get()` for `options`.
    pub fn get(&mut self, options: &Value) -> Value {
        self.run("get", options, json!({}))
    }

    /// `create` with knobs: `id_len`, `cose_alg`, `uv`, `rp_id`.
    pub fn create_with(&mut self, options: &Value, knobs: Value) -> Value {
        self.run("create", options, knobs)
    }

    /// `get` with knobs: `uv`, `rp_id`, `counter`.
    pub fn get_with(&mut self, options: &Value, knobs: Value) -> Value {
        self.run("get", options, knobs)
    }

    /// The signature counter it holds.
    pub fn counter(&self) -> i64 {
        self.state["sign_count"].as_i64().unwrap()
    }
}

/// POSTs `{}` to an options route: the options, asserting 200.
pub(super) async fn options(app: &TestApp, c: &Client, path: &str, body: Value) -> Value {
    let (status, options) = post(app, c, path, &body).await;
    assert_eq!(status, 200, "{path}: {options}");
    assert!(options["ceremony"].as_str().unwrap().starts_with("tgw_"));
    options
}

/// An answer's body: the ceremony of `options` and the credential.
pub(super) fn answer(options: &Value, credential: Value) -> Value {
    json!({"ceremony": options["ceremony"], "credential": credential})
}

/// A signed-in user whose address is proven (registering a passkey needs it).
pub(super) async fn verified_user(app: &TestApp, sink: &SmtpSink, email: &str) -> Client {
    let c = app.user(email).await;
    verify_address(app, sink, &c, email).await;
    c
}

/// Registers a passkey named `name` on `c` with `device`: the passkey's JSON.
pub(super) async fn register(app: &TestApp, c: &Client, device: &mut Device, name: &str) -> Value {
    let options = options(app, c, "/api/account/passkeys/options", json!({})).await;
    let mut body = answer(&options, device.create(&options));
    body["name"] = json!(name);
    let (status, passkey) = post(app, c, "/api/account/passkeys", &body).await;
    assert_eq!(status, 201, "{passkey}");
    passkey
}

/// A sign-in with `device` alone on `c` (extra fields merged in): status and body.
pub(super) async fn sign_in(
    app: &TestApp,
    c: &Client,
    device: &mut Device,
    extra: Value,
) -> (u16, Value) {
    let options = options(app, c, "/api/auth/passkey/options", json!({})).await;
    let mut body = answer(&options, device.get(&options));
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    post(app, c, "/api/auth/passkey", &body).await
}

/// PATCH `path` with JSON on `c`.
pub(super) async fn patch(app: &TestApp, c: &Client, path: &str, body: &Value) -> u16 {
    c.patch(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// DELETE `path` on `c`.
pub(super) async fn delete(app: &TestApp, c: &Client, path: &str) -> u16 {
    c.delete(app.url(path))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The `error` of an answer, with its status.
pub(super) fn refusal((status, body): (u16, Value)) -> (u16, String) {
    (status, body["error"].as_str().unwrap_or("").to_owned())
}
