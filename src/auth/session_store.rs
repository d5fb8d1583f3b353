//! tower-sessions store in tollgate's own database (SQLite or PostgreSQL), so every instance on one
//! database shares sessions.
//!
//! Two things a stock store does not do: the id is stored only as a SHA-256 hash (a leaked table
//! cannot be replayed as cookies), and each record is indexed by the signed-in user, so a password
//! change or reset can end all of a user's sessions with one statement.
//!
//! Revoked stays revoked: a record is inserted only for an id created in this request, updated
//! only while its row exists, and in both cases only while the user's session epoch is still the
//! one the session was signed in under ([`EPOCH_KEY`]). A revocation raises the epoch and deletes
//! the rows ([`revoke_all_on`]), so a request that loaded its session before and saves after
//! writes nothing back.

use async_trait::async_trait;
use tower_sessions::{
    SessionStore,
    session::{Id, Record},
    session_store,
};

use std::sync::Arc;

use super::users;
use crate::{
    cache::Cache,
    db::{self, Db},
};

/// The session key that holds the signed-in user's id.
pub const USER_ID_KEY: &str = "uid";
/// The session key that holds the user's session epoch at sign-in (see [`revoke_all_on`]).
pub const EPOCH_KEY: &str = "epoch";

/// Sessions in the `sessions` table.
#[derive(Clone, Debug)]
pub struct DbSessionStore {
    db: Db,
    cache: Arc<Cache>,
}

impl DbSessionStore {
    /// A store over `db`, remembering recent sessions in `cache`.
    pub fn new(db: Db, cache: Arc<Cache>) -> Self {
        Self { db, cache }
    }
}

/// The stored form of a session id.
pub fn hash_id(id: &Id) -> String {
    hex::encode(crate::cache::session_key(id))
}

