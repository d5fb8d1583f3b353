//! The `social_identities` table: provider identities linked to accounts.

use crate::db::Db;

/// A linked identity, as its owner sees it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Linked {
    /// `google`, `github` or `oidc`.
    pub provider: String,
    /// The email the provider gave when it was linked.
    pub email: String,
    /// Linked at (Unix seconds).
    pub created_at: i64,
    /// Last used to sign in (Unix seconds).
    pub last_used_at: Option<i64>,
}

/// An identity: the provider, the issuer that vouches for it, its subject there.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    /// `google`, `github` or `oidc`.
    pub provider: &'a str,
    /// The issuer (a subject is unique only there).
    pub issuer: &'a str,
    /// The subject.
    pub subject: &'a str,
}

/// The account the identity is linked to, if any.
pub async fn user_of(db: &Db, key: Key<'_>) -> sqlx::Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT user_id FROM social_identities \
         WHERE provider = $1 AND issuer = $2 AND subject = $3",
    )
    .bind(key.provider)
    .bind(key.issuer)
    .bind(key.subject)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.map(|(id,)| id))
}

/// The user's linked identities.
pub async fn of_user(db: &Db, user_id: &str) -> sqlx::Result<Vec<Linked>> {
    let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT provider, email, created_at, last_used_at FROM social_identities \
         WHERE user_id = $1 ORDER BY provider",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(provider, email, created_at, last_used_at)| Linked {
            provider,
            email,
            created_at,
            last_used_at,
        })
        .collect())
}

/// Links the identity (seen with `email`) to the user inside the caller's transaction; `false`
/// when it is linked already (to anyone) or the user has one of that provider.
pub async fn link_on(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    (key, email): (Key<'_>, &str),
    now: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO social_identities (provider, issuer, subject, user_id, email, created_at, \
         last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
    )
    .bind(key.provider)
    .bind(key.issuer)
    .bind(key.subject)
    .bind(user_id)
    .bind(email)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stamps a sign-in with the identity.
pub async fn used(db: &Db, key: Key<'_>, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE social_identities SET last_used_at = $1 \
         WHERE provider = $2 AND issuer = $3 AND subject = $4",
    )
    .bind(now)
    .bind(key.provider)
    .bind(key.issuer)
    .bind(key.subject)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Unlinks the user's identity of `provider` inside the caller's transaction; whether there was
/// one.
pub async fn unlink_on(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    provider: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM social_identities WHERE user_id = $1 AND provider = $2")
        .bind(user_id)
        .bind(provider)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// How many identities the user has linked, inside the caller's transaction.
pub async fn count_on(conn: &mut sqlx::AnyConnection, user_id: &str) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM social_identities WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(conn)
        .await?;
    Ok(n)
}
