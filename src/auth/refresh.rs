//! Refresh tokens and their families: the `token_families` and `refresh_tokens` tables.
//!
//! A token client (a mobile app, a CLI, another backend) signs in once and gets a family: every
//! refresh token it is given from then on belongs to it. A refresh token is `tgr_` and 64 hex
//! digits (256 random bits), stored only as its SHA-256 hash, and good for one exchange: the
//! exchange marks it used and hands out the next one. A used token that comes back means two
//! parties hold the family (a thief and the owner), so the whole family ends (reuse detection,
//! as the OAuth 2.0 security best current practice describes). Two exchanges of one token at the
//! same moment are the same case: one wins, the other ends the family.
//!
//! A family lives like a browser session: each refresh token for the idle timeout
//! (`TOLLGATE_SESSION_IDLE_SECS`), the family at most the absolute one
//! (`TOLLGATE_SESSION_ABSOLUTE_SECS`). It ends at logout, and it is dead once the user's session
//! epoch moved past its own (a password change or reset, signing out everywhere, a mailbox proof):
//! whatever ends every session ends every family.

use sqlx::AnyConnection;

use crate::{base::Base, db::Db, error::Result, ids::new_id};

use super::{
    opaque::hash,
    users::{self, User},
};

/// What every refresh token starts with.
pub const PREFIX: &str = "tgr_";
/// Live token sign-ins a user may hold; a new one beyond it ends the oldest (so signing in or
/// exchanging a session again and again cannot grow the tables without bound).
pub const MAX_LIVE_FAMILIES: i64 = 50;

/// Why a family ended, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The user signed out.
    Logout,
    /// The client gave the family up (`POST /api/auth/token/revoke`).
    Revoked,
    /// A used refresh token came back.
    Reuse,
    /// The user's newer sign-ins pushed it past [`MAX_LIVE_FAMILIES`].
    Superseded,
    /// An administrator suspended the account.
    Suspended,
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::Logout => "logout",
            Ending::Revoked => "revoked",
            Ending::Reuse => "reuse",
            Ending::Superseded => "superseded",
            Ending::Suspended => "suspended",
        }
    }
}

/// A family as the gate needs it.
#[derive(Clone, Debug)]
pub struct Family {
    /// `fam_…`; an access token's `sid` claim.
    pub id: String,
    /// Its user.
    pub user_id: String,
    /// The user's session epoch it was created under: dead when the user's is higher.
    pub session_epoch: i64,
    /// Unix seconds: its absolute end.
    pub expires_at: i64,
    /// True once it ended (logout, revocation, reuse).
    pub ended: bool,
}

impl Family {
    /// True when the family still holds for `user` at `now`.
    pub fn holds_for(&self, user: &User, now: i64) -> bool {
        !self.ended
            && now < self.expires_at
            && self.user_id == user.id
            && self.session_epoch >= user.session_epoch
    }
}

/// A refresh token just issued.
#[derive(Debug)]
pub struct Issued {
    /// The family it belongs to.
    pub family_id: String,
    /// The token itself: shown once, never stored.
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds: when its family ends at the latest.
    pub family_ends_at: i64,
}

fn new_token() -> String {
    super::opaque::new(PREFIX)
}

/// True for a string shaped like a refresh token.
fn well_formed(token: &str) -> bool {
    super::opaque::well_formed(token, PREFIX)
}

