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
    app::AppState,
    auth::users::{User, new_id},
    billing::stripe::{idempotent, retrying},
    db,
    error::AppError,
};

/// The metadata key that names the tollgate user on Stripe objects.
pub const USER_METADATA_KEY: &str = "tollgate_user_id";

/// The user's Stripe customer id, if one exists (and was not deleted).
pub async fn customer_of(state: &AppState, user_id: &str) -> Result<Option<String>, AppError> {
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

/// The user's customer, created in Stripe on first use.
pub async fn ensure_customer(state: &AppState, user: &User) -> Result<String, AppError> {
    let now = db::now();
    // A deleted customer is never reused: its mapping starts afresh, with a new attempt key, and
    // the customer created next re-maps the user.
    sqlx::query(
        "UPDATE billing_customers SET stripe_customer_id = NULL, deleted = 0,          idempotency_key = $1, updated_at = $2 WHERE user_id = $3 AND deleted = 1",
    )
    .bind(new_id("idem_customer"))
    .bind(now)
    .bind(&user.id)
    .execute(&state.db.pool)
    .await?;
    // Claim the mapping first; a concurrent request finds this row and its key.
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
    if let Some(id) = existing {
        return Ok(id);
    }
    let metadata = HashMap::from([(USER_METADATA_KEY.to_owned(), user.id.clone())]);
    let mut request = stripe_core::customer::CreateCustomer::new()
        .email(user.email.clone())
        .metadata(metadata);
    if let Some(clock) = &state.config.stripe_test_clock {
        request = request.test_clock(clock.as_str());
    }
    let created = retrying(|| {
        request
            .customize()
            .request_strategy(idempotent(&key))
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

/// Makes the Stripe customer's email follow the user's (best effort: a failure is logged and the
/// next change or `stripe sync` catches up). Stripe never changes the login identity.
pub async fn sync_email(state: &AppState, user: &User) {
    let customer = match customer_of(state, &user.id).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the customer to sync its email");
            return;
        }
    };
    if let Err(e) = set_email(state, &customer, &user.email).await {
        tracing::warn!(error = %e, customer, "Stripe customer email not updated");
    }
}

/// Sets the Stripe customer's email.
pub async fn set_email(state: &AppState, customer: &str, email: &str) -> Result<(), AppError> {
    let request = stripe_core::customer::UpdateCustomer::new(customer).email(email);
    let key = new_id("idem_email");
    retrying(|| {
        request
            .customize()
            .request_strategy(idempotent(&key))
            .send(&state.stripe.client)
    })
    .await
    .map(|_| ())
}
