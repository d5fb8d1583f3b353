//! API keys for scripts, CLIs and integrations: the `api_keys` table.
//!
//! A key is `tg_` and 64 hex digits (256 random bits); the prefix lets secret scanners find a
//! leaked one. It is shown once, at creation; only its SHA-256 hash is stored (a slow password
//! hash buys nothing against 256 random bits), and it is found by that hash. A key carries
//! scopes ([`Scope`]), may expire, dies when revoked or with its user, and never reaches account
//! changes (the gate's `SessionUser`). Its last use is recorded at most once a minute, so a key in
//! use does not turn every request into a write. How a request presents one is
//! [`super::credentials`]'s.

use rand::RngCore as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row as _, any::AnyRow};

use std::sync::Arc;

use crate::{
    base::Base,
    clock::rfc3339,
    db::Db,
    error::{AppError, Result},
    ids::new_id,
};

/// What every key starts with.
pub const PREFIX: &str = "tg_";
/// Live (unrevoked) keys a user may hold.
pub const MAX_KEYS: i64 = 20;
/// Longest key name, in characters.
pub const NAME_MAX_CHARS: usize = 100;
/// How stale `last_used_at` may get before a request records the use again.
const LAST_USED_EVERY_SECS: i64 = 60;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Who am I, my access, the plans; the gate (plan and feature gates, forward-auth).
    Read,
    /// Start a Checkout, open the billing portal.
    Billing,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 2] = [Scope::Read, Scope::Billing];

    /// The scope's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Billing => "billing",
        }
    }

    /// The scope named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// A key as stored (never its secret).
#[derive(Clone, Debug)]
pub struct ApiKey {
    /// `key_…`.
    pub id: String,
    /// Its user.
    pub user_id: String,
    /// What its owner called it.
    pub name: String,
    /// The last four characters of the secret.
    pub hint: String,
    /// What it may do, sorted, without repeats.
    pub scopes: Vec<Scope>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` for a key that does not expire.
    pub expires_at: Option<i64>,
    /// Unix seconds, to the minute; `None` before its first use.
    pub last_used_at: Option<i64>,
}

impl ApiKey {
    /// True when the key has `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

impl<'r> sqlx::FromRow<'r, AnyRow> for ApiKey {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        let scopes: String = row.try_get("scopes")?;
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            name: row.try_get("name")?,
            hint: row.try_get("hint")?,
            // A scope this build does not know grants nothing.
            scopes: scopes.split(' ').filter_map(Scope::parse).collect(),
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            last_used_at: row.try_get("last_used_at")?,
        })
    }
}

/// A key as the API shows it (docs/api.md, "API keys").
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ApiKey)]
pub struct KeyJson {
    /// `key_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `tg_…` and the last four characters, to tell keys apart.
    pub hint: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, or `null`.
    pub expires_at: Option<String>,
    /// RFC 3339 to the minute, or `null`.
    pub last_used_at: Option<String>,
}

impl From<&ApiKey> for KeyJson {
    fn from(key: &ApiKey) -> Self {
        Self {
            id: key.id.clone(),
            name: key.name.clone(),
            hint: format!("{PREFIX}…{}", key.hint),
            scopes: key.scopes.clone(),
            created_at: rfc3339(key.created_at),
            expires_at: key.expires_at.map(rfc3339),
            last_used_at: key.last_used_at.map(rfc3339),
        }
    }
}

/// What a new key is.
pub struct NewKey<'a> {
    /// Its name: 1 to [`NAME_MAX_CHARS`] characters, no control characters.
    pub name: &'a str,
    /// Scope names: at least one, each known.
    pub scopes: &'a [String],
    /// Whole days from now, 1 to [`MAX_DAYS`]; `None` for a key that does not expire.
    pub expires_in_days: Option<i64>,
}

/// Longest lifetime a key may be given, in days (ten years).
pub const MAX_DAYS: i64 = 3_650;

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", hex::encode(bytes))
}

