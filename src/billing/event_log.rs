//! The `stripe_events` table: every verified event, once (its id is the key), with its outcome.
//! Its stamps also bound how far tollgate's clock runs ahead of Stripe's.

use sqlx::AnyConnection;

use crate::db;

/// How many of the latest verified events bound the clocks' difference (see [`clock_lead`]).
const CLOCK_SAMPLES: i64 = 64;

/// How far tollgate's clock runs ahead of Stripe's, at most (negative when it runs behind), from
/// the latest verified events: Stripe stamps `created` by its clock before it sends an event and
/// tollgate stamps `received_at` by its own after, so `received_at − created` is the lead plus
/// the delivery time, and the least over recent events, plus one second for both stamps'
/// truncation to seconds, is an upper bound of the lead. `None` before any event has arrived.
pub async fn clock_lead(db: &db::Db) -> sqlx::Result<Option<i64>> {
    let row: (Option<i64>,) = sqlx::query_as(
        "SELECT MIN(received_at - created) FROM \
           (SELECT received_at, created FROM stripe_events ORDER BY received_at DESC LIMIT $1) recent",
    )
    .bind(CLOCK_SAMPLES)
    .fetch_one(&db.pool)
    .await?;
    Ok(row.0.map(|lead| lead + 1))
}

/// Stores a verified event inside the caller's transaction, its outcome `applied` until
/// [`set_outcome`] says otherwise. `None` when the event was stored before (a duplicate, or a
/// concurrent delivery to another instance); otherwise the user of the customer it names, found
/// by the same statement.
pub async fn insert(
    conn: &mut AnyConnection,
    event: &Stored<'_>,
) -> sqlx::Result<Option<Option<String>>> {
    let inserted: Option<(Option<String>,)> = sqlx::query_as(
        "INSERT INTO stripe_events (id, type, created, customer_id, outcome, received_at) \
         VALUES ($1, $2, $3, $4, 'applied', $5) ON CONFLICT (id) DO NOTHING \
         RETURNING (SELECT user_id FROM billing_customers \
                    WHERE stripe_customer_id = $4 AND deleted = 0)",
    )
    .bind(event.id)
    .bind(event.kind)
    .bind(event.created)
    .bind(event.customer)
    .bind(event.received_at)
    .fetch_optional(conn)
    .await?;
    Ok(inserted.map(|(user,)| user))
}

/// An event as it is stored.
pub struct Stored<'a> {
    /// Stripe's event id.
    pub id: &'a str,
    /// Its type, as Stripe names it.
    pub kind: &'a str,
    /// When Stripe created it, by Stripe's clock.
    pub created: i64,
    /// The customer it names.
    pub customer: Option<&'a str>,
    /// When it arrived, by tollgate's clock (as the moments of asking Stripe are; see
    /// [`clock_lead`]).
    pub received_at: i64,
}

/// Records what became of a stored event.
pub async fn set_outcome(conn: &mut AnyConnection, id: &str, outcome: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE stripe_events SET outcome = $1 WHERE id = $2")
        .bind(outcome)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes the Stripe work event `id` still needs after its commit (see migration 0019).
pub async fn set_follow_up(conn: &mut AnyConnection, id: &str, work: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE stripe_events SET follow_up = $1 WHERE id = $2")
        .bind(work)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// What a redelivery of a stored event finds of its Stripe work.
#[derive(Debug, PartialEq, Eq)]
pub enum Work {
    /// None left.
    Done,
    /// Taken since `settled`: it may still be under way elsewhere.
    InProgress,
    /// Left undone by a process that stopped, or released after a failed call: now taken by
    /// this delivery.
    Taken(String),
}

/// Takes over the work event `id` has left undone, unless it was taken after `settled`
/// (tollgate's clock); `now` is when. Of two redeliveries racing for it, one takes it.
pub async fn take_follow_up(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
    settled: i64,
) -> sqlx::Result<Work> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT follow_up FROM stripe_events WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((Some(work),)) = row else {
        return Ok(Work::Done);
    };
    let taken = sqlx::query(
        "UPDATE stripe_events SET follow_up_taken = $1 WHERE id = $2 AND follow_up IS NOT NULL \
         AND COALESCE(follow_up_taken, received_at) < $3",
    )
    .bind(now)
    .bind(id)
    .bind(settled)
    .execute(conn)
    .await?;
    Ok(if taken.rows_affected() == 1 {
        Work::Taken(work)
    } else {
        Work::InProgress
    })
}

/// Releases the work of event `id` after its Stripe call failed: the next redelivery takes it
/// at once.
pub async fn release_follow_up(db: &db::Db, id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE stripe_events SET follow_up_taken = 0 WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Marks the work of event `id` done.
pub async fn follow_up_done(db: &db::Db, id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE stripe_events SET follow_up = NULL WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}
