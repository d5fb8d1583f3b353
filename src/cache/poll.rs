//! Forgets between processes on one SQLite file (a second `tollgate serve`, or a command such as
//! `tollgate user suspend`), through the `cache_forgets` table: the database's own triggers
//! (migration 0027) append a row in the transaction of every change to something cached, so a
//! forget exists exactly when its change committed, whoever made it. Every process reads the rows
//! every `EVERY` (100 ms), its own included (its own forgets it applied at once, after the commit;
//! applying them again only makes entries reload). Each read that succeeds confirms every row
//! committed before it began ([`Cache::confirmed`]): entries live [`super::PUSHED_TTL`] until
//! [`super::SILENCE`] after that, then [`super::TTL`] until a read succeeds again. Rows are kept
//! two minutes, so a read after a pause still finds every row it missed; after a pause of over a
//! minute (or at the first read) everything is forgotten instead.
//!
//! SQLite cannot switch triggers off, so only a change made around them goes unpublished: a
//! file restored from a copy, or a bulk load with the triggers dropped and made again. After one,
//! an operator has every process forget everything with `INSERT INTO cache_forgets (instance, keys, at) VALUES ('sql', '*', 0)`.

use std::{
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use super::{Cache, wire::parse};
use crate::db::{self, Db};

/// How often each process reads the forgets.
const EVERY: Duration = Duration::from_millis(100);

/// Rows are kept this long (seconds): far longer than any reader takes between two reads.
const KEEP_SECS: i64 = 120;

/// Rows read at most at once.
const PAGE: i64 = 1_000;

pub(super) fn start(cache: &Arc<Cache>, db: &Db) {
    tokio::spawn(read(Arc::downgrade(cache), db.clone()));
}

/// The newest row's number (0 for none).
async fn newest(db: &Db) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM cache_forgets")
        .fetch_one(&db.pool)
        .await
}

/// Applies the rows after `last`; the last row read.
async fn apply(cache: &Cache, db: &Db, mut last: i64) -> sqlx::Result<i64> {
    let mut first = true;
    loop {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, keys FROM cache_forgets WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(last)
        .bind(PAGE)
        .fetch_all(&db.pool)
        .await?;
        if first && rows.is_empty() {
            // Numbers only grow (AUTOINCREMENT); a newest row below the last one read means the
            // file was replaced (or its numbering reset by hand): rows may have been missed. An
            // emptied table leaves a forget-everything row numbered after the last (migration
            // 0028), so new numbers never restart below a reader.
            let newest = newest(db).await?;
            if newest < last {
                cache.forget_everything();
                return Ok(newest);
            }
        }
        first = false;
        let full = rows.len() as i64 == PAGE;
        for (seq, keys) in rows {
            for forget in parse(&keys) {
                cache.forget_here(&forget);
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

async fn read(cache: Weak<Cache>, db: Db) {
    let mut last: Option<i64> = None;
    let mut read_at = Instant::now();
    let mut pruned = Instant::now();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cache) = cache.upgrade() else { return };
        let began = cache.now();
        let read = match last {
            // Nothing is cached from before the first read: start after the newest row.
            None => newest(&db).await,
            Some(last) => apply(&cache, &db, last).await,
        };
        match read {
            Ok(seq) => {
                // Rows outlive any pause shorter than KEEP_SECS, so none was missed unless this is
                // the first read or the last success is older than that.
                let missed =
                    last.is_none() || read_at.elapsed() > Duration::from_secs(KEEP_SECS as u64 / 2);
                if missed {
                    cache.forget_everything();
                }
                last = Some(seq);
                read_at = Instant::now();
                // Every row committed before the read began is applied.
                cache.confirmed(began);
            }
            Err(e) => {
                cache.unconfirmed();
                tracing::warn!(error = %e, "cache forgets: cannot read; entries live 500 ms");
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