/// True for a string shaped like a key (so malformed ones never reach the database).
fn well_formed(secret: &str) -> bool {
    secret.strip_prefix(PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Checks `new` and returns its sorted scopes; nothing is stored.
fn validate(new: &NewKey<'_>) -> Result<Vec<Scope>> {
    let name = new.name.trim();
    if name.is_empty()
        || name.chars().count() > NAME_MAX_CHARS
        || name
            .chars()
            .any(|c| c.is_control() || super::users::is_invisible(c))
    {
        return Err(AppError::InvalidField("name".into()));
    }
    let mut scopes = Vec::new();
    for s in new.scopes {
        scopes.push(Scope::parse(s).ok_or_else(|| AppError::InvalidField("scopes".into()))?);
    }
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(AppError::InvalidField("scopes".into()));
    }
    if new
        .expires_in_days
        .is_some_and(|d| !(1..=MAX_DAYS).contains(&d))
    {
        return Err(AppError::InvalidField("expires_in_days".into()));
    }
    Ok(scopes)
}

/// Creates a key for `user_id`: the key, and its secret (shown once, never stored).
pub async fn create(
    db: &Db,
    current: super::SignedIn<'_>,
    new: NewKey<'_>,
    now: i64,
) -> Result<(ApiKey, String)> {
    let user_id = current.user.id.as_str();
    let scopes = validate(&new)?;
    let secret = new_secret();
    let key = ApiKey {
        id: new_id("key"),
        user_id: user_id.to_owned(),
        name: new.name.trim().to_owned(),
        hint: secret[secret.len() - 4..].to_owned(),
        scopes,
        created_at: now,
        expires_at: new.expires_in_days.map(|days| now + days * 86_400),
        last_used_at: None,
    };
    let names: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
    // The limit is checked by the insert itself (on PostgreSQL two creations at the same moment
    // may both pass it: a bound on clutter, not a security boundary).
    let inserted = sqlx::query(
        "INSERT INTO api_keys (id, user_id, name, secret_hash, hint, scopes, created_at, expires_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
         WHERE (SELECT COUNT(*) FROM api_keys WHERE user_id = $2 AND revoked_at IS NULL) < $9",
    )
    .bind(&key.id)
    .bind(user_id)
    .bind(&key.name)
    .bind(hash(&secret))
    .bind(&key.hint)
    .bind(names.join(" "))
    .bind(now)
    .bind(key.expires_at)
    .bind(MAX_KEYS);
    // Made only while the session asking is live: a request held open across a password reset
    // (which revokes every key) or the sign-out of this device makes nothing.
    let mut tx = db.begin().await?;
    current.hold_on(&mut tx).await?;
    let inserted = inserted.execute(&mut *tx).await?;
    if inserted.rows_affected() == 0 {
        return Err(AppError::TooManyKeys);
    }
    let payload = serde_json::json!({"key": key.id, "name": key.name, "scopes": names});
    let entry = super::own_event(crate::audit::Kind::ApiKeyCreated, user_id, payload);
    crate::audit::record(&mut tx, now, entry).await?;
    tx.commit().await?;
    Ok((key, secret))
}

const COLUMNS: &str = "SELECT id, user_id, name, hint, scopes, created_at, expires_at, \
                       last_used_at FROM api_keys";

/// The user's keys that are not revoked (expired ones included), newest first.
pub async fn list(db: &Db, user_id: &str) -> Result<Vec<ApiKey>> {
    let sql =
        format!("{COLUMNS} WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .fetch_all(&db.pool)
        .await?)
}

/// Revokes the user's key `id`; false when the user has no such live key.
pub async fn revoke(base: &Base, user_id: &str, id: &str, now: i64) -> Result<bool> {
    let mut tx = base.db.begin().await?;
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    let revoked = done.rows_affected() == 1;
    if revoked {
        let payload = serde_json::json!({"key": id});
        let entry = super::own_event(crate::audit::Kind::ApiKeyRevoked, user_id, payload);
        crate::audit::record(&mut tx, now, entry).await?;
    }
    base.commit_for(tx, user_id).await?;
    Ok(revoked)
}

/// Revokes every key of the user (inside the caller's transaction; the caller forgets the user in
/// the cache after its commit).
pub async fn revoke_all_on(conn: &mut AnyConnection, user_id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The live key whose secret is `secret`, if any; records its use (at most once a minute). A key
/// is cached like a member: a revocation on this instance is seen at once (it forgets the user),
/// on another instance when the database publishes the change (milliseconds; under a second).
pub async fn resolve(base: &Base, secret: &str, now: i64) -> Result<Option<Arc<ApiKey>>> {
    if !well_formed(secret) {
        return Ok(None);
    }
    let hashed = hash(secret);
    let live = |key: &ApiKey| key.expires_at.is_none_or(|at| at > now);
    if let Some(key) = base.cache.credential::<ApiKey>(&hashed) {
        let recorded = key
            .last_used_at
            .is_some_and(|at| now - at < LAST_USED_EVERY_SECS);
        if recorded {
            return Ok(live(&key).then_some(key));
        }
    }
    let ticket = base.cache.ticket();
    let sql = format!("{COLUMNS} WHERE secret_hash = $1 AND revoked_at IS NULL");
    let found: Option<ApiKey> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&hashed)
        .fetch_optional(&base.db.pool)
        .await?;
    let Some(mut key) = found else {
        return Ok(None);
    };
    if live(&key)
        && key
            .last_used_at
            .is_none_or(|at| now - at >= LAST_USED_EVERY_SECS)
    {
        let minute = now - now % LAST_USED_EVERY_SECS;
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(minute)
            .bind(&key.id)
            .execute(&base.db.pool)
            .await?;
        key.last_used_at = Some(minute);
    }
    let key = Arc::new(key);
    base.cache
        .put_credential(ticket, &hashed, &key.user_id, key.clone());
    Ok(live(&key).then_some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_prefix_and_256_bits_and_only_their_shape_is_looked_up() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("tg_") && a.len() == 3 + 64, "{a}");
        assert_ne!(a, b);
        assert!(well_formed(&a));
        for bad in [
            "",
            "tg_",
            "tg_abc",
            &a.to_uppercase(),
            &format!("{a}0"),
            &a[1..],
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
