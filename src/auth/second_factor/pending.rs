//! The `pending_sign_ins` table: a sign-in whose first factor passed, waiting for the second.
//! It grants nothing: it is not a session, and its token (`tgp_…`, 256 random bits, stored only
//! as a SHA-256 hash) is accepted nowhere but at the second step.

use crate::{auth::opaque::hash, db::Db};

/// The token's prefix.
pub const PREFIX: &str = "tgp_";
/// How long a pending sign-in waits for its second factor.
pub const LIFETIME_SECS: i64 = 300;
/// Codes one pending sign-in takes; then it is dead and the user starts again.
pub const MAX_ATTEMPTS: i64 = 5;

/// What the first step asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Intent {
    /// A persistent session cookie ("remember me").
    pub remember: bool,
    /// A token pair instead of a session.
    pub tokens: bool,
}

/// A pending sign-in, as an attempt on it sees it.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The user.
    pub user_id: String,
    /// The user's session epoch when the first factor passed.
    pub session_epoch: i64,
    /// What the first step asked for.
    pub intent: Intent,
}

fn well_formed(token: &str) -> bool {
    crate::auth::opaque::well_formed(token, PREFIX)
}

/// Records a pending sign-in; its token.
pub async fn create(
    db: &Db,
    user_id: &str,
    session_epoch: i64,
    intent: Intent,
    now: i64,
) -> sqlx::Result<String> {
    let token = crate::auth::opaque::new(PREFIX);
    sqlx::query(
        "INSERT INTO pending_sign_ins \
         (token_hash, user_id, session_epoch, created_at, expires_at, remember, tokens) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(hash(&token))
    .bind(user_id)
    .bind(session_epoch)
    .bind(now)
    .bind(now + LIFETIME_SECS)
    .bind(i64::from(intent.remember))
    .bind(i64::from(intent.tokens))
    .execute(&db.pool)
    .await?;
    Ok(token)
}

/// Counts one attempt on the pending sign-in `token`: the sign-in, while it is unexpired and has
/// attempts left (this one included). One atomic update, so racing attempts cannot exceed the
/// limit.
pub async fn attempt(db: &Db, token: &str, now: i64) -> sqlx::Result<Option<Pending>> {
    if !well_formed(token) {
        return Ok(None);
    }
    let row: Option<(String, i64, i64, i64)> = sqlx::query_as(
        "UPDATE pending_sign_ins SET attempts = attempts + 1 \
         WHERE token_hash = $1 AND expires_at > $2 AND attempts < $3 \
         RETURNING user_id, session_epoch, remember, tokens",
    )
    .bind(hash(token))
    .bind(now)
    .bind(MAX_ATTEMPTS)
    .fetch_optional(&db.pool)
    .await?;
    Ok(
        row.map(|(user_id, session_epoch, remember, tokens)| Pending {
            user_id,
            session_epoch,
            intent: Intent {
                remember: remember != 0,
                tokens: tokens != 0,
            },
        }),
    )
}

/// The user and session epoch of the pending sign-in `token` while it is unexpired and has
/// attempts left, without counting an attempt (a passkey ceremony begun for it; its answer
/// counts).
pub async fn peek(db: &Db, token: &str, now: i64) -> sqlx::Result<Option<(String, i64)>> {
    if !well_formed(token) {
        return Ok(None);
    }
    sqlx::query_as(
        "SELECT user_id, session_epoch FROM pending_sign_ins \
         WHERE token_hash = $1 AND expires_at > $2 AND attempts < $3",
    )
    .bind(hash(token))
    .bind(now)
    .bind(MAX_ATTEMPTS)
    .fetch_optional(&db.pool)
    .await
}

/// Ends the pending sign-in `token` once its second factor passed: `false` when it was already
/// gone (a racing request finished it first), and then this one must not sign in.
pub async fn finish(db: &Db, token: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM pending_sign_ins WHERE token_hash = $1")
        .bind(hash(token))
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes pending sign-ins past their 5 minutes; run periodically (an expired one is refused
/// by [`attempt`] whether or not it is still stored).
pub async fn delete_expired(db: &Db, now: i64) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM pending_sign_ins WHERE expires_at <= $1")
        .bind(now)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}

/// Ends every pending sign-in of the user (second factor removed, account changes).
pub async fn end_all_on(conn: &mut sqlx::AnyConnection, user_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM pending_sign_ins WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}
