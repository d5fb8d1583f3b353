//! The `passkeys` and `passkey_users` tables: registered credentials, and the WebAuthn user handle
//! of each account that has any.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore as _;

use crate::db::Db;

/// A registered passkey, as stored.
#[derive(Clone, Debug)]
pub struct Row {
    /// Our id (`pk_…`).
    pub id: String,
    /// The owner.
    pub user_id: String,
    /// The name its owner gave it.
    pub name: String,
    /// The credential's raw id, base64url.
    pub credential_id: String,
    /// The verified credential (passki's `StoredPasskey`, JSON).
    pub credential: String,
    /// The signature counter last seen.
    pub sign_count: i64,
    /// Registered at (Unix seconds).
    pub created_at: i64,
    /// Last used to sign in or confirm (Unix seconds).
    pub last_used_at: Option<i64>,
}

type Tuple = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
);

fn row(t: Tuple) -> Row {
    let (id, user_id, name, credential_id, credential, sign_count, created_at, last_used_at) = t;
    Row {
        id,
        user_id,
        name,
        credential_id,
        credential,
        sign_count,
        created_at,
        last_used_at,
    }
}

/// The user's WebAuthn handle (32 random bytes), made on first use.
pub async fn user_handle(db: &Db, user_id: &str) -> sqlx::Result<Vec<u8>> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    sqlx::query(
        "INSERT INTO passkey_users (user_id, user_handle) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(URL_SAFE_NO_PAD.encode(bytes))
    .execute(&db.pool)
    .await?;
    let (handle,): (String,) =
        sqlx::query_as("SELECT user_handle FROM passkey_users WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&db.pool)
            .await?;
    URL_SAFE_NO_PAD
        .decode(handle.as_bytes())
        .map_err(|e| sqlx::Error::Decode(e.into()))
}

/// The user whose handle is `handle` (base64url), if any.
pub async fn user_of_handle(db: &Db, handle: &str) -> sqlx::Result<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT user_id FROM passkey_users WHERE user_handle = $1")
            .bind(handle)
            .fetch_optional(&db.pool)
            .await?;
    Ok(row.map(|(id,)| id))
}

/// The user's passkeys, oldest first.
pub async fn of_user(db: &Db, user_id: &str) -> sqlx::Result<Vec<Row>> {
    let rows: Vec<Tuple> = sqlx::query_as(
        "SELECT id, user_id, name, credential_id, credential, sign_count, created_at, \
         last_used_at FROM passkeys WHERE user_id = $1 ORDER BY created_at, id",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.into_iter().map(row).collect())
}

/// How many passkeys the user has.
pub async fn count(db: &Db, user_id: &str) -> sqlx::Result<i64> {
    count_on(&mut *db.pool.acquire().await?, user_id).await
}

/// How many passkeys the user has, inside the caller's transaction (which holds the account, so
/// racing registrations count one after the other).
pub async fn count_on(conn: &mut sqlx::AnyConnection, user_id: &str) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM passkeys WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(conn)
        .await?;
    Ok(n)
}

/// The passkey whose credential id (base64url, canonical) is `credential_id`.
pub async fn by_credential(db: &Db, credential_id: &str) -> sqlx::Result<Option<Row>> {
    let found: Option<Tuple> = sqlx::query_as(
        "SELECT id, user_id, name, credential_id, credential, sign_count, created_at, \
         last_used_at FROM passkeys WHERE credential_id = $1",
    )
    .bind(credential_id)
    .fetch_optional(&db.pool)
    .await?;
    Ok(found.map(row))
}

/// Stores a new passkey inside the caller's transaction; `false` when its credential id is
/// already registered (to any account).
pub async fn insert_on(conn: &mut sqlx::AnyConnection, row: &Row) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO passkeys \
         (id, user_id, name, credential_id, credential, sign_count, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL) ON CONFLICT (credential_id) DO NOTHING",
    )
    .bind(&row.id)
    .bind(&row.user_id)
    .bind(&row.name)
    .bind(&row.credential_id)
    .bind(&row.credential)
    .bind(row.sign_count)
    .bind(row.created_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the counter from `old` to `new` and stamps the use, only if it is still `old`: of two
/// racing assertions with the same counter, one passes.
pub async fn record_use(db: &Db, id: &str, old: i64, new: i64, now: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE passkeys SET sign_count = $1, last_used_at = $2 WHERE id = $3 AND sign_count = $4",
    )
    .bind(new)
    .bind(now)
    .bind(id)
    .bind(old)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Renames the user's passkey `id`; `false` when the user has no such passkey.
pub async fn rename_on(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    id: &str,
    name: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE passkeys SET name = $1 WHERE id = $2 AND user_id = $3")
        .bind(name)
        .bind(id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the user's passkey `id`; its name, or `None` when the user has no such passkey.
pub async fn delete_on(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    id: &str,
) -> sqlx::Result<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("DELETE FROM passkeys WHERE id = $1 AND user_id = $2 RETURNING name")
            .bind(id)
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(name,)| name))
}

/// Deletes every passkey of the user; how many there were.
pub async fn delete_all_on(conn: &mut sqlx::AnyConnection, user_id: &str) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM passkeys WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
