//! Liveness and readiness for load balancers and orchestrators.

use axum::{
    Router,
    extract::{FromRef, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{billing::Billing, error::AppError};

/// The routes.
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive (no body)")))]
pub(super) async fn healthz() -> StatusCode {
    StatusCode::OK
}

/// The process answers and its database does: 503 `service_unavailable` otherwise.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready (no body)")))]
pub(super) async fn readyz(State(state): State<Billing>) -> Response {
    if state.db.ping().await {
        StatusCode::OK.into_response()
    } else {
        AppError::ServiceUnavailable.into_response()
    }
}
