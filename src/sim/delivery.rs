//! Webhook delivery from the simulator: events signed exactly as Stripe signs them
//! (`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the whsec_ secret>`),
//! posted to the configured URL, retried with exponential backoff until a 2xx, and — with the
//! chaos switch — duplicated, delayed and reordered.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use hmac::{Hmac, KeyInit, Mac};
use rand::{Rng as _, seq::SliceRandom as _};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::clock::Clock;

/// The `Stripe-Signature` header value for `payload` at time `t`.
pub fn sign(secret: &str, t: i64, payload: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Misbehaviour to exercise idempotent, order-independent ingestion.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct Chaos {
    /// Deliver every event twice.
    #[serde(default)]
    pub duplicate: bool,
    /// Hold events and deliver each batch in a random order.
    #[serde(default)]
    pub reorder: bool,
    /// Wait up to this many milliseconds before each delivery.
    #[serde(default)]
    pub max_delay_ms: u64,
    /// Hold every event (slow webhooks) until the switch is turned off again.
    #[serde(default)]
    pub hold: bool,
}

#[derive(Clone)]
struct Target {
    url: String,
    secret: String,
}

/// The delivery queue and its settings.
#[derive(Clone)]
pub struct Deliverer {
    tx: mpsc::UnboundedSender<Value>,
    target: Arc<Mutex<Option<Target>>>,
    chaos: Arc<Mutex<Chaos>>,
}

impl Deliverer {
    /// Starts the delivery task.
    pub fn start(clock: Clock) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let deliverer = Self {
            tx,
            target: Arc::new(Mutex::new(None)),
            chaos: Arc::new(Mutex::new(Chaos::default())),
        };
        tokio::spawn(deliverer.clone().run(rx, clock));
        deliverer
    }

    /// Sets where events go.
    pub fn set_target(&self, url: String, secret: String) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = Some(Target { url, secret });
    }

    /// Where events go, if anywhere yet.
    pub fn target_url(&self) -> Option<String> {
        self.target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|t| t.url.clone())
    }

    /// The chaos switch as it stands.
    pub fn chaos(&self) -> Chaos {
        *self.chaos.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the chaos switch.
    pub fn set_chaos(&self, chaos: Chaos) {
        *self.chaos.lock().unwrap_or_else(|e| e.into_inner()) = chaos;
        // Wakes the delivery task so that events held so far go out when `hold` is lifted.
        let _ = self.tx.send(Value::Null);
    }

    /// Queues an event.
    pub fn send(&self, event: Value) {
        let _ = self.tx.send(event);
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<Value>, clock: Clock) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        let mut held = Vec::new();
        while let Some(first) = rx.recv().await {
            // `Null` only wakes the task (the switch changed); it is not an event.
            held.extend(Some(first).filter(|e| !e.is_null()));
            while let Ok(more) = rx.try_recv() {
                held.extend(Some(more).filter(|e| !e.is_null()));
            }
            let chaos = *self.chaos.lock().unwrap_or_else(|e| e.into_inner());
            if chaos.hold || held.is_empty() {
                continue;
            }
            let mut batch = std::mem::take(&mut held);
            if chaos.duplicate {
                batch = batch.into_iter().flat_map(|e| [e.clone(), e]).collect();
            }
            if chaos.reorder {
                batch.shuffle(&mut rand::rng());
            }
            for event in batch {
                let Some(target) = self
                    .target
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                else {
                    continue;
                };
                let delay = if chaos.max_delay_ms > 0 {
                    rand::rng().random_range(0..=chaos.max_delay_ms)
                } else {
                    0
                };
                let (http, clock) = (http.clone(), clock.clone());
                let ordered = !chaos.reorder && chaos.max_delay_ms == 0;
                let job = async move {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    if !attempt(&http, &clock, &target, &event, 1).await {
                        // Retries never hold up the events behind: Stripe goes on delivering
                        // them while it retries this one.
                        tokio::spawn(async move { retry(&http, &clock, &target, &event).await });
                    }
                };
                // In order unless chaos asks otherwise: each event's first delivery finishes
                // before the next one's starts.
                if ordered {
                    job.await;
                } else {
                    tokio::spawn(job);
                }
            }
        }
    }
}

/// How long Stripe goes on retrying an event that was not acknowledged (by the simulator's clock).
const RETRY_FOR_SECS: i64 = 3 * 86_400;

/// Posts `event` once (attempt `n`); true when it was acknowledged (2xx).
async fn attempt(
    http: &reqwest::Client,
    clock: &Clock,
    target: &Target,
    event: &Value,
    n: u32,
) -> bool {
    let body = serde_json::to_vec(event).expect("JSON");
    // Signed at each attempt, as Stripe does, so a retry carries a fresh timestamp.
    let signature = sign(&target.secret, clock.now(), &body);
    let result = http
        .post(&target.url)
        .header("content-type", "application/json; charset=utf-8")
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await;
    match result {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            tracing::debug!(status = %r.status(), attempt = n, "webhook delivery refused");
            false
        }
        Err(e) => {
            tracing::debug!(error = %e, attempt = n, "webhook delivery failed");
            false
        }
    }
}

/// Retries an unacknowledged event as Stripe does, for three days (of the simulator's clock),
/// with a backoff from 0.2 s doubling to at most a minute between attempts.
async fn retry(http: &reqwest::Client, clock: &Clock, target: &Target, event: &Value) {
    let until = clock.now() + RETRY_FOR_SECS;
    let mut wait = Duration::from_millis(200);
    let mut n = 2;
    while clock.now() < until {
        tokio::time::sleep(wait).await;
        if attempt(http, clock, target, event, n).await {
            return;
        }
        wait = (wait * 2).min(Duration::from_secs(60));
        n += 1;
    }
    tracing::warn!(event = %event["id"], attempts = n, "webhook delivery gave up after three days");
}
