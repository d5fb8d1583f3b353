//! Outbound webhooks, received by the README's Python receiver (the `standardwebhooks` package
//! from PyPI verifies every delivery; it dedupes by `webhook-id` in SQLite): in order, retried
//! while the receiver is down, stopped at a dead delivery and started again by an administrator,
//! signed with both secrets while one is rotated, delivered once with two instances.

mod admin;
mod delivery;

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

use crate::helpers::{PASSWORD, TestApp, client};

const README: &str = include_str!("../../../README.md");

/// A secret of the Standard Webhooks specification's examples.
pub(super) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The README's receiver: the Python block that starts with its comment line.
fn receiver_code() -> &'static str {
    let marker = "```python\n# A Standard Webhooks receiver";
    let open = README.find(marker).expect("the README has the receiver") + "```python\n".len();
    &README[open..open + README[open..].find("```\n").unwrap()]
}

/// A port nothing listens on (yet).
pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The README's receiver, running.
pub(super) struct Receiver {
    child: tokio::process::Child,
}

/// Where a receiver keeps the ids it has seen, and its code: one per test.
pub(super) struct Place {
    dir: PathBuf,
    python: PathBuf,
    /// The port its receivers listen on.
    pub port: u16,
    handled: Arc<Mutex<Vec<Value>>>,
}

impl Place {
    /// A fresh place, or `None` (with a notice) without the test's Python.
    pub fn new() -> Option<Self> {
        let python = crate::interop::python()?;
        let dir = std::env::temp_dir().join(format!("tollgate-receiver-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("receiver.py"), receiver_code()).unwrap();
        let _ = std::fs::remove_file(dir.join("seen.sqlite3"));
        Some(Self {
            dir,
            python,
            port: free_port(),
            handled: Arc::default(),
        })
    }

    /// The receiver's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/tollgate", self.port)
    }

    /// Starts the receiver with `secrets` (one, or two space-separated); it keeps the ids seen
    /// by the ones before.
    pub async fn start(&self, secrets: &str) -> Receiver {
        let mut child = tokio::process::Command::new(&self.python)
            .arg(self.dir.join("receiver.py"))
            .current_dir(&self.dir)
            .env("WEBHOOK_SECRET", secrets)
            .env("SEEN_DB", self.dir.join("seen.sqlite3"))
            .env("PORT", self.port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python runs");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let handled = self.handled.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                handled
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        });
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Receiver { child };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the receiver did not start");
    }

    /// Everything handled here so far, by every receiver, in order.
    pub fn handled(&self) -> Vec<Value> {
        self.handled.lock().unwrap().clone()
    }

    /// Waits until `n` events were handled here; they.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..300 {
            let handled = self.handled();
            if handled.len() >= n {
                return handled;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} events were not handled: {:#?}", self.handled());
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Receiver {
    /// Stops it (the port refuses connections).
    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
        let _ = self.child.wait().await;
    }
}

/// The types of `events`.
pub(super) fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// Checks the events are in the trail's order (`seq` rising) and each is the envelope.
pub(super) fn assert_in_order(events: &[Value]) {
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| e["data"]["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    for e in events {
        assert_eq!(e["type"], e["data"]["type"], "{e}");
        assert!(e["data"]["id"].as_str().unwrap().starts_with("aud_"), "{e}");
        assert!(
            e["timestamp"].is_string() && e["data"]["payload"].is_object(),
            "{e}"
        );
        assert!(
            e["data"].get("client_ip").is_none(),
            "no client address: {e}"
        );
    }
}

/// The endpoint `id` as stored.
pub(super) async fn endpoint(app: &TestApp, id: &str) -> tollgate::outbound::Endpoint {
    tollgate::outbound::find(&app.state.db, id)
        .await
        .unwrap()
        .expect("the endpoint")
}

/// Waits until the endpoint `id` satisfies `done`.
pub(super) async fn wait_for_endpoint(
    app: &TestApp,
    id: &str,
    done: impl Fn(&tollgate::outbound::Endpoint) -> bool,
    what: &str,
) -> tollgate::outbound::Endpoint {
    for _ in 0..300 {
        let e = endpoint(app, id).await;
        if done(&e) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {:?}", endpoint(app, id).await);
}

/// Waits until tollgate has the receiver's answer to the last event it handled (the receiver
/// prints an event before it answers: stopped in between, it gets the event again).
pub(super) async fn acknowledged(app: &TestApp, id: &str, place: &Place) {
    let last = place
        .handled()
        .last()
        .map_or(0, |e| e["data"]["seq"].as_i64().unwrap());
    wait_for_endpoint(app, id, |e| e.cursor_seq >= last, "acknowledged").await;
}

/// Waits until endpoint `id` (which takes every event) has delivered every event recorded so
/// far: one recorded just before (an administrator's retry) may not be handled yet, and a test
/// that moves the cursor then would race its delivery.
pub(super) async fn settled(app: &TestApp, id: &str) {
    let (newest,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM audit_events")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    wait_for_endpoint(app, id, |e| e.cursor_seq >= newest, "settled").await;
}

/// A password sign-in of `email`: one `auth.signed_in` event.
pub(super) async fn sign_in(app: &TestApp, email: &str) {
    let body = json!({"email": email, "password": PASSWORD});
    let r = app
        .post_json_with(&client(), "/api/auth/login", &body)
        .await;
    assert_eq!(r.status(), 200);
}
