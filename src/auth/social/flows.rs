//! The `oauth_flows` table: a sign-in (or a link) sent to a provider and not back yet. The OAuth
//! `state` is stored only as a SHA-256 hash, with the hash of the browser binding, the PKCE
//! verifier and the nonce; the callback takes the row once (`DELETE … RETURNING`).

use crate::{auth::opaque::hash, db::Db};

/// How long a provider may take to send the browser back.
pub const LIFETIME_SECS: i64 = 600;

/// A flow as stored.
#[derive(Clone, Debug)]
pub struct Flow {
    /// The provider it went to.
    pub provider: String,
    /// SHA-256 of the browser binding (the cookie of the browser that started it).
    pub binding_hash: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// The OpenID Connect nonce.
    pub nonce: String,
    /// Where to go after (a path of this site).
    pub next_path: String,
    /// The signed-in account a link is for.
    pub link_user_id: Option<String>,
    /// A paid plan chosen before signing up (`pro/month`): Checkout follows the sign-in.
    pub plan: Option<String>,
}

/// Records a flow under `state`.
pub async fn create(db: &Db, state: &str, flow: &Flow, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO oauth_flows (state_hash, provider, binding_hash, verifier, nonce, \
         next_path, link_user_id, plan, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(hash(state))
    .bind(&flow.provider)
    .bind(&flow.binding_hash)
    .bind(&flow.verifier)
    .bind(&flow.nonce)
    .bind(&flow.next_path)
    .bind(&flow.link_user_id)
    .bind(&flow.plan)
    .bind(now)
    .bind(now + LIFETIME_SECS)
    .execute(&db.pool)
    .await?;
    Ok(())
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
);

/// Takes the flow of `state`, if it is unexpired: gone afterwards, so a callback counts once.
pub async fn take(db: &Db, state: &str, now: i64) -> sqlx::Result<Option<Flow>> {
    if state.is_empty() || state.len() > 200 {
        return Ok(None);
    }
    let row: Option<Row> = sqlx::query_as(
        "DELETE FROM oauth_flows WHERE state_hash = $1 RETURNING provider, binding_hash, \
         verifier, nonce, next_path, link_user_id, plan, expires_at",
    )
    .bind(hash(state))
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.filter(|r| r.7 > now).map(
        |(provider, binding_hash, verifier, nonce, next_path, link_user_id, plan, _)| Flow {
            provider,
            binding_hash,
            verifier,
            nonce,
            next_path,
            link_user_id,
            plan,
        },
    ))
}

/// Deletes flows past their 10 minutes; run periodically.
pub async fn delete_expired(db: &Db, now: i64) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM oauth_flows WHERE expires_at <= $1")
        .bind(now)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}
