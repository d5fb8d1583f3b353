//! `POST /webhooks/stripe`: verify, store once, apply — in one transaction, before the 2xx.
//!
//! Verification is tollgate's own, over the raw body: every `v1` signature of the
//! `Stripe-Signature` header is checked against every configured secret (rotation) in constant
//! time, the timestamp must be within the tolerance in both directions, `v0` is ignored. Anything
//! else is 400 `signature_invalid` with nothing stored.
//!
//! Events are parsed into tollgate's own minimal structs that ignore unknown fields, so a Stripe
//! API version change cannot break ingestion; unknown event types and statuses are acknowledged,
//! recorded and grant nothing. The event id is the primary key of `stripe_events`: inserting it is
//! what makes delivery exactly-once across instances (a concurrent duplicate waits on the key and
//! then finds it). Events for customers mapped to no user are recorded as orphans. An event whose
//! ordering tie needs a re-fetch from Stripe is answered only after the re-fetch; if Stripe cannot
//! be reached the event is forgotten and answered 503, so Stripe redelivers it.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::{
    billing::Billing,
    billing::{
        checkout, closing, customers,
        subscriptions::{self, Applied, Item, Snapshot, id_of},
    },
    config::Secret,
    db,
    error::AppError,
};

/// Checks a `Stripe-Signature` header against `secrets` at time `now`.
pub fn verify(header: &str, body: &[u8], secrets: &[Secret], tolerance: u64, now: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.push(sig),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    if signatures.is_empty() || now.abs_diff(t) > tolerance {
        return false;
    }
    secrets.iter().any(|secret| {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = hex::encode(mac.finalize().into_bytes());
        signatures
            .iter()
            .any(|sig| bool::from(expected.as_bytes().ct_eq(sig.as_bytes())))
    })
}

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    /// Whether Stripe sent it from live mode (absent in hand-made events: taken as matching).
    #[serde(default)]
    livemode: Option<bool>,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: Value,
}

