//! The `checkout_attempts` table: one live attempt per user (a unique index over the user's
//! `creating` and `open` rows), claimed before Stripe is asked for a session.

use sqlx::{AnyConnection, Row as _, any::AnyRow};

use crate::{
    db::{self, Db},
    ids::new_id,
};

/// The states of a Checkout attempt (`checkout_attempts.status`): `creating` until Stripe answers,
/// `open` with its session, then `complete`, `expired`, or `failed` (its process died while
/// creating).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptState {
    /// The session is being created.
    Creating,
    /// The session exists and can be paid.
    Open,
    /// Paid.
    Complete,
    /// Expired (by Stripe, or by tollgate before a new attempt).
    Expired,
    /// Never created.
    Failed,
}

impl AttemptState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Open => "open",
            Self::Complete => "complete",
            Self::Expired => "expired",
            Self::Failed => "failed",
        }
    }
}

/// Marks the attempt of Checkout session `session` as `state` (Stripe said so).
pub async fn mark_session(
    conn: &mut AnyConnection,
    session: &str,
    state: AttemptState,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE checkout_attempts SET status = $1 WHERE stripe_session_id = $2")
        .bind(state.as_str())
        .bind(session)
        .execute(conn)
        .await?;
    Ok(())
}

impl AttemptState {
    /// From the stored name; `None` for a name tollgate never writes.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Creating,
            Self::Open,
            Self::Complete,
            Self::Expired,
            Self::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// Claims the user's one live attempt, `creating`; its id, or `None` when the user has one.
pub async fn claim(
    db: &Db,
    user_id: &str,
    plan_id: &str,
    interval: &str,
) -> sqlx::Result<Option<String>> {
    let attempt = new_id("chk");
    let claimed = sqlx::query(
        "INSERT INTO checkout_attempts (id, user_id, plan_id, price_interval, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&attempt)
    .bind(user_id)
    .bind(plan_id)
    .bind(interval)
    .bind(AttemptState::Creating.as_str())
    .bind(db::now())
    .execute(&db.pool)
    .await;
    match claimed {
        Ok(_) => Ok(Some(attempt)),
        Err(e) if db::is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes an attempt whose session was never made.
pub async fn remove(db: &Db, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM checkout_attempts WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Records the session Stripe made for the attempt: `open`.
pub async fn opened(
    db: &Db,
    id: &str,
    session: &str,
    url: &str,
    expires_at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE checkout_attempts SET stripe_session_id = $1, url = $2, status = $3, \
         expires_at = $4 WHERE id = $5",
    )
    .bind(session)
    .bind(url)
    .bind(AttemptState::Open.as_str())
    .bind(expires_at)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Sets an attempt's state.
pub async fn set_state(db: &Db, id: &str, state: AttemptState) -> sqlx::Result<()> {
    sqlx::query("UPDATE checkout_attempts SET status = $1 WHERE id = $2")
        .bind(state.as_str())
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Retires the user's attempts still `creating` that were claimed before `before` (wall-clock
/// seconds; their request is over, so their process died): `failed`. Whether there was one.
pub async fn fail_creating(db: &Db, user_id: &str, before: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE checkout_attempts SET status = $1 \
         WHERE user_id = $2 AND status = $3 AND created_at < $4",
    )
    .bind(AttemptState::Failed.as_str())
    .bind(user_id)
    .bind(AttemptState::Creating.as_str())
    .bind(before)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// An attempt as stored.
pub struct Attempt {
    /// Its id.
    pub id: String,
    /// Its state.
    pub state: AttemptState,
    /// The plan chosen.
    pub plan_id: String,
    /// `month` or `year`.
    pub interval: String,
    /// Stripe's session, once made.
    pub session: Option<String>,
    /// The session's URL, once made.
    pub url: Option<String>,
    /// When the session expires, by Stripe's clock.
    pub expires_at: Option<i64>,
}

impl<'r> sqlx::FromRow<'r, AnyRow> for Attempt {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        let state: String = row.try_get("status")?;
        Ok(Self {
            id: row.try_get("id")?,
            state: AttemptState::parse(&state).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "status".into(),
                source: format!("unknown checkout attempt state {state:?}").into(),
            })?,
            plan_id: row.try_get("plan_id")?,
            interval: row.try_get("price_interval")?,
            session: row.try_get("stripe_session_id")?,
            url: row.try_get("url")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

const COLUMNS: &str = "SELECT id, status, plan_id, price_interval, stripe_session_id, url, expires_at \
     FROM checkout_attempts";

/// The user's live attempts (`creating` or `open`; at most one).
pub async fn live(db: &Db, user_id: &str) -> sqlx::Result<Vec<Attempt>> {
    let sql = format!("{COLUMNS} WHERE user_id = $1 AND status IN ($2, $3)");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(AttemptState::Creating.as_str())
        .bind(AttemptState::Open.as_str())
        .fetch_all(&db.pool)
        .await
}

/// The user's attempts whose sessions may still be payable by Stripe's clock: open ones, and
/// those tollgate let go as expired that ended after `ended_after`.
pub async fn closable(db: &Db, user_id: &str, ended_after: i64) -> sqlx::Result<Vec<Attempt>> {
    let sql = format!(
        "{COLUMNS} WHERE user_id = $1 AND stripe_session_id IS NOT NULL \
         AND (status = $2 OR (status = $3 AND expires_at > $4))"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(AttemptState::Open.as_str())
        .bind(AttemptState::Expired.as_str())
        .bind(ended_after)
        .fetch_all(&db.pool)
        .await
}
