//! The `webauthn_ceremonies` table: a WebAuthn ceremony begun and not finished. The token
//! (`tgw_…`, 256 random bits) is handed to the client with the options and stored only as a
//! SHA-256 hash; a ceremony is taken once (one `DELETE … RETURNING`), whatever the answer, and
//! lives 5 minutes.

use crate::db::Db;

/// The token's prefix.
pub const PREFIX: &str = "tgw_";
/// How long a ceremony waits for the authenticator's answer.
pub const LIFETIME_SECS: i64 = 300;

/// What a ceremony may finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Registering a passkey on a signed-in account.
    Register,
    /// Signing in with a passkey alone (no username first).
    SignIn,
    /// The second step of a sign-in whose first factor passed.
    SecondStep,
    /// A fresh proof before a sensitive change.
    Reauth,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::SignIn => "sign_in",
            Purpose::SecondStep => "second_step",
            Purpose::Reauth => "reauth",
        }
    }
}

/// A ceremony as taken.
#[derive(Debug)]
pub struct Taken {
    /// The account it was begun for (none for a sign-in without a username).
    pub user_id: Option<String>,
    /// The hash of the pending sign-in a second step belongs to.
    pub pending_hash: Option<String>,
    /// passki's state (JSON).
    pub state: String,
}

/// The SHA-256 hash of a token, hex (also of the pending sign-in tokens a second step binds).
pub use crate::auth::opaque::hash;

fn well_formed(token: &str) -> bool {
    crate::auth::opaque::well_formed(token, PREFIX)
}

/// Records a ceremony; its token.
pub async fn create(
    db: &Db,
    purpose: Purpose,
    user_id: Option<&str>,
    pending_hash: Option<&str>,
    state: &str,
    now: i64,
) -> sqlx::Result<String> {
    let token = crate::auth::opaque::new(PREFIX);
    sqlx::query(
        "INSERT INTO webauthn_ceremonies \
         (token_hash, purpose, user_id, pending_hash, state, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(hash(&token))
    .bind(purpose.as_str())
    .bind(user_id)
    .bind(pending_hash)
    .bind(state)
    .bind(now)
    .bind(now + LIFETIME_SECS)
    .execute(&db.pool)
    .await?;
    Ok(token)
}

/// purpose, user_id, pending_hash, state, expires_at.
type TakenRow = (String, Option<String>, Option<String>, String, i64);

/// Takes the unexpired ceremony `token` if it is of `purpose`: it is gone afterwards whatever it
/// was for, so an answer (right or wrong, at the right route or not) is checked once, and a
/// replayed one finds nothing.
pub async fn take(db: &Db, token: &str, purpose: Purpose, now: i64) -> sqlx::Result<Option<Taken>> {
    if !well_formed(token) {
        return Ok(None);
    }
    let row: Option<TakenRow> = sqlx::query_as(
        "DELETE FROM webauthn_ceremonies WHERE token_hash = $1 \
         RETURNING purpose, user_id, pending_hash, state, expires_at",
    )
    .bind(hash(token))
    .fetch_optional(&db.pool)
    .await?;
    Ok(row
        .filter(|(kind, _, _, _, expires_at)| kind == purpose.as_str() && *expires_at > now)
        .map(|(_, user_id, pending_hash, state, _)| Taken {
            user_id,
            pending_hash,
            state,
        }))
}

/// Deletes ceremonies past their 5 minutes; run periodically.
pub async fn delete_expired(db: &Db, now: i64) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at <= $1")
        .bind(now)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}

/// Ends the user's open ceremonies of `purpose`.
pub async fn end_on(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    purpose: Purpose,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM webauthn_ceremonies WHERE user_id = $1 AND purpose = $2")
        .bind(user_id)
        .bind(purpose.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every ceremony of the user (passkeys removed, account changes).
pub async fn end_all_on(conn: &mut sqlx::AnyConnection, user_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM webauthn_ceremonies WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}