/// Starts a family for `user` (a sign-in that asked for tokens): its first refresh token. It
/// lives `TOLLGATE_SESSION_ABSOLUTE_SECS`, or `at_most` seconds when that is less (a session
/// exchanged for tokens hands on only the time it has left).
pub async fn start(base: &Base, user: &User, now: i64, at_most: Option<i64>) -> Result<Issued> {
    users::refuse_if_suspended(&base.db, &user.id, now).await?;
    let family_id = new_id("fam");
    let absolute = base.config.session_absolute_secs as i64;
    let expires_at = now + at_most.map_or(absolute, |secs| secs.min(absolute));
    let mut tx = base.db.begin().await?;
    sqlx::query(
        "INSERT INTO token_families (id, user_id, session_epoch, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&family_id)
    .bind(&user.id)
    .bind(user.session_epoch)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    let issued = issue_on(&mut tx, base, &family_id, expires_at, now).await?;
    // Ends the oldest live families beyond the limit (by creation time, to the second).
    let superseded = sqlx::query(
        "UPDATE token_families SET ended_at = $1, ended_reason = $2 \
         WHERE user_id = $3 AND ended_at IS NULL AND id NOT IN (\
           SELECT id FROM token_families WHERE user_id = $3 AND ended_at IS NULL \
           ORDER BY created_at DESC LIMIT $4)",
    )
    .bind(now)
    .bind(Ending::Superseded.as_str())
    .bind(&user.id)
    .bind(MAX_LIVE_FAMILIES)
    .execute(&mut *tx)
    .await?;
    if superseded.rows_affected() > 0 {
        base.commit_for(tx, &user.id).await?;
    } else {
        tx.commit().await?;
    }
    Ok(issued)
}

async fn issue_on(
    conn: &mut AnyConnection,
    base: &Base,
    family_id: &str,
    family_ends: i64,
    now: i64,
) -> sqlx::Result<Issued> {
    let token = new_token();
    let expires_at = (now + base.config.session_idle_secs as i64).min(family_ends);
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(hash(&token))
    .bind(family_id)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(Issued {
        family_id: family_id.to_owned(),
        token,
        expires_at,
        family_ends_at: family_ends,
    })
}

const FAMILY_COLUMNS: &str =
    "SELECT id, user_id, session_epoch, expires_at, ended_at FROM token_families";

type FamilyRow = (String, String, i64, i64, Option<i64>);

fn family_of(row: FamilyRow) -> Family {
    let (id, user_id, session_epoch, expires_at, ended_at) = row;
    Family {
        id,
        user_id,
        session_epoch,
        expires_at,
        ended: ended_at.is_some(),
    }
}

/// The family `id`, if it exists.
pub async fn family(db: &Db, id: &str) -> Result<Option<Family>> {
    let sql = format!("{FAMILY_COLUMNS} WHERE id = $1");
    let row: Option<FamilyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.map(family_of))
}

/// What an exchange of a refresh token came to.
#[derive(Debug)]
pub enum Exchange {
    /// The next refresh token of a family that holds, for its user.
    Issued(User, Issued),
    /// Unknown, expired, or of a family that no longer holds: refused, nothing changed.
    Refused,
    /// A used token came back: its family has just ended.
    Reused {
        /// The family's user, to forget in the cache.
        user_id: String,
        /// The family.
        family_id: String,
    },
}

