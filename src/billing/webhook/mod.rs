//! `POST /webhooks/stripe`: verify, store once, apply — in one transaction, before the 2xx. One
//! file per step of the pipeline:
//!
//! 1. [`verify`](mod@verify): the [`verify::SignedEvent`] extractor checks the signature over the raw body;
//! 2. [`event`]: the body becomes a typed [`event::Event`] (its [`event::Kind`]);
//! 3. `store`: the event id is the primary key of `stripe_events`, and inserting it is what
//!    makes delivery exactly-once across instances (a concurrent duplicate waits on the key and
//!    then finds it); on SQLite events arrive in groups ([`GroupCommit`]);
//! 4. `apply`: one function per kind changes tollgate's state in the same transaction; events
//!    for customers mapped to no user are recorded as orphans;
//! 5. after the commit (`committed`, `follow_up`): the cache forgets the user, the mail worker
//!    wakes, and an event whose ordering tie needs a re-fetch from Stripe is answered only after
//!    the re-fetch; if Stripe cannot be reached the work is released and the event answered 503,
//!    so Stripe redelivers it and the redelivery does the work (the event is not applied again).

mod apply;
pub mod event;
mod group_commit;
mod store;
pub mod verify;

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

pub use group_commit::GroupCommit;
pub use verify::{SignedEvent, verify};

use crate::{
    billing::{Billing, checkout, closing},
    db,
    error::AppError,
};
use event::{Event, Outcome};

/// The handler: only verified events reach it.
pub async fn receive(State(state): State<Billing>, SignedEvent(event): SignedEvent) -> Response {
    match ingest(&state, event).await {
        Ok(outcome) => (
            StatusCode::OK,
            Json(json!({"received": true, "outcome": outcome.as_str()})),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// What storing one event did, for the work that waits for its commit.
struct Recorded {
    event: String,
    outcome: Outcome,
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

async fn ingest(state: &Billing, event: Event) -> Result<Outcome, AppError> {
    let recorded = match state.db.engine {
        // One writer: events queue and commit in groups (see [`GroupCommit`]).
        db::Engine::Sqlite => GroupCommit::submit(state, event).await?,
        // Concurrent writers: a transaction per event, ordered by the database.
        db::Engine::Postgres => {
            let mut tx = state.db.begin().await?;
            let recorded = store::record(state, &mut tx, &event).await?;
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

impl FollowUp {
    /// As stored with its event (migration 0019).
    fn encode(&self) -> String {
        match self {
            FollowUp::Refetch(sub, tie) => {
                format!(
                    "refetch:{sub}:{}",
                    tie.map(|t| t.to_string()).unwrap_or_default()
                )
            }
            FollowUp::CancelOrphan(sub) => format!("cancel:{sub}"),
        }
    }

    /// From its stored form; `None` for anything else.
    fn decode(stored: &str) -> Option<Self> {
        let mut parts = stored.split(':');
        let work = match (parts.next()?, parts.next()?, parts.next()) {
            ("refetch", sub, Some("")) => FollowUp::Refetch(sub.to_owned(), None),
            ("refetch", sub, Some(tie)) => {
                FollowUp::Refetch(sub.to_owned(), Some(tie.parse().ok()?))
            }
            ("cancel", sub, None) => FollowUp::CancelOrphan(sub.to_owned()),
            _ => return None,
        };
        (parts.next().is_none() && !stored.is_empty()).then_some(work)
    }
}

/// A tie (or a pointer to state we must fetch): Stripe is the authority; or a deleted account's
/// subscription to cancel. If Stripe cannot be reached the work is released and the answer is
/// 503, so Stripe redelivers the event and the work is done then: it is never acknowledged
/// undone, and the event, already applied, is not applied again.
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
        crate::billing::event_log::follow_up_done(&state.db, event).await?;
        return Ok(());
    };
    tracing::warn!(error = %e, event, "follow-up Stripe call failed after a webhook; asking Stripe to redeliver");
    crate::billing::event_log::release_follow_up(&state.db, event).await?;
    Err(AppError::PaymentProviderUnavailable)
}

#[cfg(test)]
mod tests {
    use super::FollowUp;

    #[test]
    fn a_follow_up_is_stored_and_read_back_as_itself() {
        for work in [
            FollowUp::Refetch("sub_1".into(), None),
            FollowUp::Refetch("sub_1".into(), Some(1_700_000_000)),
            FollowUp::CancelOrphan("sub_2".into()),
        ] {
            let stored = work.encode();
            assert_eq!(FollowUp::decode(&stored).map(|w| w.encode()), Some(stored));
        }
        for bad in [
            "",
            "refetch",
            "refetch:sub_1",
            "refetch:sub_1:x",
            "cancel:a:b",
            "other:x",
        ] {
            assert!(FollowUp::decode(bad).is_none(), "{bad}");
        }
    }
}