/// The handler.
pub async fn receive(State(state): State<Billing>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let now = state.clock.now();
    if !verify(
        signature,
        &body,
        &state.stripe.webhook_secrets,
        state.config.stripe_webhook_tolerance_secs,
        now,
    ) {
        let reason = if signature.is_empty() {
            "missing"
        } else {
            "mismatch_or_stale"
        };
        crate::telemetry::security_event("webhook_signature_invalid", None, reason);
        return AppError::SignatureInvalid.into_response();
    }
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        return AppError::InvalidJson.into_response();
    };
    match ingest(&state, event).await {
        Ok(outcome) => (
            StatusCode::OK,
            Json(json!({"received": true, "outcome": outcome})),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// True when the configured key is a live-mode key (`sk_live_…`, `rk_live_…`); the simulator and
/// test keys are test mode.
fn live_key(state: &Billing) -> bool {
    state
        .config
        .stripe_secret_key
        .as_ref()
        .is_some_and(|k| crate::config::is_live_key(k.expose()))
}

/// The customer an event is about, when it names one.
fn customer_of_event(event: &Event) -> Option<String> {
    let o = &event.data.object;
    if event.kind.starts_with("customer.") && !event.kind.starts_with("customer.subscription.") {
        return o.get("id").and_then(id_of);
    }
    o.get("customer").and_then(id_of)
}

/// What storing one event did, for the work that waits for its commit.
struct Recorded {
    event: String,
    outcome: &'static str,
    user: Option<String>,
    follow_up: Option<FollowUp>,
}

/// Stripe work an event needs once it is committed, before it is acknowledged.
enum FollowUp {
    /// Re-fetch the subscription and apply Stripe's state (a tie at this stamp, or a completed
    /// Checkout).
    Refetch(String, Option<i64>),
    /// Cancel the subscription of a deleted account in Stripe.
    CancelOrphan(String),
}

async fn ingest(state: &Billing, event: Event) -> Result<&'static str, AppError> {
    let recorded = match state.db.engine {
        // One writer: events queue and commit in groups (see [`GroupCommit`]).
        db::Engine::Sqlite => GroupCommit::submit(state, event).await?,
        // Concurrent writers: a transaction per event, ordered by the database.
        db::Engine::Postgres => {
            let mut tx = state.db.begin().await?;
            let recorded = record(state, &mut tx, &event).await?;
            tx.commit().await?;
            committed(state, &recorded);
            recorded
        }
    };
    if let Some(work) = recorded.follow_up {
        // Its own task: the work (or the undoing of the event) finishes even if Stripe hangs up.
        let (state, event) = (state.clone(), recorded.event);
        tokio::spawn(async move { follow_up(&state, &event, work).await })
            .await
            .map_err(|_| AppError::ServiceUnavailable)??;
    }
    Ok(recorded.outcome)
}

/// What follows every commit of an event at once, whoever waits for it: the user's cached
/// access goes, and the mail worker looks for a billing notice the event may have queued.
fn committed(state: &Billing, recorded: &Recorded) {
    if let Some(user) = &recorded.user {
        state.cache.forget_user(user);
    }
    state.mail_wakeup.notify_one();
}

/// A tie (or a pointer to state we must fetch): Stripe is the authority; or a deleted account's
/// subscription to cancel. If Stripe cannot be reached the event is forgotten again and the answer
/// is 503, so Stripe redelivers it and the work is done then: it is never acknowledged undone.
async fn follow_up(state: &Billing, event: &str, work: FollowUp) -> Result<(), AppError> {
    let done = match &work {
        FollowUp::Refetch(subscription, tie) => {
            checkout::sync_subscription(state, subscription, *tie)
                .await
                .map(|_| ())
        }
        FollowUp::CancelOrphan(subscription) => {
            closing::cancel_orphan(state, event, subscription).await
        }
    };
    let Err(e) = done else {
        return Ok(());
    };
    tracing::warn!(error = %e, event, "follow-up Stripe call failed after a webhook; asking Stripe to redeliver");
    // Only the event row was written for these (a tie lost to the row; an orphan is not
    // applied): dropping it lets the redelivery be processed afresh, not count as a duplicate.
    sqlx::query("DELETE FROM stripe_events WHERE id = $1")
        .bind(event)
        .execute(&state.db.pool)
        .await?;
    Err(AppError::PaymentProviderUnavailable)
}

/// Stores and applies one event inside `tx`.
async fn record(
    state: &Billing,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event: &Event,
) -> Result<Recorded, AppError> {
    let customer = customer_of_event(event);
    // The event id is the key: a duplicate (or a concurrent delivery to another instance) stops
    // here. The same statement finds the customer's user, and records the outcome as `applied`
    // (corrected below, in the same transaction, when it is something else).
    let inserted: Option<(Option<String>,)> = sqlx::query_as(
        "INSERT INTO stripe_events (id, type, created, customer_id, outcome, received_at) \
         VALUES ($1, $2, $3, $4, 'applied', $5) ON CONFLICT (id) DO NOTHING \
         RETURNING (SELECT user_id FROM billing_customers \
                    WHERE stripe_customer_id = $4 AND deleted = 0)",
    )
    .bind(&event.id)
    .bind(&event.kind)
    .bind(event.created)
    .bind(&customer)
    // Tollgate's clock, as the moments of asking Stripe are (see `subscriptions::clock_lead`).
    .bind(state.clock.now())
    .fetch_optional(&mut **tx)
    .await?;
    let Some((user,)) = inserted else {
        return Ok(Recorded {
            event: event.id.clone(),
            outcome: "duplicate",
            user: None,
            follow_up: None,
        });
    };
    let mut follow = None;
    // A test-mode event must never change what a live key's users have, nor the reverse: it is
    // recorded, not applied.
    let outcome = if event.livemode.is_some_and(|l| l != live_key(state)) {
        tracing::warn!(event = %event.id, "webhook event from the other Stripe mode not applied");
        "wrong_mode"
    } else {
        apply(
            state,
            tx,
            event,
            customer.as_deref(),
            user.as_deref(),
            &mut follow,
        )
        .await?
    };
    if outcome != "applied" {
        sqlx::query("UPDATE stripe_events SET outcome = $1 WHERE id = $2")
            .bind(outcome)
            .bind(&event.id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(Recorded {
        event: event.id.clone(),
        outcome,
        user,
        follow_up: follow,
    })
}

type Reply = tokio::sync::oneshot::Sender<Result<Recorded, AppError>>;

/// Group commit for SQLite, where writes are serial anyway: events that arrive while a
/// transaction runs queue here, and the next transaction stores and applies all of them (up to
/// 128) before one commit, so a burst pays one commit per group instead of one
/// per event. Nobody waits for a group to fill: a lone event is a group of one. Each event still
/// gets its 2xx only after the commit that holds it, and every event of a failed group is stored
/// again alone, so one bad event fails only itself.
#[derive(Default)]
pub struct GroupCommit {
    queue: std::sync::Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(Event, Reply)>,
    draining: bool,
}

impl GroupCommit {
    const MAX: usize = 128;

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn submit(state: &Billing, event: Event) -> Result<Recorded, AppError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let start = {
            let mut queue = state.webhook_queue.lock();
            queue.waiting.push((event, reply));
            !std::mem::replace(&mut queue.draining, true)
        };
        if start {
            // Its own task: a client that hangs up must not stop the groups behind it.
            tokio::spawn(Self::drain(state.clone()));
        }
        answer.await.map_err(|_| AppError::ServiceUnavailable)?
    }

    async fn drain(state: Billing) {
        let _unstick = Unstick(state.clone());
        loop {
            let group: Vec<(Event, Reply)> = {
                let mut queue = state.webhook_queue.lock();
                if queue.waiting.is_empty() {
                    queue.draining = false;
                    return;
                }
                let n = queue.waiting.len().min(Self::MAX);
                queue.waiting.drain(..n).collect()
            };
            Self::commit_group(&state, group).await;
        }
    }

    async fn commit_group(state: &Billing, group: Vec<(Event, Reply)>) {
        match Self::store(state, group.iter().map(|(event, _)| event)).await {
            Ok(recorded) => {
                for ((_, reply), recorded) in group.into_iter().zip(recorded) {
                    Self::answer(state, reply, Ok(recorded));
                }
            }
            // One bad event must not fail the events grouped with it: each alone, then. Not when
            // the database is unavailable: that fails them all alike, so all answer 503 now.
            Err(e) if group.len() > 1 && !matches!(e, AppError::ServiceUnavailable) => {
                tracing::warn!(error = %e, events = group.len(), "webhook group failed; storing its events one by one");
                for (event, reply) in group {
                    let alone = Self::store(state, std::iter::once(&event)).await;
                    Self::answer(state, reply, alone.map(|mut r| r.remove(0)));
                }
            }
            Err(e) => {
                let mut error = Some(e);
                for (_, reply) in group {
                    let e = error.take().unwrap_or(AppError::ServiceUnavailable);
                    let _ = reply.send(Err(e));
                }
            }
        }
    }

    /// Hands a committed event's result to its request. The post-commit work runs here, so it
    /// happens even when that request is gone (Stripe hung up; its retry will be a duplicate).
    fn answer(state: &Billing, reply: Reply, result: Result<Recorded, AppError>) {
        if let Ok(recorded) = &result {
            committed(state, recorded);
        }
        if let Err(Ok(Recorded {
            follow_up: Some(work),
            event,
            ..
        })) = reply.send(result)
        {
            let state = state.clone();
            tokio::spawn(async move { follow_up(&state, &event, work).await });
        }
    }

    /// Stores and applies `events` in one transaction.
    async fn store<'a>(
        state: &Billing,
        events: impl Iterator<Item = &'a Event>,
    ) -> Result<Vec<Recorded>, AppError> {
        let mut tx = state.db.begin().await?;
        let mut recorded = Vec::new();
        for event in events {
            recorded.push(record(state, &mut tx, event).await?);
        }
        tx.commit().await?;
        Ok(recorded)
    }
}

/// Should a drain task die (a panic), the queue must not stay "being drained" forever: the
/// events still waiting are answered 503 (their replies dropped) and the next event starts anew.
struct Unstick(Billing);

impl Drop for Unstick {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.webhook_queue.lock();
            queue.waiting.clear();
            queue.draining = false;
        }
    }
}

