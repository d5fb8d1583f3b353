//! Forgets between processes on one SQLite file (a second `tollgate serve`, or a command such as
//! `tollgate user suspend`), through the `cache_forgets` table: each process appends its forgets
//! in batches (one row per batch, behind the other writers) and reads the others' every
//! `EVERY` (100 ms). While those reads succeed, entries live [`super::PUSHED_TTL`]; when one fails they
//! fall back to [`super::TTL`], and the next read that succeeds first forgets everything.
//!
//! An operator who changes rows by hand can have every process forget everything with
//! `INSERT INTO cache_forgets (seq, instance, keys, at) SELECT COALESCE(MAX(seq), 0) + 1, 'sql',
//! '*', 0 FROM cache_forgets`.

use std::{
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{
    Cache, Forget,
    wire::{parse, publish_all},
};
use crate::db::{self, Db};

/// How often each process reads the others' forgets.
const EVERY: Duration = Duration::from_millis(100);

/// Rows are kept this long (seconds): far longer than any reader takes between two reads.
const KEEP_SECS: i64 = 120;

/// How long a batch waits for more forgets before it is written: a write per 20 ms at most,
/// whatever the rate of changes (a row per forget would double the writes of a busy instance).
const LINGER: Duration = Duration::from_millis(20);

/// Rows read at most at once.
const PAGE: i64 = 1_000;

pub(super) fn start(
    cache: &Arc<Cache>,
    db: &Db,
    instance: String,
    rx: mpsc::UnboundedReceiver<Forget>,
) {
    tokio::spawn(publish(rx, db.clone(), instance.clone()));
    tokio::spawn(read(Arc::downgrade(cache), db.clone(), instance));
}

async fn insert(db: &Db, instance: &str, keys: &str) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    // One writer at a time (the transaction is `BEGIN IMMEDIATE`), so the numbers are handed out,
    // and committed, in order: a reader never skips a row.
    sqlx::query(
        "INSERT INTO cache_forgets (seq, instance, keys, at) \
         SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3 FROM cache_forgets",
    )
    .bind(instance)
    .bind(keys)
    .bind(db::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

async fn publish(rx: mpsc::UnboundedReceiver<Forget>, db: Db, instance: String) {
    publish_all(rx, LINGER, |keys| {
        let (db, instance) = (db.clone(), instance.clone());
        async move { insert(&db, &instance, &keys).await }
    })
    .await;
}

/// The newest row's number (0 for none).
async fn newest(db: &Db) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM cache_forgets")
        .fetch_one(&db.pool)
        .await
}

/// Applies the other processes' rows after `last`; the last row read.
async fn apply(cache: &Cache, db: &Db, instance: &str, mut last: i64) -> sqlx::Result<i64> {
    loop {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, instance, keys FROM cache_forgets WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(last)
        .bind(PAGE)
        .fetch_all(&db.pool)
        .await?;
        let full = rows.len() as i64 == PAGE;
        for (seq, from, keys) in rows {
            if from != instance {
                for forget in parse(&keys) {
                    cache.forget_here(&forget);
                }
            }
            last = seq;
        }
        if !full {
            return Ok(last);
        }
    }
}

/// Removes old rows, always keeping the newest (its number is where the next one counts from).
async fn prune(db: &Db) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "DELETE FROM cache_forgets WHERE at < $1 \
         AND seq < (SELECT MAX(seq) FROM cache_forgets)",
    )
    .bind(db::now() - KEEP_SECS)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

async fn read(cache: Weak<Cache>, db: Db, instance: String) {
    let mut last: Option<i64> = None;
    let mut pruned = Instant::now();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cache) = cache.upgrade() else { return };
        let read = match last {
            // Nothing is cached from before the first read: start after the newest row.
            None => newest(&db).await,
            Some(last) => apply(&cache, &db, &instance, last).await,
        };
        match read {
            Ok(seq) => {
                last = Some(seq);
                if !cache.pushed() {
                    // Whatever was loaded while reads failed may have missed a forget.
                    cache.forget_everything();
                    cache.set_pushed(true);
                }
            }
            Err(e) => {
                if cache.pushed() {
                    cache.set_pushed(false);
                    tracing::warn!(error = %e, "cache forgets: cannot read; entries live 500 ms");
                }
            }
        }
        if pruned.elapsed() > Duration::from_secs(60) {
            pruned = Instant::now();
            if let Err(e) = prune(&db).await {
                tracing::debug!(error = %e, "cache forgets: not pruned");
            }
        }
    }
}
