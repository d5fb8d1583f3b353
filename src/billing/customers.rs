//! One Stripe customer per user, created lazily at the first checkout.
//!
//! The mapping row is claimed in the database (unique `user_id`) with the idempotency key of the
//! one creation attempt *before* Stripe is called. Concurrent requests for the same user read the
//! same key, so Stripe (and the simulator) answer them all with the same customer: never two
//! customers (while the first is in flight the others get 409 and retry with the key). If Stripe
//! cannot be reached the request that made the unfinished claim removes it again, leaving no local
//! change.

use std::collections::HashMap;

use stripe::StripeRequest as _;

use crate::{
    auth::users::User,
    billing::Billing,
    billing::stripe::{absent_as_none, idempotent, is_missing, retrying_with_key},
    db,
    error::AppError,
    ids::new_id,
};

/// The metadata key that names the tollgate user on Stripe objects.
pub const USER_METADATA_KEY: &str = "tollgate_user_id";

/// The user's Stripe customer id, if one exists (and was not deleted).
pub async fn customer_of(state: &Billing, user_id: &str) -> Result<Option<String>, AppError> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1 AND deleted = 0",
    )
    .bind(user_id)
    .fetch_optional(&state.db.pool)
    .await?;
    Ok(row.and_then(|r| r.0))
}

/// The user a Stripe customer belongs to; `None` for unknown and deleted customers (orphans).
pub async fn user_of(
    conn: &mut sqlx::AnyConnection,
    customer: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT user_id FROM billing_customers WHERE stripe_customer_id = $1 AND deleted = 0",
    )
    .bind(customer)
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(|r| r.0))
}

/// Marks `customer` deleted (Stripe deleted it, or no longer knows it): it is never used again.
pub async fn mark_deleted(
    conn: &mut sqlx::AnyConnection,
    customer: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE billing_customers SET deleted = 1, updated_at = $1 WHERE stripe_customer_id = $2",
    )
    .bind(db::now())
    .bind(customer)
    .execute(conn)
    .await?;
    Ok(())
}

/// True when Stripe refused because the customer named in the call is missing or deleted.
pub fn is_missing_customer(err: &stripe::StripeError) -> bool {
    matches!(err, stripe::StripeError::Stripe(api, _)
        if super::stripe::is_missing(err) && api.param.as_deref() == Some("customer"))
}

/// The user's row of `billing_customers` as [`ensure_customer`] found it.
struct Mapping {
    /// This request made the row (and may drop it again if Stripe refuses).
    claimed: bool,
    /// The customer, when one is mapped already.
    existing: Option<String>,
    /// The idempotency key every request creating this customer uses.
    key: String,
}

