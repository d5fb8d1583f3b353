//! Reading the table: rows as access decisions, pages and the reconciler need them, and a
//! member (a user with their subscriptions) in one statement.

use sqlx::{Row as _, any::AnyRow};

use crate::{auth::users::User, billing::status::Status, db};

/// A row of the table, as access decisions and pages need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `sub_…`.
    pub id: String,
    /// Stripe status.
    pub status: Status,
    /// Catalog plan, when the price maps to one.
    pub plan_id: Option<String>,
    /// End of the current period.
    pub current_period_end: Option<i64>,
    /// 0 or 1.
    pub cancel_at_period_end: bool,
    /// Scheduled cancellation.
    pub cancel_at: Option<i64>,
    /// Trial end.
    pub trial_end: Option<i64>,
    /// Start of the current past-due episode.
    pub past_due_since: Option<i64>,
}

impl Row {
    /// Reads a row's columns named `{prefix}id`, `{prefix}status`, … (a join prefixes them).
    pub fn read(row: &AnyRow, prefix: &str) -> sqlx::Result<Self> {
        let column = |name: &str| format!("{prefix}{name}");
        Ok(Self {
            id: row.try_get(column("id").as_str())?,
            status: Status::parse(&row.try_get::<String, _>(column("status").as_str())?),
            plan_id: row.try_get(column("plan_id").as_str())?,
            current_period_end: row.try_get(column("current_period_end").as_str())?,
            cancel_at_period_end: row.try_get::<i64, _>(column("cancel_at_period_end").as_str())?
                != 0,
            cancel_at: row.try_get(column("cancel_at").as_str())?,
            trial_end: row.try_get(column("trial_end").as_str())?,
            past_due_since: row.try_get(column("past_due_since").as_str())?,
        })
    }
}

impl<'r> sqlx::FromRow<'r, AnyRow> for Row {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Self::read(row, "")
    }
}

/// The subscriptions of a user.
pub async fn for_user(db: &db::Db, user_id: &str) -> sqlx::Result<Vec<Row>> {
    sqlx::query_as(
        "SELECT id, status, plan_id, current_period_end, cancel_at_period_end, cancel_at, \
         trial_end, past_due_since FROM subscriptions WHERE user_id = $1 ORDER BY created_at",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await
}

/// A stored subscription and the price (and its product) it was applied with.
pub struct Priced {
    /// The row.
    pub row: Row,
    /// The plan's price.
    pub price_id: Option<String>,
    /// The price's product.
    pub product_id: Option<String>,
}

impl Priced {
    fn read(row: &AnyRow, prefix: &str) -> sqlx::Result<Self> {
        Ok(Self {
            row: Row::read(row, prefix)?,
            price_id: row.try_get(format!("{prefix}price_id").as_str())?,
            product_id: row.try_get(format!("{prefix}product_id").as_str())?,
        })
    }
}

impl<'r> sqlx::FromRow<'r, AnyRow> for Priced {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Self::read(row, "")
    }
}

