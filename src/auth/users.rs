//! Users: the queries on `users` and the `User` row (the address type is [`Email`]).

use sqlx::{AnyConnection, Row as _, any::AnyRow};

use crate::{
    base::Base,
    db::{self, Db},
    error::AppError,
    ids::new_id,
};

pub use super::address::Email;
pub(crate) use super::address::is_invisible;

/// A row of `users`.
#[derive(Clone, Debug)]
pub struct User {
    /// Opaque id.
    pub id: String,
    /// As typed.
    pub email: String,
    /// PHC string; `None` for accounts without a password (future sign-in methods).
    pub password_hash: Option<String>,
    /// Whether the address was proven (stored as 0 or 1).
    pub email_verified: bool,
    /// Raised at every revocation of the user's sessions; a session signed in under an older
    /// epoch is dead.
    pub session_epoch: i64,
    /// When an administrator suspended the account (Unix seconds); `None` when it is not.
    pub suspended_at: Option<i64>,
}

const USER_COLUMNS: &str =
    "SELECT id, email, password_hash, email_verified, session_epoch, suspended_at FROM users";

impl<'r> sqlx::FromRow<'r, AnyRow> for User {
    /// Reads the columns of `USER_COLUMNS` by name (a join may alias them `user_…`).
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            password_hash: row.try_get("password_hash")?,
            email_verified: row.try_get::<i64, _>("email_verified")? != 0,
            session_epoch: row.try_get("session_epoch")?,
            suspended_at: row.try_get("suspended_at")?,
        })
    }
}

/// `AccountSuspended` when `user_id` is suspended now: read from the database, not a cached
/// user, by every sign-in once its proof passed and just before it hands out a session, tokens
/// or a second step. The refusal is an `auth.sign_in_failed` event (the proof passed, so the
/// user is the actor), for the administrators who look.
pub async fn refuse_if_suspended(db: &Db, user_id: &str, now: i64) -> Result<(), AppError> {
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT suspended_at FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&db.pool)
            .await?;
    if !matches!(row, Some((Some(_),))) {
        return Ok(());
    }
    let entry = crate::audit::Entry {
        kind: crate::audit::Kind::SignInFailed,
        actor: user_id,
        subject: Some(user_id),
        payload: serde_json::json!({"reason": "account_suspended"}),
    };
    crate::audit::record_alone(db, now, entry).await?;
    Err(AppError::AccountSuspended)
}

