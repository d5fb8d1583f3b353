//! Revoked stays revoked: a request that loaded its session before a revocation (password change,
//! password reset, account deletion) and finishes after it writes nothing back.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::helpers::{
    PASSWORD, SmtpSink, TestApp, client, client_without_jar, me_status, post_with_cookie,
    session_cookie,
};

/// A JSON POST sent as raw HTTP/1.1 with `Expect: 100-continue` and its body held back. The
/// server answers `100 Continue` when the handler first reads the body, which is after every
/// other extractor has run: from then on the request has loaded its session and its user.
pub struct HeldPost {
    stream: TcpStream,
    body: String,
}

impl HeldPost {
    /// Sends the head of `POST path` with `cookie`; returns once the server asks for the body.
    pub async fn start(app: &TestApp, path: &str, cookie: &str, body: &Value) -> Self {
        let host = app.address.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).await.expect("connect");
        let body = body.to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Cookie: {cookie}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        let asked = tokio::time::timeout(Duration::from_secs(10), async {
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed before 100 Continue");
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(asked.is_ok(), "no 100 Continue within 10 s");
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 100"),
            "expected 100 Continue: {text}"
        );
        Self { stream, body }
    }

    /// Sends the body; the final status and the whole answer.
    pub async fn finish(mut self) -> (u16, String) {
        self.stream.write_all(self.body.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            self.stream.read_to_end(&mut answer),
        )
        .await
        .expect("an answer within 10 s")
        .unwrap();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer[9..12].parse().expect("a status line");
        (status, answer)
    }
}

