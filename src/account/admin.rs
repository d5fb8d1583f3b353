//! The admin area over JSON (`/api/admin/…`): find users, read one user's access, roles and
//! events, and sign a user out everywhere. Only a signed-in administrator (the `admin` role, by
//! session) gets an answer; everyone else gets 404, so the area does not show that it exists.
//! Every change an administrator makes is an audit event with them as the actor.

use axum::{
    Json, Router,
    extract::{FromRef, Path, Query, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};

use crate::{
    audit::{self, EventJson},
    auth::{
        Auth,
        refresh::{self, Ending},
        session_store, users,
    },
    billing::Billing,
    error::{AppError, Result},
    gate::{AdminUser, UserJson},
};

/// The routes.
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    Auth: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/admin/users", get(search))
        .route("/api/admin/users/{id}", get(show))
        .route("/api/admin/users/{id}/sign-out", post(sign_out))
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

/// One user as an administrator sees them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// The user JSON, with their access and roles.
    pub user: UserJson,
    /// Their events, security and billing, newest first (at most 100).
    pub events: Vec<EventJson>,
}

/// One user: their access, roles and events.
#[utoipa::path(get, path = "/api/admin/users/{id}", tag = "admin",
    params(("id" = String, Path, description = "The user (`usr_…`)")),
    responses((status = 200, description = "The user", body = UserView)))]
async fn show(
    State(state): State<Billing>,
    AdminUser(_admin): AdminUser,
    Path(id): Path<String>,
) -> Result<Json<UserView>> {
    let user = users::find_by_id(&state.db, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let access = crate::gate::access_for(&state, &user.id).await?;
    let events = audit::about(&state.db, &user.id, 100).await?;
    Ok(Json(UserView {
        user: UserJson::new(&user, access),
        events,
    }))
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
    let user = users::find_by_id(&state.db, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    session_store::revoke_all_on(&mut tx, &user.id, None).await?;
    refresh::end_all_on(&mut tx, &user.id, Ending::Logout, now).await?;
    let entry = audit::Entry {
        kind: audit::Kind::AdminSignedOut,
        actor: &admin.user.id,
        subject: Some(&user.id),
        payload: serde_json::json!({"sessions": true}),
    };
    audit::record(&mut tx, now, entry).await?;
    state.commit_for(tx, &user.id).await?;
    tracing::info!(user = %user.id, admin = %admin.user.id, "signed out everywhere by an administrator");
    Ok(StatusCode::NO_CONTENT)
}
