//! The `recovery_codes` table: ten single-use codes per enrolment, for a lost authenticator.
//!
//! A code is 16 characters of Crockford's base32 (no i, l, o or u: 80 random bits), shown in groups
//! of four (`7k2m-x9qd-4tfa-8hzc`); only its SHA-256 hash is stored. Hyphens, spaces and
//! case do not matter when one is typed.

use rand::Rng as _;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use crate::db::Db;

/// Codes per set.
pub const COUNT: usize = 10;
/// Crockford's base32: digits and letters without i, l, o and u.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const LENGTH: usize = 16;

fn new_code() -> String {
    let mut rng = rand::rng();
    let letters: Vec<u8> = (0..LENGTH)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect();
    letters
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ASCII"))
        .collect::<Vec<_>>()
        .join("-")
}

/// The typed code as stored: lower case, hyphens and whitespace dropped; `None` when it cannot be
/// a code.
fn normalise(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (code.len() == LENGTH && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

fn hash(normalised: &str) -> String {
    hex::encode(Sha256::digest(normalised.as_bytes()))
}

/// Replaces the user's codes with a new set (inside the caller's transaction); the codes, to be
/// shown once.
pub async fn replace_on(
    conn: &mut AnyConnection,
    user_id: &str,
    now: i64,
) -> sqlx::Result<Vec<String>> {
    delete_on(conn, user_id).await?;
    let codes: Vec<String> = (0..COUNT).map(|_| new_code()).collect();
    for code in &codes {
        let normalised = normalise(code).expect("a new code is well formed");
        sqlx::query(
            "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(user_id)
        .bind(hash(&normalised))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(codes)
}

/// Spends the user's code `typed`, if it is one of theirs and unused: one atomic update, so a
/// code cannot be spent twice even by two racing requests.
pub async fn spend_on(
    conn: &mut AnyConnection,
    user_id: &str,
    typed: &str,
    now: i64,
) -> sqlx::Result<bool> {
    let Some(code) = normalise(typed) else {
        return Ok(false);
    };
    let done = sqlx::query(
        "UPDATE recovery_codes SET used_at = $1 \
         WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .bind(hash(&code))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many unused codes the user has.
pub async fn left(db: &Db, user_id: &str) -> sqlx::Result<i64> {
    let mut conn = db.pool.acquire().await?;
    left_on(&mut conn, user_id).await
}

/// [`left`] on the caller's connection.
pub async fn left_on(conn: &mut AnyConnection, user_id: &str) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(conn)
    .await?;
    Ok(n)
}

/// Removes every code of the user.
pub async fn delete_on(conn: &mut AnyConnection, user_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_80_bits_in_groups_and_typed_forms_match() {
        assert_eq!(ALPHABET.len(), 32);
        let code = new_code();
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(code.matches('-').count(), 3);
        let stored = normalise(&code).unwrap();
        assert_eq!(normalise(&code.to_uppercase()).as_deref(), Some(&*stored));
        assert_eq!(
            normalise(&format!(" {} ", code.replace('-', " "))).as_deref(),
            Some(&*stored)
        );
        assert_ne!(new_code(), code);
        assert_eq!(normalise("abcd-efgh-jkmn-pqr"), None, "short");
        assert_eq!(
            normalise("abcd-efgh-jkmn-pqri"),
            None,
            "i is not in the alphabet"
        );
        assert_eq!(normalise("abcd-efgh-jkmn-pqrsé"), None);
    }
}