fn backend(err: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

fn user_of(record: &Record) -> Option<String> {
    record
        .data
        .get(USER_ID_KEY)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// The session epoch a record was signed in under; records from before epochs existed hold none,
/// which is the first epoch.
pub fn epoch_of(data: &std::collections::HashMap<String, serde_json::Value>) -> i64 {
    data.get(EPOCH_KEY).and_then(|v| v.as_i64()).unwrap_or(0)
}

/// Why a record was not written: logged, never an error, since the request itself was fine
/// when it began; its cookie simply names nothing.
fn refused(written: u64) {
    if written == 0 {
        tracing::warn!(
            target: "security",
            security_event = "revoked_session_not_saved",
            "a session revoked during its request was not written back"
        );
    }
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(backend)?;
        let user = user_of(record);
        // A signed-in record is inserted only while its epoch is current: a sign-in or id
        // rotation that began before a revocation must not create a live session after it.
        let sql = match user {
            None => {
                "INSERT INTO sessions (id_hash, user_id, data, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5)"
            }
            Some(_) => {
                "INSERT INTO sessions (id_hash, user_id, data, expires_at, created_at) \
                 SELECT $1, $2, $3, $4, $5 \
                 WHERE EXISTS (SELECT 1 FROM users WHERE id = $2 AND session_epoch = $6)"
            }
        };
        // A 128-bit random id colliding is not a practical event, but retry rather than overwrite.
        loop {
            let mut query = sqlx::query(sql)
                .bind(hash_id(&record.id))
                .bind(user.clone())
                .bind(&data)
                .bind(record.expiry_date.unix_timestamp())
                .bind(db::now());
            if user.is_some() {
                query = query.bind(epoch_of(&record.data));
            }
            match query.execute(&self.db.pool).await {
                Ok(done) => {
                    refused(done.rows_affected());
                    return Ok(());
                }
                Err(e) if db::is_unique_violation(&e) => record.id = Id::default(),
                Err(e) => return Err(backend(e)),
            }
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(backend)?;
        let user = user_of(record);
        // An update, never an insert: a row that is gone was revoked (logout, password change or
        // reset, account deletion) and stays gone. The user never changes without a new id.
        let sql = match user {
            None => {
                "UPDATE sessions SET data = $1, expires_at = $2 \
                 WHERE id_hash = $3 AND user_id IS NULL"
            }
            Some(_) => {
                "UPDATE sessions SET data = $1, expires_at = $2 \
                 WHERE id_hash = $3 AND user_id = $4 \
                 AND EXISTS (SELECT 1 FROM users WHERE id = $4 AND session_epoch = $5)"
            }
        };
        let mut query = sqlx::query(sql)
            .bind(&data)
            .bind(record.expiry_date.unix_timestamp())
            .bind(hash_id(&record.id));
        if let Some(user) = &user {
            query = query.bind(user.clone()).bind(epoch_of(&record.data));
        }
        let done = query.execute(&self.db.pool).await.map_err(backend)?;
        refused(done.rows_affected());
        self.cache.forget_session(&record.id);
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let key = crate::cache::session_key(id);
        if let Some(record) = self.cache.session(id, &key) {
            return Ok((record.expiry_date.unix_timestamp() > db::now()).then_some(record));
        }
        let ticket = self.cache.ticket();
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT data, expires_at FROM sessions WHERE id_hash = $1")
                .bind(hex::encode(key))
                .fetch_optional(&self.db.pool)
                .await
                .map_err(backend)?;
        let Some((data, expires_at)) = row else {
            return Ok(None);
        };
        if expires_at <= db::now() {
            return Ok(None);
        }
        let record = Record {
            id: *id,
            data: serde_json::from_str(&data).map_err(backend)?,
            expiry_date: time::OffsetDateTime::from_unix_timestamp(expires_at).map_err(backend)?,
        };
        // The text as read, not the record written out again.
        let user = user_of(&record);
        self.cache
            .put_session(ticket, key, data, expires_at, user.as_deref());
        Ok(Some(record))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(hash_id(id))
            .execute(&self.db.pool)
            .await
            .map_err(backend)?;
        self.cache.forget_session(id);
        Ok(())
    }
}

/// Revokes every session of `user_id` (inside the caller's transaction): raises the user's session
/// epoch, so no session signed in before can be written back by a request still running, and
/// deletes the rows. With `expected`, only if the epoch is still that (the caller's own session
/// is current). The new epoch, or `None` when the user is gone or the epoch moved on. The caller
/// forgets the user in the cache after its commit ([`crate::base::Base::commit_for`]).
pub async fn revoke_all_on(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    expected: Option<i64>,
) -> sqlx::Result<Option<i64>> {
    let bumped = users::bump_session_epoch_on(&mut *conn, user_id, expected).await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(bumped)
}

/// Inside the caller's transaction: true when `user_id`'s sessions are still of `epoch` (nothing
/// revoked them since the caller's session was signed in). On PostgreSQL the row stays locked
/// until the transaction ends, so a revocation cannot slip in between this check and the commit;
/// SQLite write transactions are serial anyway.
pub async fn hold_epoch(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    epoch: i64,
) -> sqlx::Result<bool> {
    users::hold_session_epoch_on(conn, user_id, epoch).await
}

/// A stored session, as the list of signed-in devices reads it.
pub struct StoredSession {
    /// The SHA-256 of its id.
    pub id_hash: String,
    /// Its data (user, epoch, times, where it came from).
    pub data: std::collections::HashMap<String, serde_json::Value>,
    /// When the row was first written.
    pub created_at: i64,
}

/// The unexpired sessions of `user_id`.
pub async fn list_for_user(db: &Db, user_id: &str, now: i64) -> sqlx::Result<Vec<StoredSession>> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT id_hash, data, created_at FROM sessions WHERE user_id = $1 AND expires_at > $2",
    )
    .bind(user_id)
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id_hash, data, created_at)| {
            let data = serde_json::from_str(&data).ok()?;
            Some(StoredSession {
                id_hash,
                data,
                created_at,
            })
        })
        .collect())
}

/// Deletes the session whose id hashes to `id_hash` if it is `user_id`'s (inside the caller's
/// transaction; the caller forgets the user in the cache after its commit): whether it was.
pub async fn delete_for_user_on(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    id_hash: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1 AND user_id = $2")
        .bind(id_hash)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Inside the caller's transaction: true when the session whose id hashes to `id_hash` is still
/// a live session of `user_id` under `epoch` (no revocation and no sign-out of this device since
/// the request loaded it). Both rows stay locked on PostgreSQL until the transaction ends, so a
/// revocation or a sign-out cannot slip in between this check and the commit; SQLite write
/// transactions are serial anyway. For writes a request held open must not make after its
/// session ended (a new API key, say).
pub async fn hold_session(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    id_hash: &str,
    epoch: i64,
) -> sqlx::Result<bool> {
    if !hold_epoch(&mut *conn, user_id, epoch).await? {
        return Ok(false);
    }
    let held =
        sqlx::query("UPDATE sessions SET id_hash = id_hash WHERE id_hash = $1 AND user_id = $2")
            .bind(id_hash)
            .bind(user_id)
            .execute(conn)
            .await?;
    Ok(held.rows_affected() == 1)
}

/// Deletes expired rows; run periodically.
pub async fn delete_expired(db: &Db) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(db::now())
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}