/// The `name=value` of the session cookie a raw answer sets, if any.
fn raw_session_cookie(answer: &str) -> Option<String> {
    answer
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find(|v| {
            v.split('=')
                .next()
                .is_some_and(|n| n.ends_with("tollgate_session"))
        })
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// Signs `email` in with `password` and returns its session cookie.
async fn login_cookie(app: &TestApp, email: &str, password: &str) -> String {
    let r = app
        .post_json_with(
            &client_without_jar(),
            "/api/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(r.status(), 200, "login of {email}");
    session_cookie(r.headers()).expect("a session cookie")
}

/// How the owner revokes every session while the stolen one has a request open.
#[derive(Clone, Copy, Debug)]
enum Revocation {
    Reset,
    PasswordChange,
    AccountDeletion,
}

const OWNER_PASSWORD: &str = "the owner's new passphrase";

async fn revoke(app: &TestApp, sink: &SmtpSink, how: Revocation) {
    let owner = client();
    let email = "ann@example.com";
    let r = match how {
        Revocation::Reset => {
            let asked = app
                .post_json_with(
                    &owner,
                    "/api/auth/password/forgot",
                    &json!({"email": email}),
                )
                .await;
            assert_eq!(asked.status(), 202);
            let mail = sink.wait_for(email, 2).await;
            app.post_json_with(
                &owner,
                "/api/auth/password/reset",
                &json!({"token": mail.token("reset-password"), "password": OWNER_PASSWORD}),
            )
            .await
        }
        Revocation::PasswordChange => {
            let body = json!({"current_password": PASSWORD, "new_password": OWNER_PASSWORD});
            let cookie = login_cookie(app, email, PASSWORD).await;
            post_with_cookie(app, "/api/auth/password/change", &cookie, &body).await
        }
        Revocation::AccountDeletion => {
            let cookie = login_cookie(app, email, PASSWORD).await;
            let body = json!({"password": PASSWORD});
            post_with_cookie(app, "/api/account/delete", &cookie, &body).await
        }
    };
    assert_eq!(r.status(), 204, "{how:?}");
}

/// An app with mail and the account `ann@example.com`.
async fn app_with_ann() -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .with("SMTP_URL", &sink.url())
        .spawn()
        .await;
    app.register_with(&client(), "ann@example.com", PASSWORD)
        .await;
    (app, sink)
}

#[tokio::test]
async fn a_password_change_held_open_across_a_revocation_changes_nothing_and_revives_no_session() {
    for how in [
        Revocation::Reset,
        Revocation::PasswordChange,
        Revocation::AccountDeletion,
    ] {
        let (app, sink) = app_with_ann().await;
        sink.wait_for("ann@example.com", 1).await;
        // A stolen session starts a password change and holds its body back.
        let stolen = login_cookie(&app, "ann@example.com", PASSWORD).await;
        let held = HeldPost::start(
            &app,
            "/api/auth/password/change",
            &stolen,
            &json!({"current_password": PASSWORD, "new_password": "the thief's passphrase"}),
        )
        .await;

        revoke(&app, &sink, how).await;
        let sessions_after_revocation = app.count("sessions").await;
        let (status, answer) = held.finish().await;

        assert_eq!(
            status, 401,
            "{how:?}: the revoked session cannot act: {answer}"
        );
        assert_eq!(
            app.count("sessions").await,
            sessions_after_revocation,
            "{how:?}: no session row comes back"
        );
        if let Some(cookie) = raw_session_cookie(&answer) {
            assert_eq!(me_status(&app, &cookie).await, 401, "{how:?}: new cookie");
        }
        assert_eq!(
            me_status(&app, &stolen).await,
            401,
            "{how:?}: stolen cookie"
        );
        let thief = app
            .post_json_with(
                &client(),
                "/api/auth/login",
                &json!({"email": "ann@example.com", "password": "the thief's passphrase"}),
            )
            .await;
        assert_eq!(
            thief.status(),
            401,
            "{how:?}: the thief's password was not set"
        );
    }
}

#[tokio::test]
async fn an_email_change_or_a_deletion_held_open_across_a_reset_changes_nothing() {
    let thief = "thief@example.com";
    for (path, body) in [
        (
            "/api/auth/email/change",
            json!({"password": PASSWORD, "new_email": thief}),
        ),
        ("/api/account/delete", json!({"password": PASSWORD})),
    ] {
        let (app, sink) = app_with_ann().await;
        // The owner's address is proven (an email change needs that).
        let mail = sink.wait_for("ann@example.com", 1).await;
        let verified = app
            .post_json_with(
                &client(),
                "/api/auth/verify-email",
                &json!({"token": mail.token("verify-email"), "password": PASSWORD}),
            )
            .await;
        assert_eq!(verified.status(), 200);
        // A stolen session starts the change and holds its body back; the owner resets.
        let stolen = login_cookie(&app, "ann@example.com", PASSWORD).await;
        let held = HeldPost::start(&app, path, &stolen, &body).await;
        revoke(&app, &sink, Revocation::Reset).await;
        let (status, answer) = held.finish().await;

        assert_eq!(
            status, 401,
            "{path}: the revoked session cannot act: {answer}"
        );
        let (to_thief,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE recipient = $1")
                .bind(thief)
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        assert_eq!(to_thief, 0, "{path}: no link went to the thief");
        login_cookie(&app, "ann@example.com", OWNER_PASSWORD).await;
    }
}

/// A new API key (or a password change) asked for by a stolen session and held open across a
/// reset (which revokes every key) or across the owner signing that device out is not made.
#[tokio::test]
async fn a_key_held_open_across_a_reset_or_a_device_sign_out_is_not_made() {
    let key = json!({"name": "thief", "scopes": ["read"]});
    let change = json!({"current_password": PASSWORD, "new_password": "the thief's passphrase"});
    for (by_reset, path, body) in [
        (true, "/api/keys", &key),
        (false, "/api/keys", &key),
        (false, "/api/auth/password/change", &change),
    ] {
        let (app, sink) = app_with_ann().await;
        let stolen = login_cookie(&app, "ann@example.com", PASSWORD).await;
        let held = HeldPost::start(&app, path, &stolen, body).await;
        if by_reset {
            revoke(&app, &sink, Revocation::Reset).await;
        } else {
            let owner = login_cookie(&app, "ann@example.com", PASSWORD).await;
            let list: Value = client_without_jar()
                .get(app.url("/api/account/devices"))
                .header("cookie", &owner)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            // Every other session (the stolen one among them: they signed in the same second).
            let others = list["devices"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["current"] == false && d["kind"] == "session");
            for device in others {
                let id = device["id"].as_str().unwrap();
                let r = client_without_jar()
                    .delete(app.url(&format!("/api/account/devices/{id}")))
                    .header("cookie", &owner)
                    .header("content-type", "application/json")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 204);
            }
        }
        let (status, answer) = held.finish().await;
        assert_eq!(status, 401, "{path}, reset: {by_reset}: {answer}");
        assert_eq!(app.count("api_keys").await, 0, "{path}: no key");
        if !by_reset {
            // The password is still the owner's.
            login_cookie(&app, "ann@example.com", PASSWORD).await;
        }
    }
}
