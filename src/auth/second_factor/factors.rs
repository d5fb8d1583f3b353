//! The `totp_factors` table: one authenticator per user, an enrolment until it is confirmed.

use sqlx::AnyConnection;

use crate::{db::Db, ids::new_id};

/// A user's TOTP factor.
#[derive(Clone, Debug)]
pub struct Factor {
    /// New at every enrolment (trusted-device cookies name it).
    pub id: String,
    /// The shared secret, base32 (no padding).
    pub secret: String,
    /// When the first code confirmed it; `None` while enrolling.
    pub confirmed_at: Option<i64>,
    /// The last step whose code was used.
    pub last_step: Option<i64>,
}

/// The user's factor, confirmed or not.
pub async fn of(db: &Db, user_id: &str) -> sqlx::Result<Option<Factor>> {
    let row: Option<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT id, secret, confirmed_at, last_step FROM totp_factors WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.map(|(id, secret, confirmed_at, last_step)| Factor {
        id,
        secret,
        confirmed_at,
        last_step,
    }))
}

/// Starts an enrolment with `secret`, replacing an unconfirmed one; `false` (nothing written)
/// when the user has a confirmed factor.
pub async fn start(db: &Db, user_id: &str, secret: &str, now: i64) -> sqlx::Result<bool> {
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM totp_factors WHERE user_id = $1 AND confirmed_at IS NULL")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    // A confirmed row keeps the key taken: the insert then does nothing.
    let inserted = sqlx::query(
        "INSERT INTO totp_factors (user_id, id, secret, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(new_id("tfa"))
    .bind(secret)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(inserted.rows_affected() == 1)
}

/// Marks the code of `step` used, if no later or equal step was: the one write that makes a code
/// single-use, even between two requests racing with it. With `confirm`, the enrolment `id`
/// becomes the user's factor (only if it is still unconfirmed).
pub async fn use_step_on(
    conn: &mut AnyConnection,
    user_id: &str,
    factor_id: &str,
    step: i64,
    confirm_at: Option<i64>,
) -> sqlx::Result<bool> {
    // Confirming takes an enrolment only; signing in, a confirmed factor only.
    let done = match confirm_at {
        Some(at) => sqlx::query(
            "UPDATE totp_factors SET last_step = $1, confirmed_at = $2 \
             WHERE user_id = $3 AND id = $4 AND confirmed_at IS NULL",
        )
        .bind(step)
        .bind(at),
        None => sqlx::query(
            "UPDATE totp_factors SET last_step = $1 \
             WHERE user_id = $2 AND id = $3 AND confirmed_at IS NOT NULL \
               AND (last_step IS NULL OR last_step < $1)",
        )
        .bind(step),
    }
    .bind(user_id)
    .bind(factor_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes the user's factor, confirmed or not; whether there was one.
pub async fn delete_on(conn: &mut AnyConnection, user_id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM totp_factors WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}
