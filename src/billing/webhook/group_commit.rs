//! Group commit on SQLite (step 3 for one writer): events that arrive while a transaction runs
//! are stored together in the next one.

use super::{Recorded, committed, event::Event, follow_up, store::record};
use crate::{billing::Billing, error::AppError};

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

    pub(super) async fn submit(state: &Billing, event: Event) -> Result<Recorded, AppError> {
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
