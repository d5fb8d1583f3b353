//! The subscription-state table: one row per Stripe subscription, following Stripe whatever
//! order, how often and how late its events arrive.
//!
//! Ordering rule: every state carries the Stripe timestamp it reflects (`stripe_updated`, from
//! `event.created`, or, for a state fetched from Stripe, a stamp that never trusts tollgate's clock
//! to agree with Stripe's: see [`BeforeFetch`]). A newer
//! state replaces an older one; an older state is recorded and dropped. `event.created` has
//! one-second resolution, so equal event stamps tie: then, and only then, the caller re-fetches
//! the subscription from Stripe and applies that (the authority, which wins ties) instead of
//! guessing. A terminal state (`canceled`, `incomplete_expired`) is never left for an event, not
//! even a newer one: Stripe never brings such a subscription back, so a live state after one is
//! not applied (`stale`). Only a state fetched from Stripe itself may (repairing a row changed by
//! hand: `tollgate stripe sync`).

mod rows;
mod snapshot;

use sqlx::{Any, Transaction};

pub use rows::{
    Changed, MemberRows, Priced, Recheck, Row, for_user, member, of_customer, priced_on, to_recheck,
};
pub use snapshot::{Item, Snapshot, id_of};

use super::{event_log, status::Status};
use crate::{base::Base, billing::catalog::Catalog, db};

/// What states fetched from Stripe are stamped from, read *before* the request is sent: the rows'
/// stamps then, and the moment of asking by Stripe's clock. Read after, an event landing during
/// the request would lend its stamp to the older state fetched, which would then replace it.
///
/// A fetched state must win over the row it was fetched for and lose to any later event, whatever
/// the skew between tollgate's clock and Stripe's. It is stamped with the row's stamp before the
/// fetch (applied with `>=`, so it wins over it) or, when later, the moment of asking by Stripe's
/// clock as far as tollgate can know it: its own clock less the bound of its lead from
/// [`event_log::clock_lead`]. While the clocks' difference holds that is never later than Stripe's clock
/// stood when it answered. Should it be later (tollgate's clock was stepped, or instances' clocks
/// differ), [`apply`] settles every event that loses to such a stamp by fetching again, so no
/// event is ever dropped for it. Stamped too early, an event created before the fetch but
/// delivered after it can replace the fetched state for a moment; the events that follow it put
/// the row right again. (A state re-fetched to settle a tie is stamped with the tie's stamp.)
pub struct BeforeFetch {
    rows: std::collections::HashMap<String, i64>,
    by_stripe_clock: i64,
}

impl BeforeFetch {
    /// Before fetching the subscriptions of `customer`, asked at `asked_at` (tollgate's clock).
    pub async fn of_customer(db: &db::Db, customer: &str, asked_at: i64) -> sqlx::Result<Self> {
        let sql = "SELECT id, stripe_updated FROM subscriptions WHERE customer_id = $1";
        Self::read(db, sql, customer, asked_at).await
    }

    /// Before fetching the subscription `id`.
    pub async fn of_subscription(db: &db::Db, id: &str, asked_at: i64) -> sqlx::Result<Self> {
        let sql = "SELECT id, stripe_updated FROM subscriptions WHERE id = $1";
        Self::read(db, sql, id, asked_at).await
    }

    async fn read(
        db: &db::Db,
        sql: &'static str,
        value: &str,
        asked_at: i64,
    ) -> sqlx::Result<Self> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql).bind(value).fetch_all(&db.pool).await?;
        // Before any event has arrived, tollgate's own clock: a stamp that turns out ahead of
        // Stripe's is harmless (see above).
        let by_stripe_clock = event_log::clock_lead(db)
            .await?
            .map_or(asked_at, |lead| asked_at - lead);
        Ok(Self {
            rows: rows.into_iter().collect(),
            by_stripe_clock,
        })
    }

    /// The stamp of the fetched state of subscription `id`.
    pub fn stamp(&self, id: &str) -> i64 {
        self.rows
            .get(id)
            .map_or(self.by_stripe_clock, |row| (*row).max(self.by_stripe_clock))
    }
}

/// Where a state and its stamp come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An event, stamped `event.created` by Stripe's clock; applied only when newer than the row.
    Event,
    /// Fetched from Stripe to settle a tie, stamped with the tie's stamp (Stripe's clock); wins
    /// over a row of that stamp.
    Settled,
    /// Fetched from Stripe at another moment, stamped by [`BeforeFetch`]'s estimate of
    /// Stripe's clock; wins over a row of that stamp, and an event that loses to it is settled by
    /// fetching again rather than dropped (the estimate is off if tollgate's clock was stepped).
    Fetched,
}