/// Applies one stored event inside the transaction. Sets `follow` when Stripe must be called
/// after commit.
async fn apply(
    state: &Billing,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event: &Event,
    customer: Option<&str>,
    user: Option<&str>,
    follow: &mut Option<FollowUp>,
) -> Result<&'static str, AppError> {
    let object = &event.data.object;
    match event.kind.as_str() {
        // https://docs.stripe.com/api/events/types#event_types-customer.subscription.updated
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed"
        | "customer.subscription.trial_will_end"
        | "customer.subscription.pending_update_applied"
        | "customer.subscription.pending_update_expired" => {
            let Some(snap) = Snapshot::from_json(object) else {
                return Ok("ignored");
            };
            let Some(user) = user else {
                // A deleted account is never charged: what still appears for it is canceled.
                if !snap.status.is_terminal()
                    && closing::of_deleted_account(tx, &snap.customer).await?
                {
                    *follow = Some(FollowUp::CancelOrphan(snap.id));
                }
                return Ok("orphan");
            };
            if event.kind == "customer.subscription.trial_will_end" {
                notify(
                    state,
                    tx,
                    user,
                    event,
                    snap.plan_item(&state.catalog),
                    snap.trial_end,
                )
                .await?;
            }
            let applied = subscriptions::apply(
                tx,
                &state.catalog,
                &snap,
                user,
                subscriptions::Stamp::event(event.created),
            )
            .await?;
            Ok(match applied {
                Applied::Applied => "applied",
                Applied::Stale => "stale",
                Applied::Tie(at) => {
                    *follow = Some(FollowUp::Refetch(snap.id, Some(at)));
                    "refetched"
                }
            })
        }
        // https://docs.stripe.com/api/events/types#event_types-checkout.session.completed
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            let Some(user) = user else {
                return Ok("orphan");
            };
            let reference = object.get("client_reference_id").and_then(Value::as_str);
            if reference.is_some_and(|r| r != user) {
                // Never attach to a guess: the customer and the reference disagree.
                tracing::warn!(event = %event.id, "checkout session reference does not match its customer");
                return Ok("orphan");
            }
            if let Some(session) = object.get("id").and_then(Value::as_str) {
                sqlx::query(
                    "UPDATE checkout_attempts SET status = 'complete' WHERE stripe_session_id = $1",
                )
                .bind(session)
                .execute(&mut **tx)
                .await?;
            }
            *follow = object
                .get("subscription")
                .and_then(id_of)
                .map(|s| FollowUp::Refetch(s, None));
            Ok("applied")
        }
        // https://docs.stripe.com/api/events/types#event_types-checkout.session.expired
        "checkout.session.expired" => {
            if let Some(session) = object.get("id").and_then(Value::as_str) {
                sqlx::query(
                    "UPDATE checkout_attempts SET status = 'expired' WHERE stripe_session_id = $1",
                )
                .bind(session)
                .execute(&mut **tx)
                .await?;
            }
            Ok("applied")
        }
        // https://docs.stripe.com/api/events/types#event_types-invoice.payment_failed
        "invoice.payment_failed" | "invoice.payment_action_required" => {
            let Some(user) = user else {
                return Ok("orphan");
            };
            match invoice_subscription(object) {
                Some(sub) => {
                    if event.kind == "invoice.payment_failed" {
                        notify(state, tx, user, event, None, None).await?;
                    }
                    subscriptions::mark_payment_failed(tx, &sub, event.created).await?;
                    Ok("applied")
                }
                None => Ok("ignored"),
            }
        }
        // https://docs.stripe.com/api/events/types#event_types-invoice.paid
        "invoice.paid" | "invoice.payment_succeeded" => {
            // Renewal state arrives with customer.subscription.updated; this is recorded.
            Ok(if user.is_some() { "recorded" } else { "orphan" })
        }
        // https://docs.stripe.com/api/events/types#event_types-customer.updated
        "customer.updated" => {
            // Stripe never changes the login identity: the user's email is not touched.
            Ok(if user.is_some() { "recorded" } else { "orphan" })
        }
        // https://docs.stripe.com/api/events/types#event_types-customer.deleted
        "customer.deleted" => {
            let Some(customer) = customer else {
                return Ok("ignored");
            };
            customers::mark_deleted(tx, customer).await?;
            sqlx::query(
                "UPDATE subscriptions SET status = 'canceled', ended_at = COALESCE(ended_at, $1), \
                 stripe_updated = CASE WHEN stripe_updated > $1 THEN stripe_updated ELSE $1 END, \
                 updated_at = $2 WHERE customer_id = $3",
            )
            .bind(event.created)
            .bind(db::now())
            .bind(customer)
            .execute(&mut **tx)
            .await?;
            Ok("applied")
        }
        _ => Ok("ignored"),
    }
}