/// Suspends the user since `at` (`None`: lifts the suspension); false when it was so already.
pub async fn set_suspended_on(
    conn: &mut AnyConnection,
    id: &str,
    at: Option<i64>,
) -> sqlx::Result<bool> {
    let sql = if at.is_some() {
        "UPDATE users SET suspended_at = $1 WHERE id = $2 AND suspended_at IS NULL"
    } else {
        "UPDATE users SET suspended_at = $1 WHERE id = $2 AND suspended_at IS NOT NULL"
    };
    let done = sqlx::query(sql).bind(at).bind(id).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

/// Inserts a user; `EmailTaken` when the normalised address already has an account.
pub async fn insert_user(db: &Db, email: &Email, password_hash: &str) -> Result<User, AppError> {
    insert_user_on(&mut *db.pool.acquire().await?, email, password_hash).await
}

/// [`insert_user`] on a connection (inside a transaction).
pub async fn insert_user_on(
    conn: &mut AnyConnection,
    email: &Email,
    password_hash: &str,
) -> Result<User, AppError> {
    insert_on(conn, email, Some(password_hash), false).await
}

/// A user without a password whose address a sign-in provider proved (social sign-in): the
/// address counts as verified. `EmailTaken` as for [`insert_user`].
pub async fn insert_proven_on(conn: &mut AnyConnection, email: &Email) -> Result<User, AppError> {
    insert_on(conn, email, None, true).await
}

async fn insert_on(
    conn: &mut AnyConnection,
    email: &Email,
    password_hash: Option<&str>,
    verified: bool,
) -> Result<User, AppError> {
    let id = new_id("usr");
    let now = db::now();
    let result = sqlx::query(
        "INSERT INTO users (id, email, email_norm, password_hash, email_verified, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(&id)
    .bind(&email.display)
    .bind(&email.normalised)
    .bind(password_hash)
    .bind(i64::from(verified))
    .bind(now)
    .execute(conn)
    .await;
    match result {
        Ok(_) => Ok(User {
            id,
            email: email.display.clone(),
            password_hash: password_hash.map(str::to_owned),
            email_verified: verified,
            session_epoch: 0,
            suspended_at: None,
        }),
        // The unique constraint on email_norm is the guard against concurrent duplicates.
        Err(e) if db::is_unique_violation(&e) => Err(AppError::EmailTaken),
        Err(e) => Err(e.into()),
    }
}

/// Users whose address contains `query` (case-insensitive, as typed; `%` and `_` match
/// themselves; every user when it is empty), at most `limit`, by address.
pub async fn search(db: &Db, query: &str, limit: i64) -> Result<Vec<User>, AppError> {
    if query.contains('\0') {
        return Ok(vec![]);
    }
    let mut pattern = String::from("%");
    for c in query.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    let sql = format!(
        "{USER_COLUMNS} WHERE LOWER(email) LIKE $1 ESCAPE '\\' ORDER BY email_norm, id LIMIT $2"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(pattern)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?)
}

/// The user with id `id`.
pub async fn find_by_id(db: &Db, id: &str) -> Result<Option<User>, AppError> {
    find_by_id_on(&mut *db.pool.acquire().await?, id).await
}

/// The user with this normalised address.
pub async fn find_by_email(db: &Db, email_norm: &str) -> Result<Option<User>, AppError> {
    find_by_email_on(&mut *db.pool.acquire().await?, email_norm).await
}

/// Brings `email_norm` of accounts made before addresses were normalised with NFKC and IDNA up to
/// today's rule, once per database (a marker in `app_secrets`), so their owners still match
/// what they type. An address the rule now refuses, or one that would collide with another
/// account, is left as it is and logged (by id) for an operator.
pub async fn renormalise_addresses(base: &Base) -> anyhow::Result<()> {
    let db = &base.db;
    const MARKER: &str = "email_norm_nfkc_idna";
    if db.has_value(MARKER).await? {
        return Ok(());
    }
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, email, email_norm FROM users")
            .fetch_all(&db.pool)
            .await?;
    for (id, email, stored) in rows {
        let Ok(parsed) = Email::parse(&email) else {
            tracing::warn!(user = %id, "a stored address is refused by today's rules; left as it is");
            continue;
        };
        if parsed.normalised == stored {
            continue;
        }
        let moved = sqlx::query("UPDATE users SET email_norm = $1 WHERE id = $2")
            .bind(&parsed.normalised)
            .bind(&id)
            .execute(&db.pool)
            .await;
        match moved {
            Ok(_) => base.cache.forget_user(&id),
            Err(e) if crate::db::is_unique_violation(&e) => {
                tracing::warn!(user = %id, "a stored address now matches another account's; left as it is");
            }
            Err(e) => return Err(e.into()),
        }
    }
    db.shared_value(MARKER, "done").await?;
    Ok(())
}

/// [`find_by_email`] on a connection.
pub async fn find_by_email_on(
    conn: &mut AnyConnection,
    email_norm: &str,
) -> Result<Option<User>, AppError> {
    // No account has a NUL in its address (PostgreSQL would refuse the query): none is this one.
    if email_norm.contains('\0') {
        return Ok(None);
    }
    let sql = sqlx::AssertSqlSafe(format!("{USER_COLUMNS} WHERE email_norm = $1"));
    let user: Option<User> = sqlx::query_as(sql)
        .bind(email_norm)
        .fetch_optional(conn)
        .await?;
    Ok(user)
}

/// The user with this id, on a connection.
pub async fn find_by_id_on(conn: &mut AnyConnection, id: &str) -> Result<Option<User>, AppError> {
    if id.contains('\0') {
        return Ok(None);
    }
    let sql = sqlx::AssertSqlSafe(format!("{USER_COLUMNS} WHERE id = $1"));
    let user: Option<User> = sqlx::query_as(sql).bind(id).fetch_optional(conn).await?;
    Ok(user)
}

/// Marks the address verified (inside the caller's transaction).
pub async fn set_verified_on(conn: &mut AnyConnection, id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET email_verified = 1, updated_at = $1 WHERE id = $2")
        .bind(db::now())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes the password (inside the caller's transaction).
pub async fn clear_password_on(conn: &mut AnyConnection, id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET password_hash = NULL, updated_at = $1 WHERE id = $2")
        .bind(db::now())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves the user to a new, proven address (inside the caller's transaction). Fails with a
/// unique violation when another account holds it.
pub async fn set_proven_email_on(
    conn: &mut AnyConnection,
    id: &str,
    email: &Email,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE users SET email = $1, email_norm = $2, email_verified = 1, updated_at = $3 \
         WHERE id = $4",
    )
    .bind(&email.display)
    .bind(&email.normalised)
    .bind(db::now())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes the user (inside the caller's transaction); their sessions and tokens go with the row.
pub async fn delete_on(conn: &mut AnyConnection, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves the user's session epoch on by one (only if it is still `expected`, when given); the
/// new epoch, or `None` when the user is gone or the epoch had moved.
pub async fn bump_session_epoch_on(
    conn: &mut AnyConnection,
    id: &str,
    expected: Option<i64>,
) -> sqlx::Result<Option<i64>> {
    let bumped: Option<(i64,)> = sqlx::query_as(
        "UPDATE users SET session_epoch = session_epoch + 1 \
         WHERE id = $1 AND ($2 IS NULL OR session_epoch = $2) RETURNING session_epoch",
    )
    .bind(id)
    .bind(expected)
    .fetch_optional(conn)
    .await?;
    Ok(bumped.map(|(epoch,)| epoch))
}

/// True when the user's session epoch is `epoch`; the row is written (to itself), so on
/// PostgreSQL it stays locked until the caller's transaction ends.
pub async fn hold_session_epoch_on(
    conn: &mut AnyConnection,
    id: &str,
    epoch: i64,
) -> sqlx::Result<bool> {
    let held = sqlx::query(
        "UPDATE users SET session_epoch = session_epoch WHERE id = $1 AND session_epoch = $2",
    )
    .bind(id)
    .bind(epoch)
    .execute(conn)
    .await?;
    Ok(held.rows_affected() == 1)
}

/// Replaces the password hash.
pub async fn set_password_hash(base: &Base, id: &str, hash: &str) -> Result<(), AppError> {
    set_password_hash_on(&mut *base.db.pool.acquire().await?, id, hash).await?;
    base.cache.forget_user(id);
    Ok(())
}

/// [`set_password_hash`] on a connection (inside a transaction): the caller forgets the user in
/// the cache after its commit.
pub async fn set_password_hash_on(
    conn: &mut AnyConnection,
    id: &str,
    hash: &str,
) -> Result<(), AppError> {
    sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(hash)
        .bind(db::now())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