/// The ordering stamp of a state, where it comes from, and when tollgate saw it (its own clock:
/// a past-due episode that a fetched state reveals starts then, not at the ordering stamp, which
/// may be the stamp of an old tie or an estimate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Orders states (see the module's rule).
    pub at: i64,
    /// Where the state comes from.
    pub source: Source,
    /// When the state was seen: `event.created` for an event, tollgate's clock when fetched.
    pub seen: i64,
}

impl Stamp {
    /// An event's state, stamped `created`.
    pub fn event(created: i64) -> Self {
        Self {
            at: created,
            source: Source::Event,
            seen: created,
        }
    }
}

/// What applying a state did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Inserted or replaced the row.
    Applied,
    /// Older than (or a terminal row's equal to) what the row holds: dropped.
    Stale,
    /// The same stamp as the row, or one the row's fetched stamp (which may run ahead of
    /// Stripe's clock) beats: the caller re-fetches from Stripe and applies that at the stamp
    /// carried, so it wins over the row.
    Tie(i64),
}

/// The upsert of one state. The ordering rule is the `WHERE` of its `DO UPDATE` (for events, with
/// `$and`: a terminal state is never left), so the database
/// applies it atomically against the latest committed row: on PostgreSQL concurrent appliers of
/// one subscription queue on the row (an absent row included: the second insert waits for the
/// first and is then ordered against it), and SQLite serialises writers anyway.
macro_rules! upsert {
    ($order:literal) => {
        upsert!($order, "")
    };
    ($order:literal, $and:literal) => {
        concat!(
            "INSERT INTO subscriptions (id, user_id, customer_id, status, plan_id, price_id, \
               quantity, current_period_end, cancel_at_period_end, cancel_at, trial_end, \
               canceled_at, ended_at, past_due_since, stripe_updated, created_at, updated_at, \
               product_id, stamp_fetched) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, \
               $17, $18) \
             ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, \
               customer_id = excluded.customer_id, status = excluded.status, \
               plan_id = excluded.plan_id, price_id = excluded.price_id, \
               product_id = excluded.product_id, \
               stamp_fetched = CASE WHEN $19 = 1 THEN subscriptions.stamp_fetched \
                 ELSE excluded.stamp_fetched END, \
               quantity = excluded.quantity, current_period_end = excluded.current_period_end, \
               cancel_at_period_end = excluded.cancel_at_period_end, \
               cancel_at = excluded.cancel_at, trial_end = excluded.trial_end, \
               canceled_at = excluded.canceled_at, ended_at = excluded.ended_at, \
               past_due_since = CASE WHEN excluded.status = 'past_due' \
                 THEN COALESCE(subscriptions.past_due_since, excluded.past_due_since) END, \
               stripe_updated = excluded.stripe_updated, updated_at = excluded.updated_at, \
               changes = subscriptions.changes + 1 \
             WHERE excluded.stripe_updated ",
            $order,
            " subscriptions.stripe_updated",
            $and
        )
    };
}

/// The upsert for a state from `source`. An event never takes a subscription out of a terminal
/// state (Stripe never brings one back); a state fetched from Stripe, the authority, may
/// (repairing a row changed by hand).
fn apply_sql(source: Source) -> &'static str {
    if source == Source::Event {
        upsert!(
            ">",
            " AND (subscriptions.status NOT IN ('canceled', 'incomplete_expired') \
               OR excluded.status IN ('canceled', 'incomplete_expired'))"
        )
    } else {
        upsert!(">=")
    }
}

