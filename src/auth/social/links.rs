//! The `pending_links` table: a provider identity whose verified address matches an existing
//! account, waiting for the owner's confirmation through a link mailed to that address and opened
//! in the browser that started the sign-in. The token (`tgl_…`) is stored only as a hash and
//! taken once.

use crate::{
    auth::opaque::{self, hash},
    db::Db,
};

/// The token's prefix.
pub const PREFIX: &str = "tgl_";
/// How long the owner has to confirm.
pub const LIFETIME_SECS: i64 = 1800;

/// A link waiting for confirmation.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The account it would link to.
    pub user_id: String,
    /// The provider.
    pub provider: String,
    /// Its issuer.
    pub issuer: String,
    /// The identity's subject there.
    pub subject: String,
    /// The address the provider gave.
    pub email: String,
    /// SHA-256 of the browser binding of the sign-in that asked.
    pub binding_hash: String,
    /// Where to go after.
    pub next_path: String,
}

/// Records a pending link; its token.
pub async fn create(db: &Db, link: &Pending, now: i64) -> sqlx::Result<String> {
    let token = opaque::new(PREFIX);
    sqlx::query(
        "INSERT INTO pending_links (token_hash, user_id, provider, issuer, subject, email, \
         binding_hash, next_path, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(hash(&token))
    .bind(&link.user_id)
    .bind(&link.provider)
    .bind(&link.issuer)
    .bind(&link.subject)
    .bind(&link.email)
    .bind(&link.binding_hash)
    .bind(&link.next_path)
    .bind(now)
    .bind(now + LIFETIME_SECS)
    .execute(&db.pool)
    .await?;
    Ok(token)
}

type Row = (String, String, String, String, String, String, String, i64);

/// Takes the unexpired pending link `token` inside the caller's transaction: gone afterwards.
pub async fn take_on(
    conn: &mut sqlx::AnyConnection,
    token: &str,
    now: i64,
) -> sqlx::Result<Option<Pending>> {
    if !opaque::well_formed(token, PREFIX) {
        return Ok(None);
    }
    let row: Option<Row> = sqlx::query_as(
        "DELETE FROM pending_links WHERE token_hash = $1 RETURNING user_id, provider, issuer, \
         subject, email, binding_hash, next_path, expires_at",
    )
    .bind(hash(token))
    .fetch_optional(conn)
    .await?;
    Ok(row.filter(|r| r.7 > now).map(
        |(user_id, provider, issuer, subject, email, binding_hash, next_path, _)| Pending {
            user_id,
            provider,
            issuer,
            subject,
            email,
            binding_hash,
            next_path,
        },
    ))
}

/// Deletes pending links past their 30 minutes; run periodically.
pub async fn delete_expired(db: &Db, now: i64) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM pending_links WHERE expires_at <= $1")
        .bind(now)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}
