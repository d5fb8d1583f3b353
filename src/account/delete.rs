//! Account deletion: after the password is re-entered, open Checkout Sessions are expired and every
//! live subscription (as Stripe lists them) is canceled in Stripe at once (see
//! `billing::closing`), then the user's personal data is removed (the user row and, through it,
//! sessions, tokens and checkout attempts; queued email to the address). The Stripe customer's
//! mapping is kept, marked deleted and detached, so later events for it are recorded as orphans.
//! The address is free for a new sign-up. If Stripe cannot be reached, nothing is changed (503).

use axum::{
    Router,
    extract::{FromRef, State},
    http::StatusCode,
    routing::post,
};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Auth, confirm_owner, users};
use crate::gate::{CurrentUser, SessionUser};
use crate::{
    billing::{Billing, closing, customers},
    email::outbox,
    error::Result,
    extract::ApiJson,
};

/// The route.
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    Auth: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new().route("/api/account/delete", post(delete_account_route))
}

/// Deletes the signed-in user's account.
pub async fn delete_account(
    state: &Billing,
    current: &CurrentUser,
    password: Option<&str>,
) -> Result<()> {
    let user = &current.user;
    confirm_owner(state, current.signed_in(), password).await?;
    // A request that began before a reset or another revocation touches nothing, not even Stripe.
    let mut check = state.db.begin().await?;
    current.signed_in().hold_on(&mut check).await?;
    check.commit().await?;
    closing::close_for_deletion(state, &user.id).await?;
    let mut tx = state.db.begin().await?;
    current.signed_in().hold_on(&mut tx).await?;
    remove_on(state, &mut tx, user, &user.id).await?;
    state.commit_for(tx, &user.id).await?;
    // The row (and with it every session) is gone; drop this session's state too.
    current.session.flush().await?;
    tracing::info!(user = %user.id, "account deleted");
    Ok(())
}

/// Deletes `user`'s account on an administrator's word (`actor`): as [`delete_account`] without
/// the owner's password; their subscriptions are canceled in Stripe first.
pub async fn delete_by_admin(state: &Billing, user: &users::User, actor: &str) -> Result<()> {
    closing::close_for_deletion(state, &user.id).await?;
    let mut tx = state.db.begin().await?;
    remove_on(state, &mut tx, user, actor).await?;
    state.commit_for(tx, &user.id).await?;
    tracing::info!(user = %user.id, admin = %actor, "account deleted by an administrator");
    Ok(())
}

/// The user's personal data goes (the row, and through it sessions, tokens and attempts; queued
/// email to the address); the Stripe customer's mapping stays, detached; the event names `actor`.
async fn remove_on(
    state: &Billing,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user: &users::User,
    actor: &str,
) -> Result<()> {
    customers::detach_user_on(tx, &user.id).await?;
    outbox::drop_pending_to(tx, &user.email).await?;
    users::delete_on(tx, &user.id).await?;
    let entry = crate::audit::Entry {
        kind: crate::audit::Kind::AccountDeleted,
        actor,
        subject: Some(&user.id),
        payload: json!({}),
    };
    crate::audit::record(tx, state.clock.now(), entry).await?;
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct DeleteBody {
    /// Absent for an account without a password (a recent proof stands in).
    password: Option<String>,
}

/// Deletes the signed-in account (the password is required): subscriptions are canceled in Stripe first.
#[utoipa::path(post, path = "/api/account/delete", tag = "accounts", request_body = DeleteBody, responses((status = 204, description = "Deleted: subscriptions canceled in Stripe, personal data removed")))]
async fn delete_account_route(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    ApiJson(body): ApiJson<DeleteBody>,
) -> Result<StatusCode> {
    delete_account(&state, &current, body.password.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
