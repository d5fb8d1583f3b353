//! The forgets' wire format and this process's outbox, shared by both ways of publishing them
//! ([`super::push`] on PostgreSQL, [`super::poll`] on SQLite): keys `u:<user id>`,
//! `s:<hex SHA-256 of the session id>` (the stored form: never the id itself) or `*`
//! (everything), space-separated.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{Forget, SessionKey};

/// Payloads stay under PostgreSQL's 8,000-byte limit.
const MAX_PAYLOAD: usize = 7_000;

/// Forgets queued in this process and not yet published (for [`flush`]).
static PENDING: AtomicU64 = AtomicU64::new(0);

/// Where a cache's forgets wait to be published.
pub struct Outbox {
    pub(super) tx: mpsc::UnboundedSender<Forget>,
}

impl Outbox {
    pub(super) fn send(&self, forget: Forget) {
        PENDING.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(forget).is_err() {
            PENDING.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Waits until this process's queued forgets are published, at most `limit` (a command-line run
/// ends only after the instances have heard of its changes).
pub async fn flush(limit: Duration) {
    let until = Instant::now() + limit;
    while PENDING.load(Ordering::Acquire) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(super) fn word(forget: &Forget) -> String {
    match forget {
        Forget::User(user) => format!("u:{user}"),
        Forget::Session(key) => format!("s:{}", hex::encode(key)),
        Forget::Everything => "*".into(),
    }
}

/// The forgets a payload's keys name; a key it cannot read is everything.
pub fn parse(keys: &str) -> Vec<Forget> {
    keys.split(' ')
        .filter(|k| !k.is_empty())
        .map(|key| {
            if let Some(user) = key.strip_prefix("u:").filter(|u| !u.is_empty()) {
                return Forget::User(user.to_owned());
            }
            let session = key
                .strip_prefix("s:")
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| SessionKey::try_from(b).ok());
            session.map_or(Forget::Everything, Forget::Session)
        })
        .collect()
}

/// The next batch of forgets (waiting for the first): their keys, space-separated, and how many.
async fn batch(
    rx: &mut mpsc::UnboundedReceiver<Forget>,
    linger: Duration,
) -> Option<(String, u64)> {
    let first = rx.recv().await?;
    if !linger.is_zero() {
        tokio::time::sleep(linger).await;
    }
    let mut keys = word(&first);
    let mut count = 1;
    while keys.len() < MAX_PAYLOAD {
        let Ok(next) = rx.try_recv() else { break };
        keys.push(' ');
        keys.push_str(&word(&next));
        count += 1;
    }
    Some((keys, count))
}

/// Sends each batch of forgets with `send` (5 tries, waits of 0.1 to 0.8 s), until the outbox
/// closes; a batch that cannot be sent is logged and dropped (the other processes then see those
/// changes when their entries expire). After the first forget of a batch it waits `linger` for
/// more to join it (on SQLite each batch is a write behind the one writer).
pub(super) async fn publish_all<F, Fut>(
    mut rx: mpsc::UnboundedReceiver<Forget>,
    linger: Duration,
    mut send: F,
) where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<()>>,
{
    while let Some((keys, count)) = batch(&mut rx, linger).await {
        for attempt in 0..5u32 {
            match send(keys.clone()).await {
                Ok(()) => break,
                Err(e) if attempt == 4 => tracing::error!(
                    error = %e,
                    forgets = count,
                    "could not publish cache forgets; other processes see the changes when their entries expire"
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(100 << attempt)).await,
            }
        }
        PENDING.fetch_sub(count, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_keys_read_back() {
        let key = [7u8; 32];
        let words = [
            word(&Forget::User("usr_1".into())),
            word(&Forget::Session(key)),
            word(&Forget::Everything),
        ];
        assert_eq!(
            parse(&words.join(" ")),
            vec![
                Forget::User("usr_1".into()),
                Forget::Session(key),
                Forget::Everything
            ]
        );
    }

    #[test]
    fn an_unreadable_key_forgets_everything() {
        for bad in ["s:zz", "s:0011", "x:1", "u:", "ping?"] {
            assert_eq!(parse(bad), vec![Forget::Everything], "{bad}");
        }
    }
}
