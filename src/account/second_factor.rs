//! Two-factor sign-in over JSON: the second step of a sign-in, re-authentication, and the
//! account's enrolment, recovery codes and turning it off (see `auth::second_factor`).

use axum::{
    Json, Router,
    extract::{FromRef, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;
use tower_sessions::Session;

use super::tokens::no_store;
use crate::{
    auth::{
        self, Auth,
        devices::SignInFrom,
        passkeys::Answer,
        rate_limit::ClientIp,
        second_factor::{self, Completed, Proof, trust},
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
        .route("/api/auth/2fa/verify", post(verify))
        .route("/api/auth/reauth", post(reauth))
        .route("/api/account/2fa", get(status))
        .route("/api/account/2fa/totp", post(begin))
        .route("/api/account/2fa/totp/confirm", post(confirm))
        .route("/api/account/2fa/recovery-codes", post(renew_codes))
        .route("/api/account/2fa/disable", post(turn_off))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = SecondStepBody)]
struct VerifyBody {
    pending_token: String,
    code: Option<String>,
    recovery_code: Option<String>,
    /// A passkey's answer (`{"ceremony", "credential"}`) to `/api/auth/2fa/passkey/options`.
    passkey: Option<Answer>,
    /// Skip the second factor on this browser for 30 days (a signed cookie).
    #[serde(default)]
    trust_device: bool,
}

/// The second step: the session (or token pair) the first step asked for, the device cookie, and
/// with `trust_device` the trusted-device cookie.
#[utoipa::path(post, path = "/api/auth/2fa/verify", tag = "two-factor", request_body = VerifyBody, responses((status = 200, description = "Signed in, or the token pair the first step asked for", body = super::openapi::schemas::SignInAnswer)))]
async fn verify(
    State(state): State<Billing>,
    ip: ClientIp,
    from: SignInFrom,
    session: Session,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<Response> {
    let proof = body.proof()?;
    let done = second_factor::complete(&state, ip, &body.pending_token, proof).await?;
    let mut response =
        super::auth::complete_sign_in(&state, &session, &done.user, done.intent, &from).await?;
    if body.trust_device {
        trust_cookie(&state, &mut response, &done);
    }
    Ok(response)
}

/// Trusts the browser of a completed two-step sign-in for 30 days (the cookie).
pub fn trust_cookie(state: &Auth, response: &mut Response, done: &Completed) {
    let user = &done.user;
    let now = state.clock.now();
    let cookie = trust::issue(state, &user.id, user.session_epoch, &done.factor_id, now);
    response.headers_mut().append(header::SET_COOKIE, cookie);
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ReauthBody {
    password: Option<String>,
    code: Option<String>,
    recovery_code: Option<String>,
    passkey: Option<Answer>,
}

/// A fresh proof for the next 10 minutes of sensitive changes: the password, a code from the
/// app, or a recovery code.
#[utoipa::path(post, path = "/api/auth/reauth", tag = "two-factor", request_body = ReauthBody, responses((status = 204, description = "Proven for the next 10 minutes")))]
async fn reauth(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    ApiJson(body): ApiJson<ReauthBody>,
) -> Result<StatusCode> {
    let (code, recovery) = (body.code.as_deref(), body.recovery_code.as_deref());
    let proof = match (code, recovery, body.passkey.as_ref()) {
        (None, None, None) => None,
        (code, recovery, passkey) => Some(Proof::from_fields(code, recovery, passkey)?),
    };
    auth::reauthenticate(&state, current.signed_in(), body.password.as_deref(), proof).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's two-factor state.
#[utoipa::path(get, path = "/api/account/2fa", tag = "two-factor", responses((status = 200, description = "The account's two-factor state", body = second_factor::Status)))]
async fn status(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
) -> Result<Json<second_factor::Status>> {
    Ok(Json(second_factor::status(&state, &current.user.id).await?))
}

/// Begins enrolling an authenticator app: its secret and QR code.
#[utoipa::path(post, path = "/api/account/2fa/totp", tag = "two-factor", responses((status = 200, description = "The secret for the authenticator app", body = crate::auth::second_factor::Enrolment)))]
async fn begin(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
) -> Result<Response> {
    auth::require_recent_proof(&state, &current.session).await?;
    let enrolment = second_factor::begin(&state, &current.user).await?;
    Ok(no_store(Json(enrolment).into_response()))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CodeBody {
    code: String,
}

/// Confirms the enrolment with a code from the app: two-factor sign-in is on.
#[utoipa::path(post, path = "/api/account/2fa/totp/confirm", tag = "two-factor", request_body = CodeBody, responses((status = 200, description = "Two-factor sign-in is on; the recovery codes, shown once", body = super::openapi::schemas::RecoveryCodes)))]
async fn confirm(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Response> {
    auth::require_recent_proof(&state, &current.session).await?;
    let codes = second_factor::confirm(&state, current.signed_in(), &body.code).await?;
    Ok(no_store(
        Json(json!({ "recovery_codes": codes })).into_response(),
    ))
}

/// New recovery codes take a recent proof and, on top, a current code (as turning off does).
#[utoipa::path(post, path = "/api/account/2fa/recovery-codes", tag = "two-factor", request_body = FactorBody, responses((status = 200, description = "New recovery codes, shown once (the old ones stop working)", body = super::openapi::schemas::RecoveryCodes)))]
async fn renew_codes(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    ApiJson(body): ApiJson<FactorBody>,
) -> Result<Response> {
    auth::require_recent_proof(&state, &current.session).await?;
    let proof = body.proof()?;
    let codes = second_factor::renew_codes(&state, current.signed_in(), proof).await?;
    Ok(no_store(
        Json(json!({ "recovery_codes": codes })).into_response(),
    ))
}

/// A body with one current second factor.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = CurrentFactorBody)]
struct FactorBody {
    code: Option<String>,
    recovery_code: Option<String>,
    passkey: Option<Answer>,
}

impl FactorBody {
    fn proof(&self) -> Result<Proof<'_>> {
        let (code, recovery) = (self.code.as_deref(), self.recovery_code.as_deref());
        Proof::from_fields(code, recovery, self.passkey.as_ref())
    }
}

impl VerifyBody {
    fn proof(&self) -> Result<Proof<'_>> {
        let (code, recovery) = (self.code.as_deref(), self.recovery_code.as_deref());
        Proof::from_fields(code, recovery, self.passkey.as_ref())
    }
}

/// Turning two-factor off takes a recent proof and, on top, a current code: a stolen session
/// without the authenticator cannot do it.
#[utoipa::path(post, path = "/api/account/2fa/disable", tag = "two-factor", request_body = FactorBody, responses((status = 204, description = "Two-factor sign-in is off")))]
async fn turn_off(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    ApiJson(body): ApiJson<FactorBody>,
) -> Result<StatusCode> {
    auth::require_recent_proof(&state, &current.session).await?;
    let proof = body.proof()?;
    second_factor::turn_off(&state, current.signed_in(), proof).await?;
    Ok(StatusCode::NO_CONTENT)
}
