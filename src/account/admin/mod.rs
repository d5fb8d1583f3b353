//! The admin area over JSON (`/api/admin/…`): find users; read one user's access, roles,
//! devices and events; sign them out, suspend them, grant roles, delete them; manage the
//! outbound webhook endpoints (`webhooks.rs`). Only a signed-in administrator (the `admin` role,
//! by session) gets an answer; everyone else gets 404, so the area does not show that it exists.
//! Every change an administrator makes is an audit event with them as the actor (`actions.rs`,
//! which the `/admin` pages share).

pub mod actions;
pub mod webhooks;

use axum::{
    Json, Router,
    extract::{FromRef, Path, Query, State},
    http::StatusCode,
    routing::{delete, get, post, put},
};
use serde::{Deserialize, Serialize};

use crate::{
    auth::{Auth, users},
    billing::Billing,
    error::{AppError, Result},
    extract::ApiJson,
    gate::{AdminUser, UserJson},
};

pub use actions::UserView;

/// The routes.
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    Auth: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/admin/users", get(search))
        .route("/api/admin/users/{id}", get(show).delete(delete_user))
        .route("/api/admin/users/{id}/sign-out", post(sign_out))
        .route("/api/admin/users/{id}/resync", post(resync))
        .route(
            "/api/admin/users/{id}/verify-email",
            post(resend_verification),
        )
        .route("/api/admin/users/{id}/suspend", post(suspend))
        .route("/api/admin/users/{id}/unsuspend", post(unsuspend))
        .route(
            "/api/admin/users/{id}/devices/{device}",
            delete(sign_out_device),
        )
        .route(
            "/api/admin/users/{id}/roles/{role}",
            put(grant_role).delete(revoke_role),
        )
        .merge(webhooks::router())
        // A method the route does not take is 404 too (not 405 and its `Allow`): the area does
        // not show that it exists.
        // (axum still adds `Allow` to that answer; the edge takes it off: `app/edge.rs`.)
        .method_not_allowed_fallback(|| async { AppError::NotFound })
}

/// A search.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// Part of an address (case-insensitive); empty for every user.
    #[serde(default)]
    q: String,
}

/// A user in a list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Found {
    /// `usr_…`.
    pub id: String,
    /// As typed.
    pub email: String,
    /// Whether the address was proven.
    pub email_verified: bool,
}

/// Users found.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FoundUsers {
    /// At most 50, by address.
    pub users: Vec<Found>,
}

/// Finds users by part of their address.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin", params(SearchQuery),
    responses((status = 200, description = "The users found", body = FoundUsers)))]
async fn search(
    State(state): State<Billing>,
    AdminUser(_admin): AdminUser,
    Query(query): Query<SearchQuery>,
) -> Result<Json<FoundUsers>> {
    let found = users::search(&state.db, &query.q, 50).await?;
    let users = found
        .into_iter()
        .map(|u| Found {
            id: u.id,
            email: u.email,
            email_verified: u.email_verified,
        })
        .collect();
    Ok(Json(FoundUsers { users }))
}

/// One user: their access, roles, devices and events.
#[utoipa::path(get, path = "/api/admin/users/{id}", tag = "admin",
    params(("id" = String, Path, description = "The user (`usr_…`)")),
    responses((status = 200, description = "The user", body = UserView)))]
async fn show(
    State(state): State<Billing>,
    AdminUser(_admin): AdminUser,
    Path(id): Path<String>,
) -> Result<Json<UserView>> {
    let user = actions::target(&state, &id).await?;
    Ok(Json(actions::view(&state, &user).await?))
}

/// Signs the user out everywhere: every session and every token sign-in ends at once.
#[utoipa::path(post, path = "/api/admin/users/{id}/sign-out", tag = "admin",
    params(("id" = String, Path, description = "The user (`usr_…`)")),
    responses((status = 204, description = "Signed out everywhere")))]
async fn sign_out(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let user = actions::target(&state, &id).await?;
    actions::sign_out_everywhere(&state, &admin.user.id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a re-sync did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Resynced {
    /// How many of the user's subscriptions Stripe has and were applied.
    pub subscriptions: usize,
    /// The user JSON after it.
    pub user: UserJson,
}

/// Reads every subscription of the user's Stripe customer again and applies Stripe's state.
#[utoipa::path(post, path = "/api/admin/users/{id}/resync", tag = "admin",
    params(("id" = String, Path, description = "The user (`usr_…`)")),
    responses((status = 200, description = "Applied what Stripe has", body = Resynced)))]
