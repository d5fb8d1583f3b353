//! Email tokens: 256 random bits from the OS CSPRNG, sent once and stored only as a SHA-256 hash,
//! bound to a purpose and to the address they were sent to, single-use, short-lived, and
//! invalidated by a password or email change. Magic-link tokens carry a 6-digit one-time code too
//! (for reading mail on another device), which dies after 5 wrong tries; the link lives on. Every failure — wrong,
//! used, expired, tampered, another purpose, an old address — is the same `token_invalid`.

use rand::{Rng as _, TryRngCore as _, rngs::OsRng};
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use subtle::ConstantTimeEq as _;

use crate::{db, error::AppError, ids::new_id};

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Prove the address.
    Verify,
    /// Set a new password.
    Reset,
    /// Sign in without a password.
    Magic,
    /// Confirm a new address.
    EmailChange,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Verify => "verify",
            Purpose::Reset => "reset",
            Purpose::Magic => "magic",
            Purpose::EmailChange => "email_change",
        }
    }
}

fn hash(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A freshly issued token (and code, for magic links), to put in an email.
pub struct Issued {
    /// The token for the link.
    pub token: String,
    /// The one-time code (magic links only).
    pub code: Option<String>,
}

/// Issues a token for `user_id`, sent to `email_norm`, valid `ttl` seconds.
pub async fn issue(
    conn: &mut AnyConnection,
    user_id: &str,
    purpose: Purpose,
    email_norm: &str,
    new_email: Option<&str>,
    ttl: u64,
    now: i64,
) -> Result<Issued, AppError> {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("OS RNG: {e}")))?;
    let token = base64url(&bytes);
    let code = (purpose == Purpose::Magic)
        .then(|| format!("{:06}", OsRng.unwrap_err().random_range(0..1_000_000)));
    let id = new_id("tok");
    sqlx::query(
        "INSERT INTO email_tokens (id, user_id, purpose, token_hash, code_hash, email_norm, new_email, \
         failed_attempts, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9)",
    )
    .bind(&id)
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(hash(&token))
    .bind(code.as_ref().map(|c| hash(&format!("{id}:{c}"))))
    .bind(email_norm)
    .bind(new_email)
    .bind(now + ttl as i64)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(Issued { token, code })
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A consumed token: whose it was and where it was sent.
#[derive(Debug)]
pub struct Consumed {
    /// The user.
    pub user_id: String,
    /// The normalised address the token was sent to.
    pub email_norm: String,
    /// For email changes: the new address as typed.
    pub new_email: Option<String>,
}

/// Uses `token` for `purpose`, once. The caller checks the address binding.
pub async fn consume(
    conn: &mut AnyConnection,
    token: &str,
    purpose: Purpose,
    now: i64,
) -> Result<Consumed, AppError> {
    if token.is_empty() || token.len() > 200 {
        return Err(AppError::TokenInvalid);
    }
    let row: Option<(String, String, Option<String>)> = sqlx::query_as(
        "UPDATE email_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 \
         RETURNING user_id, email_norm, new_email",
    )
    .bind(now)
    .bind(hash(token))
    .bind(purpose.as_str())
    .fetch_optional(conn)
    .await?;
    let (user_id, email_norm, new_email) = row.ok_or(AppError::TokenInvalid)?;
    Ok(Consumed {
        user_id,
        email_norm,
        new_email,
    })
}

/// Wrong one-time codes a magic-link token takes before its code dies (its link lives on).
pub const MAX_CODE_ATTEMPTS: i64 = 5;

/// Uses the newest live magic-link code of `user_id`. Every try is counted before the code is
/// compared, in one conditional update, so concurrent guesses cannot exceed
/// [`MAX_CODE_ATTEMPTS`]; then the code is dead, but the emailed link still works.
pub async fn consume_code(
    conn: &mut AnyConnection,
    user_id: &str,
    code: &str,
    now: i64,
) -> Result<Consumed, AppError> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM email_tokens \
         WHERE user_id = $1 AND purpose = 'magic' AND used_at IS NULL AND expires_at > $2 \
         AND failed_attempts < $3 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(user_id)
    .bind(now)
    .bind(MAX_CODE_ATTEMPTS)
    .fetch_optional(&mut *conn)
    .await?;
    let (id,) = row.ok_or(AppError::TokenInvalid)?;
    // Claim one try atomically; the row lock orders concurrent guesses, and only claimed tries
    // are compared.
    let claimed: Option<(Option<String>, String)> = sqlx::query_as(
        "UPDATE email_tokens SET failed_attempts = failed_attempts + 1 \
         WHERE id = $1 AND used_at IS NULL AND expires_at > $2 AND failed_attempts < $3 \
         RETURNING code_hash, email_norm",
    )
    .bind(&id)
    .bind(now)
    .bind(MAX_CODE_ATTEMPTS)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((Some(code_hash), email_norm)) = claimed else {
        return Err(AppError::TokenInvalid);
    };
    let given = hash(&format!("{id}:{}", code.trim()));
    if !bool::from(given.as_bytes().ct_eq(code_hash.as_bytes())) {
        return Err(AppError::TokenInvalid);
    }
    let done = sqlx::query(
        "UPDATE email_tokens SET used_at = $1, failed_attempts = failed_attempts - 1 \
         WHERE id = $2 AND used_at IS NULL",
    )
    .bind(now)
    .bind(&id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(AppError::TokenInvalid);
    }
    Ok(Consumed {
        user_id: user_id.to_owned(),
        email_norm,
        new_email: None,
    })
}

/// Ends every outstanding token of `user_id` (a password or email change).
pub async fn invalidate_all(conn: &mut AnyConnection, user_id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes tokens long expired or used; run periodically.
pub async fn delete_stale(db: &db::Db) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM email_tokens WHERE expires_at < $1")
        .bind(db::now() - 7 * 86_400)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_url_safe_and_long() {
        let t = base64url(&[0xff; 32]);
        assert_eq!(t.len(), 43);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(base64url(b"Man"), "TWFu");
    }
}
