//! Users: the `Email` newtype, the queries on `users`, and the user JSON of docs/api.md.

use sqlx::{AnyConnection, Row as _, any::AnyRow};
use unicode_normalization::UnicodeNormalization as _;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

use crate::{
    base::Base,
    db::{self, Db},
    error::AppError,
    ids::new_id,
    telemetry,
};

/// An email address as typed (trimmed) and its normalised form, which logins match on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// As typed, minus surrounding white space; shown back to the user.
    pub display: String,
    /// Trimmed, NFC, lower-cased: one account per normalised address.
    pub normalised: String,
}

impl Email {
    /// Parses an address: one `@`, a non-empty local part, a dotted domain, no spaces, control or
    /// format characters, at most 254 bytes. Deliberately lenient beyond that; the verification
    /// email is the real test.
    ///
    /// Addresses that look the same are the same: compatibility forms (fullwidth letters, `＠`,
    /// ligatures) fold to their plain forms (NFKC), the local part is lower-cased, and the domain
    /// goes through IDNA (UTS #46), so `ＡＮＮ@Bücher.DE`, `ann@xn--bcher-kva.de` and
    /// `ann@bücher.de` are one address.
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let display: String = raw.trim().nfkc().collect();
        // Invisible characters (zero-width spaces and joiners, bidi controls, soft hyphens) would
        // make two addresses that look alike different accounts: refused outright.
        if display
            .chars()
            .any(is_invisible)
            || stray_mark(&display)
            // A quoted local part (`"ann"@x`) is the same mailbox as the unquoted one.
            || display.contains('"')
        {
            return Err(AppError::InvalidEmail);
        }
        let valid = display.len() <= 254
            && display.split('@').count() == 2
            && !display
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
            && display.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            });
        let Some((local, domain)) = display.split_once('@').filter(|_| valid) else {
            return Err(AppError::InvalidEmail);
        };
        // The domain as DNS resolves it, kept in its Unicode form so stored rows keep matching.
        let ascii = idna::domain_to_ascii(domain).map_err(|_| AppError::InvalidEmail)?;
        let (domain_norm, checked) = idna::domain_to_unicode(&ascii);
        checked.map_err(|_| AppError::InvalidEmail)?;
        Ok(Self {
            normalised: format!("{}@{domain_norm}", local.to_lowercase()),
            display,
        })
    }

    /// The normalised form of `raw`, or its trimmed lower-case form when it is not a valid
    /// address: the key logins and rate limits count under, whatever was typed.
    pub fn normalise_lenient(raw: &str) -> String {
        Self::parse(raw)
            .map(|e| e.normalised)
            .unwrap_or_else(|_| raw.trim().to_lowercase())
    }

    /// `j***@example.com`: for logs, which never hold full addresses.
    pub fn masked(&self) -> String {
        telemetry::mask_address(&self.display)
    }
}

/// Characters that show nothing: Unicode's default-ignorable code points (variation selectors,
/// the combining grapheme joiner, Hangul fillers, Mongolian and Khmer invisibles, tags…) and the
/// blank braille pattern.
/// A character that shows nothing, or nothing of its own: Unicode format characters (zero-width
/// spaces and joiners, bidi controls) and the other default-ignorable ones below. Two strings
/// that differ only by them look alike.
pub(crate) fn is_invisible(c: char) -> bool {
    c.general_category() == GeneralCategory::Format || invisible(c)
}

fn invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x2800
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// A combining mark with nothing of its own script to combine with: at the start of a part, or
/// after an ASCII character (after NFKC, `e` + U+0301 has become `é`; what is left only hides).
fn stray_mark(address: &str) -> bool {
    let mut previous: Option<char> = None;
    address.chars().any(|c| {
        let mark = matches!(
            c.general_category(),
            GeneralCategory::NonspacingMark
                | GeneralCategory::SpacingMark
                | GeneralCategory::EnclosingMark
        );
        let stray = mark && previous.is_none_or(|p| p.is_ascii());
        previous = Some(c);
        stray
    })
}

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
}

const USER_COLUMNS: &str =
    "SELECT id, email, password_hash, email_verified, session_epoch FROM users";