async fn resync(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<Json<Resynced>> {
    let user = actions::target(&state, &id).await?;
    let subscriptions = actions::resync(&state, &admin.user.id, &user).await?;
    let access = crate::gate::access_for(&state, &user.id).await?;
    Ok(Json(Resynced {
        subscriptions,
        user: UserJson::new(&user, access),
    }))
}

/// Whether a link was sent.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Sent {
    /// False when the address is proven already (nothing is sent).
    pub sent: bool,
}

/// Sends the user a new verification link (none when the address is proven already).
#[utoipa::path(post, path = "/api/admin/users/{id}/verify-email", tag = "admin",
    params(("id" = String, Path, description = "The user (`usr_…`)")),
    responses((status = 200, description = "Sent, or not needed", body = Sent)))]
async fn resend_verification(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<Json<Sent>> {
    let user = actions::target(&state, &id).await?;
    let sent = actions::resend_verification(&state, &admin.user.id, &user).await?;
    Ok(Json(Sent { sent }))
}

/// Deletes the user's account: their subscriptions are canceled in Stripe, their personal data
/// removed (an `account.deleted` event names the administrator). An administrator deletes their
/// own account from the account page, not here.
#[utoipa::path(delete, path = "/api/admin/users/{id}", tag = "admin",
    params(("id" = String, Path, description = "The user (`usr_…`)")),
    responses((status = 204, description = "Deleted")))]
async fn delete_user(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let user = actions::target(&state, &id).await?;
    actions::delete_account(&state, &admin.user.id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Why an account is suspended.
#[derive(Deserialize, utoipa::ToSchema)]
struct Suspension {
    /// Shown to administrators only (at most 500 characters, no control characters).
    #[serde(default)]
    reason: Option<String>,
}

/// Suspends the account: its sessions and token sign-ins end now, its API keys are refused and
/// no sign-in passes until it is unsuspended. Billing is untouched. Not one's own account.
#[utoipa::path(post, path = "/api/admin/users/{id}/suspend", tag = "admin",
    params(("id" = String, Path, description = "The user (`usr_…`)")),
    request_body = Suspension,
    responses((status = 204, description = "Suspended (or already)")))]
async fn suspend(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Suspension>,
) -> Result<StatusCode> {
    let user = actions::target(&state, &id).await?;
    actions::suspend(&state, &admin.user.id, &user, body.reason.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lifts the account's suspension: its owner can sign in again, and their API keys work again.
#[utoipa::path(post, path = "/api/admin/users/{id}/unsuspend", tag = "admin",
    params(("id" = String, Path, description = "The user (`usr_…`)")),
    responses((status = 204, description = "Not suspended (any more)")))]
async fn unsuspend(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let user = actions::target(&state, &id).await?;
    actions::unsuspend(&state, &admin.user.id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs out one of the user's devices: a session (by the id the user's view lists) or a token
/// sign-in (`fam_…`).
#[utoipa::path(delete, path = "/api/admin/users/{id}/devices/{device}", tag = "admin",
    params(("id" = String, Path, description = "The user (`usr_…`)"),
        ("device" = String, Path, description = "A device id from the user's view")),
    responses((status = 204, description = "Signed out")))]
async fn sign_out_device(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    Path((id, device)): Path<(String, String)>,
) -> Result<StatusCode> {
    let user = actions::target(&state, &id).await?;
    if !actions::sign_out_device(&state, &admin.user.id, &user, &device).await? {
        return Err(AppError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Grants the user a role (`admin`, or one of the product's own names).
#[utoipa::path(put, path = "/api/admin/users/{id}/roles/{role}", tag = "admin",
    params(("id" = String, Path, description = "The user (`usr_…`)"),
        ("role" = String, Path, description = "1–32 of `a-z 0-9 - _`, starting with a letter")),
    responses((status = 204, description = "Held (granted now or before)")))]
async fn grant_role(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    Path((id, role)): Path<(String, String)>,
) -> Result<StatusCode> {
    let user = actions::target(&state, &id).await?;
    actions::grant_role(&state, &admin.user.id, &user, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes a role back. An administrator does not take `admin` from themselves here (the command
/// line can).
#[utoipa::path(delete, path = "/api/admin/users/{id}/roles/{role}", tag = "admin",
    params(("id" = String, Path, description = "The user (`usr_…`)"),
        ("role" = String, Path, description = "The role")),
    responses((status = 204, description = "Not held (any more)")))]
async fn revoke_role(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    Path((id, role)): Path<(String, String)>,
) -> Result<StatusCode> {
    let user = actions::target(&state, &id).await?;
    actions::revoke_role(&state, &admin.user.id, &user, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}
