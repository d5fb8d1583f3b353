//! Signed-in devices over JSON: the list, signing one out or every other, and the "new sign-in"
//! notice switch (see `auth::devices`). A session only: keys and access tokens get 403
//! `session_required`.

use axum::{
    Json, Router,
    extract::{FromRef, Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    auth::{Auth, device, devices},
    billing::Billing,
    error::{AppError, Result},
    extract::ApiJson,
    gate::SessionUser,
};

/// The routes.
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    Auth: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/account/devices", get(list))
        .route("/api/account/devices/{id}", delete(sign_out_one))
        .route(
            "/api/account/devices/sign-out-others",
            post(sign_out_others),
        )
        .route("/api/account/devices/notices", post(set_notices))
}

/// The browsers and apps signed in to the account.
#[utoipa::path(get, path = "/api/account/devices", tag = "devices", responses((status = 200, description = "The signed-in devices", body = super::openapi::schemas::DeviceList)))]
async fn list(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
) -> Result<Json<Value>> {
    let devices = devices::list(&state, current.signed_in()).await?;
    let notices = devices::notices_on(&state, &current.user.id).await?;
    Ok(Json(
        json!({ "devices": devices, "sign_in_notices": notices }),
    ))
}

/// Signs one device out.
#[utoipa::path(delete, path = "/api/account/devices/{id}", tag = "devices", params(("id" = String, Path, description = "A device's `id` from the list")), responses((status = 204, description = "Signed out")))]
async fn sign_out_one(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    if !devices::sign_out_one(&state, &current.user.id, &id).await? {
        return Err(AppError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Every other device signed out; this browser's device cookie is renewed under the new epoch, so
/// its owner's next sign-in here is not taken for a new browser.
#[utoipa::path(post, path = "/api/account/devices/sign-out-others", tag = "devices", responses((status = 204, description = "Every other device is signed out")))]
async fn sign_out_others(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
) -> Result<Response> {
    let epoch = devices::sign_out_others(&state, current.signed_in()).await?;
    let cookie = device::issue(&state, &current.user.id, epoch);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NoticesBody {
    enabled: bool,
}

/// Turns the "new sign-in" email on or off.
#[utoipa::path(post, path = "/api/account/devices/notices", tag = "devices", request_body = NoticesBody, responses((status = 204, description = "Set")))]
async fn set_notices(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    ApiJson(body): ApiJson<NoticesBody>,
) -> Result<StatusCode> {
    devices::set_notices(&state, current.signed_in(), body.enabled).await?;
    Ok(StatusCode::NO_CONTENT)
}
