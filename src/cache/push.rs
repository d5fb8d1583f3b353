//! Forgets pushed between instances: on PostgreSQL over `LISTEN`/`NOTIFY` on the channel
//! [`CHANNEL`] (here), on SQLite through the `cache_forgets` table ([`super::poll`]).
//!
//! - **Publishing.** Every forget of this process (after the commit that made it) goes to a task
//!   that sends it, batched with the ones queued behind it, as one `pg_notify`. The payload is
//!   this process's random instance id, then the keys: `u:<user id>`, `s:<hex SHA-256 of the
//!   session id>` (the stored form: never the id itself) or `*` (everything).
//! - **Listening.** A dedicated connection listens; each notification of another instance is
//!   applied with [`Cache::forget_here`]. A key it cannot read forgets everything (fail closed).
//! - **The heartbeat.** Every second the process notifies itself. Entries live
//!   [`super::PUSHED_TTL`] only while those pings come back; when one is 2.5 s late, or the
//!   listening connection drops, entries fall back to [`super::TTL`], and when pings return
//!   everything loaded meanwhile is forgotten (a notification may have been missed) before the
//!   long lifetime resumes.
//!
//! An operator who changes rows by hand can have every instance forget everything with
//! `SELECT pg_notify('tollgate_cache', 'sql *')`.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rand::RngCore as _;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::{
    Cache, Forget,
    wire::{Outbox, parse, publish_all},
};
use crate::db::{Db, Engine};

/// The channel every instance of one database listens on.
pub const CHANNEL: &str = "tollgate_cache";

/// How often each instance pings itself through the channel.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// A ping later than this puts the cache back on the short lifetime.
const SILENCE: Duration = Duration::from_millis(2_500);

/// Starts publishing `cache`'s forgets and applying other instances': `url` is the database's,
/// for PostgreSQL's listening connection. Call once per cache, inside a Tokio runtime.
pub fn start(cache: &Arc<Cache>, db: &Db, url: &str) {
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    let instance = hex::encode(id);
    let (tx, rx) = mpsc::unbounded_channel();
    if cache.outbox.set(Outbox { tx }).is_err() {
        return;
    }
    if db.engine == Engine::Sqlite {
        return super::poll::start(cache, db, instance, rx);
    }
    let heard = Arc::new(AtomicU64::new(0));
    let origin = Instant::now();
    tokio::spawn(publish(rx, db.clone(), instance.clone()));
    tokio::spawn(listen(
        Arc::downgrade(cache),
        url.to_owned(),
        instance.clone(),
        heard.clone(),
        origin,
    ));
    tokio::spawn(heartbeat(
        Arc::downgrade(cache),
        db.clone(),
        instance,
        heard,
        origin,
    ));
}

async fn notify(db: &Db, payload: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(&db.pool)
        .await
        .map(|_| ())
}

async fn publish(rx: mpsc::UnboundedReceiver<Forget>, db: Db, instance: String) {
    publish_all(rx, Duration::ZERO, |keys| {
        let (db, payload) = (db.clone(), format!("{instance} {keys}"));
        async move { notify(&db, &payload).await }
    })
    .await;
}

fn since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn listen(
    cache: Weak<Cache>,
    url: String,
    instance: String,
    heard: Arc<AtomicU64>,
    origin: Instant,
) {
    loop {
        if cache.strong_count() == 0 {
            return;
        }
        let mut listener = match PgListener::connect(&url).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cache channel: cannot connect; retrying");
                tokio::time::sleep(HEARTBEAT).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "cache channel: cannot listen; retrying");
            tokio::time::sleep(HEARTBEAT).await;
            continue;
        }
        loop {
            let received = listener.try_recv().await;
            let Some(cache) = cache.upgrade() else { return };
            match received {
                Ok(Some(notification)) => {
                    // A payload without an instance is keys alone (an operator's `*`).
                    let (from, keys) = notification
                        .payload()
                        .split_once(' ')
                        .unwrap_or(("", notification.payload()));
                    if from != instance {
                        for forget in parse(keys) {
                            cache.forget_here(&forget);
                        }
                    } else if keys == "ping" {
                        heard.store(since(origin), Ordering::Release);
                        if !cache.pushed() {
                            // Whatever was loaded while the channel was quiet may have missed a
                            // notification.
                            cache.forget_everything();
                            cache.set_pushed(true);
                            tracing::info!("cache channel: forgets arrive pushed");
                        }
                    }
                }
                // The connection dropped (and is back): notifications were lost meanwhile.
                Ok(None) => {
                    cache.set_pushed(false);
                    cache.forget_everything();
                    tracing::warn!("cache channel: connection lost; entries live 500 ms");
                }
                Err(e) => {
                    cache.set_pushed(false);
                    tracing::warn!(error = %e, "cache channel: failed; entries live 500 ms");
                    break;
                }
            }
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

async fn heartbeat(
    cache: Weak<Cache>,
    db: Db,
    instance: String,
    heard: Arc<AtomicU64>,
    origin: Instant,
) {
    let ping = format!("{instance} ping");
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cache) = cache.upgrade() else { return };
        let silent = since(origin).saturating_sub(heard.load(Ordering::Acquire));
        if cache.pushed() && silent > SILENCE.as_millis() as u64 {
            cache.set_pushed(false);
            tracing::warn!("cache channel: pings stopped arriving; entries live 500 ms");
        }
        drop(cache);
        if let Err(e) = notify(&db, &ping).await {
            tracing::debug!(error = %e, "cache channel: ping not sent");
        }
    }
}
