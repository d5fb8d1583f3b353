//! One change of a user's subscription at a time, across instances: a lease row per user, taken
//! by an insert (or by taking over one whose holder died: its lease expired) and given back when
//! the change is done. A request that finds the lease held waits for it, so a double submit is
//! decided on the state the first one left.

use std::time::Duration;

use crate::{db::Db, error::AppError, ids::new_id};

/// How long a lease lives if its holder never gives it back (past the request deadline).
const LEASE_SECS: i64 = 30;

/// How long a request waits for a held lease.
const WAIT: Duration = Duration::from_secs(8);

/// A held lease; given back by [`Lease::release`], or on drop (a cancelled request).
pub(super) struct Lease {
    db: Db,
    user_id: String,
    holder: String,
    released: bool,
}

/// Takes the user's lease, waiting up to 8 s for another request to give it back; past that,
/// 409 `change_in_progress`.
pub(super) async fn take(db: &Db, user_id: &str) -> Result<Lease, AppError> {
    let holder = new_id("lease");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = crate::db::now();
        let taken = sqlx::query(
            "INSERT INTO billing_change_leases (user_id, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at WHERE billing_change_leases.expires_at < $4",
        )
        .bind(user_id)
        .bind(&holder)
        .bind(now + LEASE_SECS)
        .bind(now)
        .execute(&db.pool)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Lease {
                db: db.clone(),
                user_id: user_id.to_owned(),
                holder,
                released: false,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AppError::ChangeInProgress);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Lease {
    /// Gives the lease back.
    pub(super) async fn release(mut self) {
        self.released = true;
        give_back(&self.db, &self.user_id, &self.holder).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (db, user, holder) = (
            self.db.clone(),
            std::mem::take(&mut self.user_id),
            std::mem::take(&mut self.holder),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { give_back(&db, &user, &holder).await });
        }
    }
}

async fn give_back(db: &Db, user_id: &str, holder: &str) {
    let done = sqlx::query("DELETE FROM billing_change_leases WHERE user_id = $1 AND holder = $2")
        .bind(user_id)
        .bind(holder)
        .execute(&db.pool)
        .await;
    if let Err(e) = done {
        // It expires by itself within 30 s.
        tracing::warn!(error = %e, "billing change lease not given back");
    }
}