/// Claims the user's mapping (a concurrent request finds this row and its key). A deleted
/// customer is never reused: its mapping starts afresh, with a new attempt key, and the customer
/// created next re-maps the user.
async fn claim_mapping(state: &Billing, user: &User) -> Result<Mapping, AppError> {
    let now = db::now();
    sqlx::query(
        "UPDATE billing_customers SET stripe_customer_id = NULL, deleted = 0, \
         idempotency_key = $1, updated_at = $2 WHERE user_id = $3 AND deleted = 1",
    )
    .bind(new_id("idem_customer"))
    .bind(now)
    .bind(&user.id)
    .execute(&state.db.pool)
    .await?;
    let claimed = sqlx::query(
        "INSERT INTO billing_customers (id, user_id, idempotency_key, deleted, created_at, updated_at) \
         VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(new_id("bc"))
    .bind(&user.id)
    .bind(new_id("idem_customer"))
    .bind(now)
    .execute(&state.db.pool)
    .await?
    .rows_affected()
        == 1;
    let (existing, key): (Option<String>, String) = sqlx::query_as(
        "SELECT stripe_customer_id, idempotency_key FROM billing_customers WHERE user_id = $1",
    )
    .bind(&user.id)
    .fetch_one(&state.db.pool)
    .await?;
    Ok(Mapping {
        claimed,
        existing,
        key,
    })
}

/// The user's customer, created in Stripe on first use.
pub async fn ensure_customer(state: &Billing, user: &User) -> Result<String, AppError> {
    let mapping = claim_mapping(state, user).await?;
    if let Some(id) = mapping.existing {
        return Ok(id);
    }
    let (claimed, key) = (mapping.claimed, mapping.key);
    let metadata = HashMap::from([(USER_METADATA_KEY.to_owned(), user.id.clone())]);
    let mut request = stripe_core::customer::CreateCustomer::new()
        .email(user.email.clone())
        .metadata(metadata);
    if let Some(clock) = &state.config.stripe_test_clock {
        request = request.test_clock(clock.as_str());
    }
    let created = retrying_with_key(&key, |key| {
        request
            .customize()
            .request_strategy(idempotent(key))
            .send(&state.stripe.client)
    })
    .await;
    let customer = match created {
        Ok(c) => c,
        // Nothing half-done: drop our unfinished claim (a finished one is kept). Only the request
        // that made the claim drops it: others using its key must not pull it from under it.
        Err(e) if !claimed => return Err(e),
        Err(e) => {
            sqlx::query(
                "DELETE FROM billing_customers WHERE user_id = $1 AND stripe_customer_id IS NULL \
                 AND idempotency_key = $2",
            )
            .bind(&user.id)
            .bind(&key)
            .execute(&state.db.pool)
            .await?;
            return Err(e);
        }
    };
    let id = customer.id.to_string();
    sqlx::query(
        "INSERT INTO billing_customers (id, user_id, stripe_customer_id, idempotency_key, deleted, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 0, $5, $5) \
         ON CONFLICT (user_id) DO UPDATE SET \
           stripe_customer_id = COALESCE(billing_customers.stripe_customer_id, excluded.stripe_customer_id), \
           updated_at = excluded.updated_at",
    )
    .bind(new_id("bc"))
    .bind(&user.id)
    .bind(&id)
    .bind(&key)
    .bind(db::now())
    .execute(&state.db.pool)
    .await?;
    tracing::info!(user = %user.id, customer = %id, "Stripe customer ready");
    Ok(customer_of(state, &user.id).await?.unwrap_or(id))
}

/// Queues `email` for the user's Stripe customer, in the transaction that changes the user's
/// address, so the change reaches Stripe even if this process stops right after the commit.
/// Nothing is queued for a user without a customer: the customer created later gets the address
/// of that time.
pub async fn queue_email_sync(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    email: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE billing_customers SET email_to_sync = $1, email_sync_at = $2, \
           email_sync_attempts = 0, email_sync_seq = email_sync_seq + 1, updated_at = $2 \
         WHERE user_id = $3 AND deleted = 0 AND stripe_customer_id IS NOT NULL",
    )
    .bind(email)
    .bind(now)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The delay before attempt `attempts + 1` of a queued email change: the configured base,
/// doubled at every failure, at most an hour.
fn retry_delay(base: u64, attempts: i64) -> i64 {
    let doubled = base.saturating_mul(1u64 << attempts.clamp(0, 20));
    doubled.min(3_600) as i64
}

/// A queued email change.
struct DueChange {
    id: String,
    customer: String,
    email: String,
    attempts: i64,
    seq: i64,
}

impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for DueChange {
    fn from_row(row: &'r sqlx::any::AnyRow) -> sqlx::Result<Self> {
        use sqlx::Row as _;
        Ok(Self {
            id: row.try_get("id")?,
            customer: row.try_get("stripe_customer_id")?,
            email: row.try_get("email_to_sync")?,
            attempts: row.try_get("email_sync_attempts")?,
            seq: row.try_get("email_sync_seq")?,
        })
    }
}

/// Claims a due change (compare-and-set on its queue number and attempts): its next attempt moves
/// to `next`. False when another instance claimed it, or it changed, first.
async fn claim_change(
    db: &db::Db,
    id: &str,
    seq: i64,
    attempts: i64,
    next: i64,
    now: i64,
) -> sqlx::Result<bool> {
    let claimed = sqlx::query(
        "UPDATE billing_customers SET email_sync_at = $1, email_sync_attempts = $2 \
         WHERE id = $3 AND email_sync_seq = $4 AND email_sync_attempts = $5 \
           AND email_sync_at <= $6",
    )
    .bind(next)
    .bind(attempts + 1)
    .bind(id)
    .bind(seq)
    .bind(attempts)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// Pushes every queued email change that is due to Stripe. Each row is claimed first (its next
/// attempt moved on, compare-and-set on the queue number read), so instances never push the same
/// change at once. After a push the row is cleared only if its queue number is unchanged;
/// otherwise the address changed meanwhile, and a newer push may have landed before this older
/// one, so the user's current address is queued again (a fresh number), and pushed last.
/// Stripe refusing the address (a 4xx, which retrying cannot fix) or no longer knowing the
/// customer drops the change, with a warning (`stripe sync` reports what stays different).
/// Returns how many reached Stripe.
pub async fn push_due_emails(state: &Billing) -> Result<usize, AppError> {
    let now = state.clock.now();
    let due: Vec<DueChange> = sqlx::query_as(
        "SELECT id, stripe_customer_id, email_to_sync, email_sync_attempts, email_sync_seq \
         FROM billing_customers \
         WHERE email_sync_at <= $1 AND email_to_sync IS NOT NULL AND deleted = 0 \
           AND stripe_customer_id IS NOT NULL \
         ORDER BY email_sync_at LIMIT 20",
    )
    .bind(now)
    .fetch_all(&state.db.pool)
    .await?;
    let mut pushed = 0;
    for change in due {
        let DueChange {
            id,
            customer,
            email,
            attempts,
            seq,
        } = change;
        let next = now + retry_delay(state.config.stripe_retry_secs, attempts);
        if !claim_change(&state.db, &id, seq, attempts, next, now).await? {
            continue;
        }
        let reached = match set_email(state, &customer, &email).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(
                    customer,
                    "Stripe no longer knows this customer; its email change is dropped"
                );
                false
            }
            Err(AppError::PaymentProviderUnavailable) => {
                tracing::warn!(
                    customer,
                    attempt = attempts + 1,
                    "Stripe unreachable; the customer's email change will be tried again"
                );
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, customer,
                    "Stripe refused the customer's new email; the change is dropped");
                false
            }
        };
        let cleared = sqlx::query(
            "UPDATE billing_customers SET email_to_sync = NULL, email_sync_at = NULL, \
               email_sync_attempts = 0 \
             WHERE id = $1 AND email_sync_seq = $2",
        )
        .bind(&id)
        .bind(seq)
        .execute(&state.db.pool)
        .await?;
        if cleared.rows_affected() == 0 && reached {
            sqlx::query(
                "UPDATE billing_customers SET \
                   email_to_sync = (SELECT email FROM users WHERE users.id = billing_customers.user_id), \
                   email_sync_at = $1, email_sync_attempts = 0, email_sync_seq = email_sync_seq + 1 \
                 WHERE id = $2 AND user_id IS NOT NULL AND deleted = 0",
            )
            .bind(now)
            .bind(&id)
            .execute(&state.db.pool)
            .await?;
        }
        pushed += usize::from(reached);
    }
    Ok(pushed)
}