/// Queues the billing notice of `event` for `user_id`, once per Stripe event id.
async fn notify(
    state: &Billing,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user_id: &str,
    event: &Event,
    item: Option<&Item>,
    trial_end: Option<i64>,
) -> Result<(), AppError> {
    let Some(user) = crate::auth::users::find_by_id_on(tx, user_id).await? else {
        return Ok(());
    };
    let (kind, context) = match event.kind.as_str() {
        "customer.subscription.trial_will_end" => {
            let plan = item
                .and_then(|i| i.plan(&state.catalog))
                .map_or("your".to_owned(), |p| p.name.clone());
            let trial_end = trial_end.map(crate::clock::date).unwrap_or_default();
            (
                "trial_will_end",
                minijinja::context! { plan_name => plan, trial_end },
            )
        }
        _ => ("payment_failed", minijinja::context! {}),
    };
    crate::email::enqueue(
        state,
        tx,
        crate::email::Outgoing {
            kind,
            to: &user.email,
            context,
            dedupe_key: Some(format!("{kind}:{}", event.id)),
        },
    )
    .await?;
    Ok(())
}

/// The subscription an invoice belongs to, in current (`parent.subscription_details`) and older
/// (`subscription`) API versions.
fn invoice_subscription(invoice: &Value) -> Option<String> {
    invoice
        .pointer("/parent/subscription_details/subscription")
        .and_then(id_of)
        .or_else(|| invoice.get("subscription").and_then(id_of))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "sim")]
    use crate::sim::delivery::sign;

    #[cfg(feature = "sim")]
    #[test]
    fn signatures_are_checked_against_every_secret_and_every_v1() {
        let secrets = [Secret::new("whsec_old"), Secret::new("whsec_new")];
        let body = br#"{"id":"evt_1"}"#;
        let good = sign("whsec_new", 1_000, body);
        assert!(verify(&good, body, &secrets, 300, 1_000));
        let v1 = good.split_once(",v1=").unwrap().1;
        let several = format!("t=1000,v1={},v0=ignored,v1={v1}", "0".repeat(64));
        assert!(
            verify(&several, body, &secrets, 300, 1_000),
            "any v1 may match"
        );
        let cases = [
            ("", "missing"),
            ("garbage", "malformed"),
            ("t=1000", "no v1"),
            ("v1=abc", "no timestamp"),
        ];
        for (header, why) in cases {
            assert!(!verify(header, body, &secrets, 300, 1_000), "{why}");
        }
        assert!(
            !verify(
                &sign("whsec_other", 1_000, body),
                body,
                &secrets,
                300,
                1_000
            ),
            "wrong secret"
        );
        assert!(
            !verify(&good, br#"{"id":"evt_2"}"#, &secrets, 300, 1_000),
            "altered body"
        );
        assert!(!verify(&good, body, &secrets, 300, 1_301), "stale");
        assert!(!verify(&good, body, &secrets, 300, 699), "from the future");
        assert!(
            verify(&good, body, &secrets, 300, 1_300),
            "at the edge of the tolerance"
        );
    }

    #[test]
    fn invoices_name_their_subscription_in_both_shapes() {
        let current = json!({"parent": {"subscription_details": {"subscription": "sub_1"}}});
        let older = json!({"subscription": "sub_2"});
        assert_eq!(invoice_subscription(&current).as_deref(), Some("sub_1"));
        assert_eq!(invoice_subscription(&older).as_deref(), Some("sub_2"));
    }
}