/// Applies `snap`, stamped `stamp`, for `user_id`, in one statement when it applies. A fetched
/// state (just read from Stripe, see [`Source`]) also wins a tie; it loses only to a row stamped
/// later, i.e. by an event created after the request was sent. The past-due episode starts at the first sign of it (kept from the row, or this
/// state's stamp) and ends when the subscription leaves `past_due`.
pub async fn apply(
    tx: &mut Transaction<'static, Any>,
    catalog: &Catalog,
    snap: &Snapshot,
    user_id: &str,
    stamp: Stamp,
) -> sqlx::Result<Applied> {
    let Stamp {
        at: stamp,
        source,
        seen,
    } = stamp;
    let sql = apply_sql(source);
    let item = snap.plan_item(catalog);
    let plan = item.and_then(|i| i.plan(catalog)).map(|p| p.id.clone());
    let before: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT status, plan_id FROM subscriptions WHERE id = $1")
            .bind(&snap.id)
            .fetch_optional(&mut **tx)
            .await?;
    let done = sqlx::query(sql)
        .bind(&snap.id)
        .bind(user_id)
        .bind(&snap.customer)
        .bind(snap.status.as_str())
        .bind(&plan)
        .bind(item.map(|i| &i.price_id))
        .bind(item.map_or(1, |i| i.quantity))
        .bind(snap.current_period_end)
        .bind(i64::from(snap.cancel_at_period_end))
        .bind(snap.cancel_at)
        .bind(snap.trial_end)
        .bind(snap.canceled_at)
        .bind(snap.ended_at)
        .bind((snap.status == Status::PastDue).then_some(seen))
        .bind(stamp)
        .bind(db::now())
        .bind(item.and_then(|i| i.product_id.as_deref()))
        .bind(i64::from(source == Source::Fetched))
        // A settled state keeps the row's flag: its stamp is the row's, as far ahead of Stripe's
        // clock as that was, so older events must still be settled rather than dropped.
        .bind(i64::from(source == Source::Settled))
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() > 0 {
        let after = (snap.status.as_str().to_owned(), plan);
        if before.as_ref() != Some(&after) {
            record_change(tx, user_id, &snap.id, before, after, (source, seen)).await?;
        }
        return Ok(Applied::Applied);
    }
    // Not newer than the row (the rare path): an equal stamp on a live row is a tie, and so is
    // an event that loses to a fetched stamp (which a stepped clock may have put ahead of
    // Stripe's): Stripe settles both.
    let (status, updated, row_fetched): (String, i64, i64) = sqlx::query_as(
        "SELECT status, stripe_updated, stamp_fetched FROM subscriptions WHERE id = $1",
    )
    .bind(&snap.id)
    .fetch_one(&mut **tx)
    .await?;
    let settle = stamp == updated || (source == Source::Event && row_fetched != 0);
    Ok(if settle && !Status::parse(&status).is_terminal() {
        Applied::Tie(updated)
    } else {
        Applied::Stale
    })
}

/// A stored subscription whose plan is not the one the catalog gives its price (or product).
#[derive(Debug, PartialEq, Eq)]
pub struct PlanMismatch {
    /// `sub_…`.
    pub id: String,
    /// Its user (whose cached access must go when it changes); none once the account is deleted.
    pub user_id: Option<String>,
    /// Its price.
    pub price_id: String,
    /// The plan stored.
    pub stored: Option<String>,
    /// The plan the catalog maps the price to.
    pub wanted: Option<String>,
}

/// Every stored subscription whose plan differs from the catalog's plan for its price.
pub async fn plan_mismatches(db: &db::Db, catalog: &Catalog) -> sqlx::Result<Vec<PlanMismatch>> {
    type Stored = (
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
    );
    let stored: Vec<Stored> = sqlx::query_as(
        "SELECT id, user_id, price_id, product_id, plan_id FROM subscriptions \
         WHERE price_id IS NOT NULL",
    )
    .fetch_all(&db.pool)
    .await?;
    Ok(stored
        .into_iter()
        .filter_map(|(id, user_id, price_id, product_id, stored)| {
            let wanted = catalog
                .plan_for(&price_id, product_id.as_deref())
                .map(|p| p.id.clone());
            (wanted != stored).then_some(PlanMismatch {
                id,
                user_id,
                price_id,
                stored,
                wanted,
            })
        })
        .collect())
}

/// Gives every stored subscription the plan the current catalog maps its price (or product) to,
/// so the stored plan, which reports and `stripe sync` show, agrees with the access computed
/// from the price on each request. Returns how many rows changed.
pub async fn remap_plans(base: &Base, catalog: &Catalog) -> sqlx::Result<u64> {
    let db = &base.db;
    let mut changed = 0;
    // A thousand rows per transaction: a catalog change that remaps many subscriptions at
    // start-up costs one commit per thousand, not one per row.
    for chunk in plan_mismatches(db, catalog).await?.chunks(1_000) {
        let mut tx = db.begin().await?;
        for m in chunk {
            let done = sqlx::query(
                "UPDATE subscriptions SET plan_id = $1, updated_at = $2, changes = changes + 1 \
                 WHERE id = $3 AND price_id = $4",
            )
            .bind(&m.wanted)
            .bind(db::now())
            .bind(&m.id)
            .bind(&m.price_id)
            .execute(&mut *tx)
            .await?;
            changed += done.rows_affected();
        }
        tx.commit().await?;
        for user in chunk.iter().filter_map(|m| m.user_id.as_deref()) {
            base.cache.forget_user(user);
        }
    }
    if changed > 0 {
        tracing::info!(
            rows = changed,
            "subscriptions now follow the catalog's plan for their price"
        );
    }
    Ok(changed)
}

