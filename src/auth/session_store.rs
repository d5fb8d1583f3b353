//! tower-sessions store in tollgate's own database (SQLite or PostgreSQL), so every instance on one
//! database shares sessions.
//!
//! Two things a stock store does not do: the id is stored only as a SHA-256 hash (a leaked table
//! cannot be replayed as cookies), and each record is indexed by the signed-in user, so a password
//! change or reset can end all of a user's sessions with one statement.

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tower_sessions::{
    SessionStore,
    session::{Id, Record},
    session_store,
};

use crate::db::{self, Db};

/// The session key that holds the signed-in user's id.
pub const USER_ID_KEY: &str = "uid";

/// Sessions in the `sessions` table.
#[derive(Clone, Debug)]
pub struct DbSessionStore {
    db: Db,
}

impl DbSessionStore {
    /// A store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

/// The stored form of a session id.
pub fn hash_id(id: &Id) -> String {
    hex::encode(Sha256::digest(id.to_string().as_bytes()))
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

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(backend)?;
        // A 128-bit random id colliding is not a practical event, but retry rather than overwrite.
        loop {
            let result = sqlx::query(
                "INSERT INTO sessions (id_hash, user_id, data, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(hash_id(&record.id))
            .bind(user_of(record))
            .bind(&data)
            .bind(record.expiry_date.unix_timestamp())
            .bind(db::now())
            .execute(&self.db.pool)
            .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if db::is_unique_violation(&e) => record.id = Id::default(),
                Err(e) => return Err(backend(e)),
            }
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(backend)?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, data, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id_hash) DO UPDATE SET user_id = excluded.user_id, \
             data = excluded.data, expires_at = excluded.expires_at",
        )
        .bind(hash_id(&record.id))
        .bind(user_of(record))
        .bind(&data)
        .bind(record.expiry_date.unix_timestamp())
        .bind(db::now())
        .execute(&self.db.pool)
        .await
        .map_err(backend)?;
        self.db.cache.forget_session(&record.id);
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        if let Some(record) = self.db.cache.session(id) {
            return Ok((record.expiry_date.unix_timestamp() > db::now()).then_some(record));
        }
        let ticket = self.db.cache.ticket();
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT data, expires_at FROM sessions WHERE id_hash = $1")
                .bind(hash_id(id))
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
        self.db.cache.put_session(ticket, &record, user_of(&record));
        Ok(Some(record))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(hash_id(id))
            .execute(&self.db.pool)
            .await
            .map_err(backend)?;
        self.db.cache.forget_session(id);
        Ok(())
    }
}

/// Ends every session of `user_id` except `keep` (the caller's own, when it stays signed in).
pub async fn end_user_sessions(db: &Db, user_id: &str, keep: Option<&Id>) -> sqlx::Result<u64> {
    let ended = end_user_sessions_on(&mut *db.pool.acquire().await?, user_id, keep).await?;
    db.cache.forget_user(user_id);
    Ok(ended)
}

/// [`end_user_sessions`] on a connection (inside a transaction): the caller forgets the user
/// in the cache after its commit.
pub async fn end_user_sessions_on(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    keep: Option<&Id>,
) -> sqlx::Result<u64> {
    let keep = keep.map(hash_id).unwrap_or_default();
    let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
        .bind(user_id)
        .bind(keep)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Deletes expired rows; run periodically.
pub async fn delete_expired(db: &Db) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(db::now())
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}
