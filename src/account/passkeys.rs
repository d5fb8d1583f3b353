//! Passkeys over JSON (see `auth::passkeys`): signing in with one, using one as the second step of
//! a sign-in or as a fresh proof, and the account's list (register, rename, remove).
//!
//! Every use is two requests: `…/options` answers `{"ceremony": "tgw_…", "publicKey": {…}}` for
//! `navigator.credentials.create()` or `.get()` (`PublicKeyCredential.parse…OptionsFromJSON`),
//! and the next request sends `{"ceremony": …, "credential": credential.toJSON()}`.

use axum::{
    Json, Router,
    extract::{FromRef, Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, patch, post},
};
use serde::Deserialize;
use tower_sessions::Session;

use super::tokens::no_store;
use crate::{
    auth::{
        self, Auth,
        devices::SignInFrom,
        passkeys::{self, Answer, Options, Summary},
        rate_limit::ClientIp,
        second_factor::{self, Intent},
    },
    billing::Billing,
    error::Result,
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
        .route("/api/auth/passkey/options", post(sign_in_options))
        .route("/api/auth/passkey", post(sign_in))
        .route("/api/auth/2fa/passkey/options", post(second_step_options))
        .route("/api/auth/reauth/passkey/options", post(reauth_options))
        .route("/api/account/passkeys", get(list).post(register))
        .route("/api/account/passkeys/options", post(registration_options))
        .route("/api/account/passkeys/{id}", patch(rename).delete(remove))
}

fn options(options: Options) -> Response {
    no_store(Json(options).into_response())
}

/// Options for signing in with a passkey.
#[utoipa::path(post, path = "/api/auth/passkey/options", tag = "passkeys", responses((status = 200, description = "Options for navigator.credentials.get()", body = crate::auth::passkeys::Options)))]
async fn sign_in_options(State(state): State<Billing>, ip: ClientIp) -> Result<Response> {
    Ok(options(passkeys::sign_in_options(&state, ip).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = PasskeySignInBody)]
struct SignInBody {
    #[serde(flatten)]
    answer: Answer,
    #[serde(default)]
    remember: bool,
    /// Answer a token pair instead of starting a session.
    #[serde(default)]
    token: bool,
}

/// A sign-in with a passkey alone: a session (or a token pair), as a password sign-in gives. The
/// passkey verified its user, so no second step follows even with an authenticator app on.
#[utoipa::path(post, path = "/api/auth/passkey", tag = "passkeys", request_body = SignInBody, responses((status = 200, description = "Signed in, or a token pair", body = super::openapi::schemas::SignInAnswer)))]
async fn sign_in(
    State(state): State<Billing>,
    ip: ClientIp,
    from: SignInFrom,
    session: Session,
    ApiJson(body): ApiJson<SignInBody>,
) -> Result<Response> {
    let answer = &body.answer;
    let user = passkeys::sign_in(&state, ip, &answer.ceremony, &answer.credential).await?;
    let intent = Intent {
        remember: body.remember,
        tokens: body.token,
    };
    super::auth::complete_sign_in(&state, &session, &user, intent, &from).await
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PendingBody {
    pending_token: String,
}

/// Options for a passkey to finish a pending sign-in (then `POST /api/auth/2fa/verify` with
/// `passkey`).
#[utoipa::path(post, path = "/api/auth/2fa/passkey/options", tag = "passkeys", request_body = PendingBody, responses((status = 200, description = "Options for a passkey as the second step", body = crate::auth::passkeys::Options)))]
async fn second_step_options(
    State(state): State<Billing>,
    ip: ClientIp,
    ApiJson(body): ApiJson<PendingBody>,
) -> Result<Response> {
    Ok(options(
        second_factor::passkey_options(&state, ip, &body.pending_token).await?,
    ))
}

/// Options for a passkey as a fresh proof (then `POST /api/auth/reauth` with `passkey`).
#[utoipa::path(post, path = "/api/auth/reauth/passkey/options", tag = "passkeys", responses((status = 200, description = "Options for a passkey as a fresh proof", body = crate::auth::passkeys::Options)))]
async fn reauth_options(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
) -> Result<Response> {
    let purpose = passkeys::Purpose::Reauth;
    let user_id = &current.user.id;
    Ok(options(
        passkeys::assertion_options(&state, user_id, purpose, None).await?,
    ))
}

/// The account's passkeys.
#[utoipa::path(get, path = "/api/account/passkeys", tag = "passkeys", responses((status = 200, description = "The account's passkeys", body = Vec<crate::auth::passkeys::Summary>)))]
async fn list(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
) -> Result<Json<Vec<Summary>>> {
    Ok(Json(passkeys::list(&state, &current.user.id).await?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[schema(as = PasskeyFactorBody)]
struct FactorBody {
    code: Option<String>,
    recovery_code: Option<String>,
}

/// Registering a passkey takes a recent proof, as every change to how the account signs in does;
/// with two-factor sign-in on, also a current code (a stolen session must not add a passkey and
/// then use it as the second factor it lacks).
#[utoipa::path(post, path = "/api/account/passkeys/options", tag = "passkeys", request_body = FactorBody, responses((status = 200, description = "Options for navigator.credentials.create()", body = crate::auth::passkeys::Options)))]
async fn registration_options(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    ApiJson(body): ApiJson<FactorBody>,
) -> Result<Response> {
    auth::require_recent_proof(&state, &current.session).await?;
    passkeys::registration_precheck(&state, &current.user).await?;
    let (code, recovery) = (body.code.as_deref(), body.recovery_code.as_deref());
    second_factor::check_if_on(&state, current.signed_in(), code, recovery).await?;
    Ok(options(
        passkeys::registration_options(&state, &current.user).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = PasskeyRegisterBody)]
struct RegisterBody {
    #[serde(flatten)]
    answer: Answer,
    name: Option<String>,
}

/// Registers a passkey with the browser's answer to the registration options.
#[utoipa::path(post, path = "/api/account/passkeys", tag = "passkeys", request_body = RegisterBody, responses((status = 201, description = "Registered", body = crate::auth::passkeys::Summary)))]
async fn register(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response> {
    auth::require_recent_proof(&state, &current.session).await?;
    let name = passkeys::clean_name(body.name.as_deref())?;
    let answer = &body.answer;
    let summary = passkeys::register(
        &state,
        current.signed_in(),
        &answer.ceremony,
        &answer.credential,
        &name,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RenameBody {
    name: String,
}

/// Renames a passkey.
#[utoipa::path(patch, path = "/api/account/passkeys/{id}", tag = "passkeys", params(("id" = String, Path, description = "The passkey (`pk_…`)")), request_body = RenameBody, responses((status = 204, description = "Renamed")))]
async fn rename(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenameBody>,
) -> Result<StatusCode> {
    auth::require_recent_proof(&state, &current.session).await?;
    passkeys::rename(&state, current.signed_in(), &id, &body.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a passkey.
#[utoipa::path(delete, path = "/api/account/passkeys/{id}", tag = "passkeys", params(("id" = String, Path, description = "The passkey (`pk_…`)")), responses((status = 204, description = "Removed")))]
async fn remove(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    auth::require_recent_proof(&state, &current.session).await?;
    passkeys::remove(&state, current.signed_in(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
