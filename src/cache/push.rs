//! Forgets pushed between instances: on PostgreSQL over `LISTEN`/`NOTIFY` on the channel
//! [`CHANNEL`] (here), on SQLite through the `cache_forgets` table ([`super::poll`]).
//!
//! - **Publishing** is the database's: its triggers (migration 0027) notify in the transaction of
//!   every change to something cached, so PostgreSQL delivers a forget exactly when, and only if,
//!   its change commits, whoever made it. The payload is `db`, then the keys: `u:<user id>` or
//!   `s:<hex SHA-256 of the session id>` (the stored form: never the id itself); `*` is
//!   everything.
//! - **Listening.** A dedicated connection listens; each notification is applied with
//!   [`Cache::forget_here`] (this instance's own too: it applied them at once after its commit,
//!   and applying them again only makes entries reload). A key it cannot read forgets everything
//!   (fail closed).
//! - **The heartbeat.** Every 200 ms the process notifies itself (its random instance id and the
//!   time it sent the ping), on a connection of its own. PostgreSQL delivers notifications in
//!   the order their transactions committed, so a ping that comes back proves that every forget
//!   committed before it was sent has been applied ([`Cache::confirmed`]): entries live
//!   [`super::PUSHED_TTL`] until [`super::SILENCE`] after that. When pings stop, entries fall
//!   back to [`super::TTL`] by themselves; when the listening connection drops (notifications
//!   lost), everything loaded before is forgotten at the first ping after it is back.
//!
//! An operator who changes rows with the triggers bypassed (`session_replication_role =
//! replica`) can have every instance forget everything with
//! `SELECT pg_notify('tollgate_cache', 'sql *')`.

use std::{
    sync::{Arc, Weak, atomic::Ordering},
    time::Duration,
};

use rand::RngCore as _;
use sqlx::{
    Connection as _,
    postgres::{PgConnection, PgListener},
};

use super::{Cache, Forget, wire::parse};
use crate::db::{Db, Engine};

/// The channel every instance of one database listens on.
pub const CHANNEL: &str = "tollgate_cache";

/// How often each instance pings itself through the channel (well within [`super::SILENCE`]).
const HEARTBEAT: Duration = Duration::from_millis(200);

/// How long to wait before connecting again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// Starts applying the forgets the database publishes to `cache`: `url` is the database's, for
/// PostgreSQL's listening connection. Call once per cache, inside a Tokio runtime.
pub fn start(cache: &Arc<Cache>, db: &Db, url: &str) {
    if cache.started.swap(true, Ordering::AcqRel) {
        return;
    }
    if db.engine == Engine::Sqlite {
        return super::poll::start(cache, db);
    }
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    let instance = hex::encode(id);
    tokio::spawn(listen(
        Arc::downgrade(cache),
        url.to_owned(),
        instance.clone(),
    ));
    tokio::spawn(heartbeat(Arc::downgrade(cache), url.to_owned(), instance));
}

/// The ping's payload: this instance, and when it was sent on the cache's clock.
fn ping(instance: &str, sent: u64) -> String {
    format!("{instance} ping {sent}")
}

/// What a notification on the channel says to `instance`.
#[derive(Debug, PartialEq)]
enum Heard {
    /// Forgets to apply (the database's, an operator's; a key that cannot be read is everything).
    Forgets(Vec<Forget>),
    /// This instance's own ping, sent then (on the cache's clock).
    OwnPing(u64),
    /// Nothing to do: another instance's ping, or a ping of this instance's whose time does not
    /// read (it confirms nothing; the next one will).
    Nothing,
}

fn read(payload: &str, instance: &str) -> Heard {
    // A payload without an instance is keys alone (an operator's `*`).
    let (from, keys) = payload.split_once(' ').unwrap_or(("", payload));
    match keys.strip_prefix("ping ") {
        None => Heard::Forgets(parse(keys)),
        Some(sent) if from == instance => sent.parse().map_or(Heard::Nothing, Heard::OwnPing),
        Some(_) => Heard::Nothing,
    }
}

/// Applies every notification to `cache`; a ping of this instance's own confirms the channel up
/// to when it was sent (PostgreSQL delivers notifications in the order their transactions
/// committed, so every forget committed before the ping was sent has been applied).
async fn listen(cache: Weak<Cache>, url: String, instance: String) {
    // Whatever was loaded before listening may have missed a notification.
    let mut lost = true;
    loop {
        if cache.strong_count() == 0 {
            return;
        }
        let mut listener = match PgListener::connect(&url).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cache channel: cannot connect; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "cache channel: cannot listen; retrying");
            tokio::time::sleep(RETRY).await;
            continue;
        }
        loop {
            let received = listener.try_recv().await;
            let Some(cache) = cache.upgrade() else { return };
            match received {
                Ok(Some(notification)) => {
                    let sent = match read(notification.payload(), &instance) {
                        Heard::Forgets(forgets) => {
                            for forget in forgets {
                                cache.forget_here(&forget);
                            }
                            continue;
                        }
                        Heard::Nothing => continue,
                        Heard::OwnPing(sent) => sent,
                    };
                    if lost {
                        cache.forget_everything();
                        lost = false;
                        tracing::info!("cache channel: forgets arrive pushed");
                    }
                    cache.confirmed(sent);
                }
                // The connection dropped (the next call reconnects): notifications were lost.
                Ok(None) => {
                    cache.unconfirmed();
                    lost = true;
                    tracing::warn!("cache channel: connection lost; entries live 500 ms");
                }
                Err(e) => {
                    cache.unconfirmed();
                    lost = true;
                    tracing::warn!(error = %e, "cache channel: failed; entries live 500 ms");
                    break;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Pings this instance through the channel every [`HEARTBEAT`], on a connection of its own (so
/// a busy pool cannot delay the proof that the channel works).
async fn heartbeat(cache: Weak<Cache>, url: String, instance: String) {
    let mut conn: Option<PgConnection> = None;
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(sent) = cache.upgrade().map(|c| c.now()) else {
            return;
        };
        let c = match &mut conn {
            Some(c) => c,
            None => match PgConnection::connect(&url).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::debug!(error = %e, "cache channel: cannot connect to ping");
                    continue;
                }
            },
        };
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(ping(&instance, sent))
            .execute(c)
            .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "cache channel: ping not sent");
            conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_confirm_only_their_own_instance_and_forget_nothing() {
        assert_eq!(read("a1 ping 42", "a1"), Heard::OwnPing(42));
        assert_eq!(read("b2 ping 42", "a1"), Heard::Nothing, "another's ping");
        assert_eq!(read("a1 ping soon", "a1"), Heard::Nothing);
        assert_eq!(
            read("db u:usr_1", "a1"),
            Heard::Forgets(vec![Forget::User("usr_1".into())])
        );
        assert_eq!(read("*", "a1"), Heard::Forgets(vec![Forget::Everything]));
        assert_eq!(
            read("db garbage", "a1"),
            Heard::Forgets(vec![Forget::Everything])
        );
    }
}
