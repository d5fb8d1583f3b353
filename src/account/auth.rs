//! The JSON routes of accounts: register, log in, log out, who am I, change password.

use axum::{
    Json, Router,
    extract::{FromRef, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use tower_sessions::Session;

use crate::{
    auth::{
        Auth, PasswordChange, authenticate, change_user_password, device, device::DeviceCookie,
        email_flows, rate_limit::ClientIp, register_private, register_user, sign_in, users::User,
    },
    billing::Billing,
    error::Result,
    extract::ApiJson,
    gate::{self, CurrentUser, SessionUser, member::UserJson},
};

/// The JSON routes of this module.
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    Auth: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/password/change", post(change_password))
        .route("/api/me", get(me))
}

/// The user JSON with the user's current access.
pub async fn user_json(state: &Billing, user: &User) -> Result<Json<UserJson>> {
    Ok(Json(UserJson::new(
        user,
        gate::access_for(state, &user.id).await?,
    )))
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
    #[serde(default)]
    remember: bool,
}

#[derive(Deserialize)]
struct Registration {
    email: String,
    password: String,
}

async fn register(
    State(state): State<Billing>,
    ip: ClientIp,
    session: Session,
    ApiJson(body): ApiJson<Registration>,
) -> Result<Response> {
    if state.config.registration_privacy {
        register_private(&state, ip, &body.email, &body.password).await?;
        return Ok(email_flows::check_your_email());
    }
    let user = register_user(&state, ip, &body.email, &body.password).await?;
    sign_in(&state, &session, &user, false).await?;
    Ok((StatusCode::CREATED, user_json(&state, &user).await?).into_response())
}

async fn login(
    State(state): State<Billing>,
    ip: ClientIp,
    device: DeviceCookie,
    session: Session,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response> {
    let user = authenticate(&state, ip, &device, &body.email, &body.password).await?;
    sign_in(&state, &session, &user, body.remember).await?;
    tracing::info!(user = %user.id, "signed in");
    let mut response = user_json(&state, &user).await?.into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        device::issue(&state, &user.id, user.session_epoch),
    );
    Ok(response)
}

async fn logout(session: Session) -> Result<StatusCode> {
    // Deletes the record server-side and expires the cookie.
    session.flush().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(current: CurrentUser) -> Json<UserJson> {
    Json(UserJson::new(&current.user, current.access))
}

#[derive(Deserialize)]
struct PasswordChangeBody {
    current_password: String,
    new_password: String,
    /// Also revoke every API key of the account.
    #[serde(default)]
    revoke_api_keys: bool,
}

async fn change_password(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    ApiJson(body): ApiJson<PasswordChangeBody>,
) -> Result<StatusCode> {
    let change = PasswordChange {
        current: &body.current_password,
        new: &body.new_password,
        revoke_api_keys: body.revoke_api_keys,
    };
    change_user_password(&state, current.signed_in(), change).await?;
    Ok(StatusCode::NO_CONTENT)
}
