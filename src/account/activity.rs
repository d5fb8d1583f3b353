//! The account's security history over JSON: its own audit events, newest first.

use axum::{
    Json, Router,
    extract::{FromRef, State},
    routing::get,
};
use serde::Serialize;

use crate::{
    audit::{self, EventJson},
    auth::Auth,
    billing::Billing,
    error::Result,
    gate::SessionUser,
};

/// How many events a history shows.
pub const HISTORY_LENGTH: i64 = 50;

/// The route.
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    Auth: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new().route("/api/account/activity", get(history))
}

/// The security history.
#[derive(Serialize, utoipa::ToSchema)]
pub struct History {
    /// Newest first, at most 50: sign-ups, sign-ins (and refused ones), sign-outs, and changes
    /// to how the account signs in (`account.*`, `auth.*`).
    pub events: Vec<EventJson>,
}

/// The signed-in account's security history: sign-ins (and refused ones), sign-outs, and
/// changes to how it signs in, newest first.
#[utoipa::path(get, path = "/api/account/activity", tag = "accounts",
    responses((status = 200, description = "The account's security history", body = History)))]
async fn history(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
) -> Result<Json<History>> {
    let events = audit::security_history(&state.db, &current.user.id, HISTORY_LENGTH).await?;
    Ok(Json(History { events }))
}