/// Exchanges `token` for the next one of its family (see the module).
pub async fn exchange(base: &Base, token: &str, now: i64) -> Result<Exchange> {
    if !well_formed(token) {
        return Ok(Exchange::Refused);
    }
    let hashed = hash(token);
    // An unknown token is refused by a read: it never opens a write transaction (on SQLite, the
    // database's one writer), whoever sends it and however often.
    let known: Option<(String,)> =
        sqlx::query_as("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(&hashed)
            .fetch_optional(&base.db.pool)
            .await?;
    if known.is_none() {
        return Ok(Exchange::Refused);
    }
    let mut tx = base.db.begin().await?;
    // The mark is the claim: of two exchanges at once, one sets it and the other finds it set.
    let claimed = sqlx::query(
        "UPDATE refresh_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(&hashed)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let row: Option<(String, Option<i64>)> =
        sqlx::query_as("SELECT family_id, used_at FROM refresh_tokens WHERE token_hash = $1")
            .bind(&hashed)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((family_id, used_at)) = row else {
        return Ok(Exchange::Refused);
    };
    let sql = format!("{FAMILY_COLUMNS} WHERE id = $1");
    let family: FamilyRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&family_id)
        .fetch_one(&mut *tx)
        .await?;
    let family = family_of(family);
    if !claimed {
        if used_at.is_none() {
            // Expired, never used: refused; the family goes on for its other holder, if any.
            return Ok(Exchange::Refused);
        }
        if !family.ended {
            end_on(&mut tx, Families::One(&family_id), Ending::Reuse, now).await?;
            tx.commit().await?;
        }
        return Ok(Exchange::Reused {
            user_id: family.user_id,
            family_id: family.id,
        });
    }
    let user = users::find_by_id_on(&mut tx, &family.user_id).await?;
    let Some(user) = user.filter(|u| family.holds_for(u, now)) else {
        // The use is recorded: a dead family's token is spent as well.
        tx.commit().await?;
        return Ok(Exchange::Refused);
    };
    let issued = issue_on(&mut tx, base, &family.id, family.expires_at, now).await?;
    tx.commit().await?;
    Ok(Exchange::Issued(user, issued))
}

/// Which families an ending applies to.
enum Families<'a> {
    /// One family, by id.
    One(&'a str),
    /// Every family of a user.
    OfUser(&'a str),
}

async fn end_on(
    conn: &mut AnyConnection,
    which: Families<'_>,
    why: Ending,
    now: i64,
) -> sqlx::Result<()> {
    let (column, value) = match which {
        Families::One(id) => ("id", id),
        Families::OfUser(user_id) => ("user_id", user_id),
    };
    let sql = format!(
        "UPDATE token_families SET ended_at = $1, ended_reason = $2 \
         WHERE {column} = $3 AND ended_at IS NULL"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(why.as_str())
        .bind(value)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends the family of `token` (a client giving its tokens up): its user, when there was a live
/// family to end. An unknown token ends nothing.
pub async fn revoke(base: &Base, token: &str, now: i64) -> Result<Option<String>> {
    if !well_formed(token) {
        return Ok(None);
    }
    let mut tx = base.db.begin().await?;
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT f.id, f.user_id FROM refresh_tokens t JOIN token_families f ON f.id = t.family_id \
         WHERE t.token_hash = $1 AND f.ended_at IS NULL",
    )
    .bind(hash(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((family_id, user_id)) = row else {
        return Ok(None);
    };
    end_on(&mut tx, Families::One(&family_id), Ending::Revoked, now).await?;
    base.commit_for(tx, &user_id).await?;
    Ok(Some(user_id))
}

/// Ends the family `family_id` (inside the caller's transaction; the caller forgets its user in
/// the cache after its commit).
pub async fn end_on_family(
    conn: &mut AnyConnection,
    family_id: &str,
    why: Ending,
    now: i64,
) -> sqlx::Result<()> {
    end_on(conn, Families::One(family_id), why, now).await
}

/// Ends every family of the user (inside the caller's transaction; the caller forgets the user in
/// the cache after its commit).
pub async fn end_all_on(
    conn: &mut AnyConnection,
    user_id: &str,
    why: Ending,
    now: i64,
) -> sqlx::Result<()> {
    end_on(conn, Families::OfUser(user_id), why, now).await
}

/// Ends the family `family_id` if it is a live one of `user_id` (inside the caller's transaction;
/// the caller forgets the user in the cache after its commit): whether it was.
pub async fn end_one_of_user_on(
    conn: &mut AnyConnection,
    user_id: &str,
    family_id: &str,
    why: Ending,
    now: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE token_families SET ended_at = $1, ended_reason = $2 \
         WHERE id = $3 AND user_id = $4 AND ended_at IS NULL",
    )
    .bind(now)
    .bind(why.as_str())
    .bind(family_id)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A live token sign-in, as the list of signed-in devices shows it.
#[derive(Clone, Debug)]
pub struct FamilySummary {
    /// `fam_…`.
    pub id: String,
    /// When it signed in.
    pub created_at: i64,
    /// When its newest refresh token was issued (its last refresh).
    pub last_used_at: i64,
}

/// The user's token sign-ins that still hold at `now`.
pub async fn live_families(db: &Db, user: &User, now: i64) -> sqlx::Result<Vec<FamilySummary>> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT f.id, f.created_at, COALESCE(MAX(t.created_at), f.created_at) \
         FROM token_families f LEFT JOIN refresh_tokens t ON t.family_id = f.id \
         WHERE f.user_id = $1 AND f.ended_at IS NULL AND f.expires_at > $2 \
           AND f.session_epoch >= $3 \
         GROUP BY f.id, f.created_at",
    )
    .bind(&user.id)
    .bind(now)
    .bind(user.session_epoch)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, created_at, last_used_at)| FamilySummary {
            id,
            created_at,
            last_used_at,
        })
        .collect())
}

/// Deletes families past their absolute end and refresh tokens past theirs; run periodically.
pub async fn delete_expired(db: &Db, now: i64) -> sqlx::Result<u64> {
    let tokens = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= $1")
        .bind(now)
        .execute(&db.pool)
        .await?;
    let families = sqlx::query("DELETE FROM token_families WHERE expires_at <= $1")
        .bind(now)
        .execute(&db.pool)
        .await?;
    Ok(tokens.rows_affected() + families.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_have_the_prefix_and_256_bits() {
        let (a, b) = (new_token(), new_token());
        assert!(a.starts_with("tgr_") && a.len() == 4 + 64, "{a}");
        assert_ne!(a, b);
        assert!(well_formed(&a));
        for bad in ["", "tgr_", &a.to_uppercase(), &format!("{a}0"), &a[1..]] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