/// One subscription's row and price, read on `conn` (inside a transaction).
pub async fn priced_on(conn: &mut sqlx::AnyConnection, id: &str) -> sqlx::Result<Option<Priced>> {
    sqlx::query_as(
        "SELECT id, status, plan_id, current_period_end, cancel_at_period_end, cancel_at, \
         trial_end, past_due_since, price_id, product_id FROM subscriptions WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The subscriptions of a customer, with their prices.
pub async fn of_customer(db: &db::Db, customer: &str) -> sqlx::Result<Vec<Priced>> {
    sqlx::query_as(
        "SELECT id, status, plan_id, current_period_end, cancel_at_period_end, cancel_at, \
         trial_end, past_due_since, price_id, product_id FROM subscriptions WHERE customer_id = $1",
    )
    .bind(customer)
    .fetch_all(&db.pool)
    .await
}

/// One row of the member query: the user's columns, their roles (a JSON array), and one
/// subscription's (all `NULL` when the user has none).
struct MemberRow {
    user: User,
    roles: Option<String>,
    subscription: Option<Priced>,
}

impl<'r> sqlx::FromRow<'r, AnyRow> for MemberRow {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        let subscription = match row.try_get::<Option<String>, _>("sub_id")? {
            None => None,
            Some(_) => Some(Priced::read(row, "sub_")?),
        };
        Ok(Self {
            user: User::from_row(row)?,
            roles: row.try_get("roles")?,
            subscription,
        })
    }
}

/// A user with their subscriptions (oldest first) and their roles (sorted), as one statement
/// reads them.
pub struct MemberRows {
    /// The user's row.
    pub user: User,
    /// Their subscriptions, oldest first.
    pub subscriptions: Vec<Priced>,
    /// Their roles, sorted.
    pub roles: Vec<String>,
}

/// The member statement with `$agg` as the engine's aggregate of the role names into a JSON
/// array (one cache miss is one statement: no second round trip for the roles).
macro_rules! member_sql {
    ($agg:literal) => {
        concat!(
            "SELECT u.id, u.email, u.password_hash, u.email_verified, u.session_epoch, \
                    u.suspended_at, \
                    (SELECT ",
            $agg,
            " FROM user_roles r WHERE r.user_id = u.id) AS roles, \
                    s.id AS sub_id, s.status AS sub_status, s.plan_id AS sub_plan_id, \
                    s.current_period_end AS sub_current_period_end, \
                    s.cancel_at_period_end AS sub_cancel_at_period_end, \
                    s.cancel_at AS sub_cancel_at, s.trial_end AS sub_trial_end, \
                    s.past_due_since AS sub_past_due_since, s.price_id AS sub_price_id, \
                    s.product_id AS sub_product_id \
             FROM users u LEFT JOIN subscriptions s ON s.user_id = u.id WHERE u.id = $1 \
             ORDER BY s.created_at"
        )
    };
}

/// A user with their subscriptions and roles, read in one statement; `None` when the user does
/// not exist. The roles come as one JSON array, so every name reads back exactly as stored
/// (whatever an operator wrote by hand); a list that does not read fails the statement.
pub async fn member(db: &db::Db, user_id: &str) -> sqlx::Result<Option<MemberRows>> {
    let sql = match db.engine {
        db::Engine::Sqlite => member_sql!("json_group_array(r.role)"),
        db::Engine::Postgres => member_sql!("json_agg(r.role)::text"),
    };
    let rows: Vec<MemberRow> = sqlx::query_as(sql)
        .bind(user_id)
        .fetch_all(&db.pool)
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let user = first.user.clone();
    // PostgreSQL's aggregate of no rows is NULL, SQLite's `[]`.
    let mut roles: Vec<String> = match first.roles.as_deref() {
        None => Vec::new(),
        Some(list) => serde_json::from_str(list).map_err(|e| sqlx::Error::Decode(e.into()))?,
    };
    roles.sort_unstable();
    let subscriptions = rows.into_iter().filter_map(|r| r.subscription).collect();
    Ok(Some(MemberRows {
        user,
        subscriptions,
        roles,
    }))
}

/// What the access watch looks at again: the subscriptions that changed since `changed_since`
/// (the wall clock), and the users whose access may have ended by time alone in (`from`, `to`]
/// (Stripe's clock): a grace period of `grace_secs`, a scheduled cancellation, a trial.
#[derive(Debug, Default)]
pub struct Recheck {
    /// Each changed subscription with its user and which change it is at.
    pub changed: Vec<Changed>,
    /// The users whose access may have ended by time.
    pub timed: Vec<String>,
}

/// A changed subscription, as the access watch finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// The subscription.
    pub id: String,
    /// Its user.
    pub user_id: String,
    /// How many writes it has had (migration 0029).
    pub changes: i64,
    /// When it was last written (the wall clock of the instance that wrote it).
    pub updated_at: i64,
}

/// The subscriptions and users to look at again (see [`Recheck`]).
pub async fn to_recheck(
    db: &db::Db,
    changed_since: i64,
    from: i64,
    to: i64,
    grace_secs: i64,
) -> sqlx::Result<Recheck> {
    // One indexed range per reason (migration 0026), so a look costs what it finds, not a scan of
    // every subscription.
    let changed: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT id, user_id, changes, updated_at FROM subscriptions \
         WHERE updated_at >= $1 AND user_id IS NOT NULL",
    )
    .bind(changed_since)
    .fetch_all(&db.pool)
    .await?;
    let timed: Vec<(String,)> = sqlx::query_as(
        "SELECT user_id FROM subscriptions \
           WHERE past_due_since > $3 AND past_due_since <= $4 AND user_id IS NOT NULL \
         UNION SELECT user_id FROM subscriptions \
           WHERE cancel_at > $1 AND cancel_at <= $2 AND user_id IS NOT NULL \
         UNION SELECT user_id FROM subscriptions \
           WHERE current_period_end > $1 AND current_period_end <= $2 \
           AND cancel_at_period_end = 1 AND user_id IS NOT NULL \
         UNION SELECT user_id FROM subscriptions \
           WHERE trial_end > $1 AND trial_end <= $2 AND user_id IS NOT NULL",
    )
    .bind(from)
    .bind(to)
    .bind(from - grace_secs)
    .bind(to - grace_secs)
    .fetch_all(&db.pool)
    .await?;
    let changed = changed
        .into_iter()
        .map(|(id, user_id, changes, updated_at)| Changed {
            id,
            user_id,
            changes,
            updated_at,
        })
        .collect();
    Ok(Recheck {
        changed,
        timed: timed.into_iter().map(|(id,)| id).collect(),
    })
}