impl<'r> sqlx::FromRow<'r, AnyRow> for User {
    /// Reads the columns of `USER_COLUMNS` by name (a join may alias them `user_…`).
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            password_hash: row.try_get("password_hash")?,
            email_verified: row.try_get::<i64, _>("email_verified")? != 0,
            session_epoch: row.try_get("session_epoch")?,
        })
    }
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
        }),
        // The unique constraint on email_norm is the guard against concurrent duplicates.
        Err(e) if db::is_unique_violation(&e) => Err(AppError::EmailTaken),
        Err(e) => Err(e.into()),
    }
}

/// Users whose address contains `query` (case-insensitive, as typed; `%` and `_` match
/// themselves; every user when it is empty), at most `limit`, by address.
pub async fn search(db: &Db, query: &str, limit: i64) -> Result<Vec<User>, AppError> {
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
    let sql = sqlx::AssertSqlSafe(format!("{USER_COLUMNS} WHERE email_norm = $1"));
    let user: Option<User> = sqlx::query_as(sql)
        .bind(email_norm)
        .fetch_optional(conn)
        .await?;
    Ok(user)
}

/// The user with this id, on a connection.
pub async fn find_by_id_on(conn: &mut AnyConnection, id: &str) -> Result<Option<User>, AppError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalise_and_validate() {
        let e = Email::parse("  Ann.Lee@Example.COM ").unwrap();
        assert_eq!(e.display, "Ann.Lee@Example.COM");
        assert_eq!(e.normalised, "ann.lee@example.com");
        // NFC: a decomposed é equals the composed one.
        assert_eq!(
            Email::parse("e\u{301}@x.io").unwrap().normalised,
            Email::parse("\u{e9}@x.io").unwrap().normalised
        );
        for bad in [
            "",
            "plain",
            "a@b",
            "a@@b.io",
            "a b@c.io",
            "@c.io",
            "a@.io",
            "a@c..io",
            "a@c.io\r\nBcc: x@y.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(e.masked(), "A***@Example.COM");
    }

    #[test]
    fn addresses_that_look_the_same_are_the_same() {
        let ann = "ann@bücher.de";
        let same: &[(&str, &str)] = &[
            ("ＡＮＮ@ＢÜＣＨＥＲ.ＤＥ", "fullwidth letters"),
            ("ann＠bücher.de", "a fullwidth at sign"),
            ("ann@xn--bcher-kva.de", "the punycode domain"),
            ("Ann@BÜCHER.de", "case"),
            ("ann@bu\u{308}cher.de", "a decomposed ü"),
            ("ann@bücher\u{ff0e}de", "a fullwidth full stop"),
        ];
        let want = Email::parse(ann).unwrap().normalised;
        for (raw, why) in same {
            assert_eq!(
                Email::parse(raw).unwrap().normalised,
                want,
                "{why}: {raw:?}"
            );
        }
        let refused: &[(&str, &str)] = &[
            ("ann\u{200b}@example.com", "zero-width space"),
            ("ann@exa\u{200d}mple.com", "zero-width joiner"),
            ("\u{feff}ann@example.com", "byte-order mark"),
            ("ann@example.com\u{202e}", "bidi override"),
            ("an\u{ad}n@example.com", "soft hyphen"),
            ("ann＠b＠example.com", "two at signs once folded"),
            ("ann@xn--a.com", "broken punycode"),
            ("an\u{34f}n@example.com", "combining grapheme joiner"),
            ("ann\u{fe0f}@example.com", "variation selector"),
            ("a\u{3164}nn@example.com", "Hangul filler"),
            ("ann\u{ffa0}@example.com", "halfwidth Hangul filler"),
            ("ann\u{2800}@example.com", "blank braille pattern"),
            ("ann\u{180b}@example.com", "Mongolian variation selector"),
            ("ann\u{17b4}@example.com", "Khmer invisible vowel"),
            ("annx\u{300}@example.com", "a stray combining mark"),
            (
                "\u{301}ann@example.com",
                "a mark with nothing to combine with",
            ),
            ("\"ann\"@example.com", "a quoted local part"),
        ];
        // Scripts whose letters take marks stay welcome.
        assert!(Email::parse("अनु@example.com").is_ok());
        for (raw, why) in refused {
            assert!(
                Email::parse(raw).is_err(),
                "{why}: {raw:?} should be refused"
            );
        }
    }
}