/// Pushes queued email changes as they fall due, for as long as the app runs.
pub async fn email_sync_worker(state: Billing) {
    loop {
        if let Err(e) = push_due_emails(&state).await {
            tracing::warn!(error = %e, "customer email sync failed");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Sets the Stripe customer's email; `false` when Stripe no longer knows the customer.
pub async fn set_email(state: &Billing, customer: &str, email: &str) -> Result<bool, AppError> {
    let request = stripe_core::customer::UpdateCustomer::new(customer).email(email);
    let key = new_id("idem_email");
    let answer = retrying_with_key(&key, |key| {
        let sent = request
            .customize()
            .request_strategy(idempotent(key))
            .send(&state.stripe.client);
        async move { absent_as_none(sent.await, is_missing) }
    })
    .await?;
    Ok(answer.is_some())
}

/// True when `customer` belonged to an account that was deleted (mapping kept, user detached).
pub async fn of_deleted_account(
    conn: &mut sqlx::AnyConnection,
    customer: &str,
) -> Result<bool, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM billing_customers WHERE stripe_customer_id = $1 AND deleted = 1 \
         AND user_id IS NULL",
    )
    .bind(customer)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Lets go of the user's customer (inside the transaction that deletes the account): the row
/// stays, marked deleted and without its user, so later events for the customer are known to be
/// a deleted account's and a new account never reuses it.
pub async fn detach_user_on(conn: &mut sqlx::AnyConnection, user_id: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE billing_customers SET deleted = 1, user_id = NULL, updated_at = $1 \
         WHERE user_id = $2",
    )
    .bind(db::now())
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A live mapping: a Stripe customer and its user.
pub struct Mapped {
    /// The Stripe customer id.
    pub customer: String,
    /// The tollgate user id.
    pub user: String,
}

/// Every live mapping.
pub async fn mapped(db: &db::Db) -> sqlx::Result<Vec<Mapped>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT stripe_customer_id, user_id FROM billing_customers \
         WHERE deleted = 0 AND stripe_customer_id IS NOT NULL AND user_id IS NOT NULL",
    )
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(customer, user)| Mapped { customer, user })
        .collect())
}

/// Every live mapping's Stripe customer id and its user's address.
pub async fn addresses(db: &db::Db) -> sqlx::Result<HashMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.stripe_customer_id, u.email FROM billing_customers c \
         JOIN users u ON u.id = c.user_id \
         WHERE c.deleted = 0 AND c.stripe_customer_id IS NOT NULL",
    )
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.into_iter().collect())
}