/// Marks a subscription of `user_id` canceled at `at` without waiting for Stripe's event (the
/// account is being deleted, or Stripe does not know the subscription), and forgets the user.
pub async fn cancel_locally(base: &Base, id: &str, user_id: &str, at: i64) -> sqlx::Result<()> {
    let db = &base.db;
    sqlx::query(
        "UPDATE subscriptions SET status = 'canceled', ended_at = COALESCE(ended_at, $1), \
         updated_at = $2, changes = changes + 1 WHERE id = $3",
    )
    .bind(at)
    .bind(db::now())
    .bind(id)
    .execute(&db.pool)
    .await?;
    base.cache.forget_user(user_id);
    Ok(())
}

/// Ends every subscription of a customer Stripe deleted (`at`: the event's time, which also
/// becomes their stamp unless a later state is stored).
pub async fn cancel_for_deleted_customer(
    tx: &mut Transaction<'static, Any>,
    customer: &str,
    at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE subscriptions SET status = 'canceled', ended_at = COALESCE(ended_at, $1), \
         stripe_updated = CASE WHEN stripe_updated > $1 THEN stripe_updated ELSE $1 END, \
         updated_at = $2, changes = changes + 1 WHERE customer_id = $3",
    )
    .bind(at)
    .bind(db::now())
    .bind(customer)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Appends the change of a subscription's status or plan to the audit trail, naming the Stripe
/// event that brought it (or that it was read from Stripe).
async fn record_change(
    tx: &mut Transaction<'static, Any>,
    user_id: &str,
    id: &str,
    before: Option<(String, Option<String>)>,
    (status, plan): (String, Option<String>),
    (source, seen): (Source, i64),
) -> sqlx::Result<()> {
    let from = before.map(|(status, plan)| serde_json::json!({"status": status, "plan": plan}));
    let entry = crate::audit::Entry {
        kind: crate::audit::Kind::SubscriptionChanged,
        actor: "stripe",
        subject: Some(user_id),
        payload: serde_json::json!({
            "subscription": id,
            "from": from,
            "to": {"status": status, "plan": plan},
            "stripe_event": crate::telemetry::stripe_event(),
            "read_from_stripe": source != Source::Event,
        }),
    };
    crate::audit::record(tx, seen, entry).await
}

/// True when the stored state of subscription `id` is newer than Stripe time `at` and shows the
/// subscription paid for (`active` or `trialing`): a payment failure from then was overcome (a
/// retry went through) and says nothing about now. A newer `past_due`, `unpaid` or ended state
/// does not settle it.
pub async fn paid_since(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    at: i64,
) -> sqlx::Result<bool> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT status, stripe_updated FROM subscriptions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.is_some_and(|(status, stored)| {
        stored > at && matches!(Status::parse(&status), Status::Active | Status::Trialing)
    }))
}

/// Marks the start of a past-due episode (first failed payment), if not already marked. A failure
/// older than the row's state (a late delivery, say from before a recovery) marks nothing: it
/// must never start, or restart, a grace period.
pub async fn mark_payment_failed(
    tx: &mut Transaction<'static, Any>,
    subscription: &str,
    at: i64,
) -> sqlx::Result<u64> {
    let sql = format!(
        "UPDATE subscriptions SET past_due_since = COALESCE(past_due_since, $1), updated_at = $2, \
         changes = changes + 1 \
         WHERE id = $3 AND status NOT IN {} AND stripe_updated <= $1",
        Status::TERMINAL_SQL
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(at)
        .bind(db::now())
        .bind(subscription)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn an_event_upsert_names_the_terminal_states() {
        let sql = super::apply_sql(super::Source::Event);
        assert!(sql.contains(&format!(
            "subscriptions.status NOT IN {}",
            Status::TERMINAL_SQL
        )));
        assert!(sql.contains(&format!("excluded.status IN {}", Status::TERMINAL_SQL)));
        assert!(!super::apply_sql(super::Source::Fetched).contains("NOT IN"));
    }
}
