//! The JSON routes of the email flows (verification, password reset, magic links, email
//! change), and the email change's confirmation, which also tells Stripe.

use axum::{
    Router,
    extract::{FromRef, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde::Deserialize;
use tower_sessions::Session;

use crate::{
    auth::{
        Auth,
        device::DeviceCookie,
        devices::SignInFrom,
        email_change::request_email_change,
        email_flows::{
            Verifier, check_your_email, forgot_password, request_verification, reset_password,
            verify_email,
        },
        rate_limit::{self, ClientIp},
        second_factor::{self, Intent, TrustCookie},
        sign_in,
        users::{self, Email, User},
    },
    billing::Billing,
    db,
    email::tokens::{self, Purpose},
    error::{AppError, Result},
    extract::ApiJson,
    gate::{CurrentUser, SessionUser},
};

/// The JSON routes of the email flows.
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    Auth: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(
            "/api/auth/verify-email/request",
            post(request_verification_route),
        )
        .route("/api/auth/verify-email", post(verify_email_route))
        .route("/api/auth/password/forgot", post(forgot_password_route))
        .route("/api/auth/password/reset", post(reset_password_route))
        .route("/api/auth/magic-link", post(request_magic_link_route))
        .route("/api/auth/magic-link/consume", post(consume_magic_route))
        .route("/api/auth/email/change", post(request_email_change_route))
        .route("/api/auth/email/confirm", post(confirm_email_change_route))
}

/// Sends the signed-in user a new verification link.
#[utoipa::path(post, path = "/api/auth/verify-email/request", tag = "email", responses((status = 202, description = "A verification email was sent (no body)")))]
async fn request_verification_route(
    State(state): State<Billing>,
    ip: ClientIp,
    SessionUser(current): SessionUser,
) -> Result<Response> {
    request_verification(&state, ip, &current.user).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = EmailTokenBody)]
struct VerifyBody {
    token: String,
    /// The account's password, from a browser not signed in to it: for a verification it keeps
    /// the password; for an email change it proves the account.
    password: Option<String>,
}

/// Confirms an address with the token of a verification link.
#[utoipa::path(post, path = "/api/auth/verify-email", tag = "email", request_body = VerifyBody, responses((status = 200, description = "Verified", body = crate::gate::UserJson)))]
async fn verify_email_route(
    State(state): State<Billing>,
    ip: ClientIp,
    from: SignInFrom,
    session: Session,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<Response> {
    let proof = (body.token.as_str(), body.password.as_deref());
    let user = verify_and_sign_in(&state, ip, &session, proof, &from).await?;
    Ok(super::auth::user_json(&state, &user).await?.into_response())
}

/// Confirms an address with a verification token (the JSON route and the confirmation page): the
/// request's signed-in user and a typed password tell whether the registrant is the one proving
/// it. In privacy mode the verification link is how a new account signs in.
pub async fn verify_and_sign_in(
    state: &Billing,
    ip: ClientIp,
    session: &Session,
    (token, password): (&str, Option<&str>),
    from: &SignInFrom,
) -> Result<User> {
    let signed_in = crate::gate::current_user(state, session.clone()).await?;
    let verifier = Verifier {
        signed_in: signed_in.as_ref().map(CurrentUser::signed_in),
        password,
    };
    let user = verify_email(state, ip, token, verifier).await?;
    // Privacy mode: the link signs a new account in. An account with a second factor is only
    // verified; its owner signs in with both.
    if state.config.registration_privacy && !second_factor::enabled(state, &user.id).await? {
        sign_in(state, session, &user, false, from).await?;
    }
    Ok(user)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct EmailBody {
    email: String,
}

/// Sends a password reset link, if the address has an account.
#[utoipa::path(post, path = "/api/auth/password/forgot", tag = "email", request_body = EmailBody, responses((status = 202, description = "Answered the same whether or not the address has an account", body = super::openapi::schemas::CheckYourEmail)))]
async fn forgot_password_route(
    State(state): State<Billing>,
    ip: ClientIp,
    device: DeviceCookie,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<Response> {
    forgot_password(&state, ip, &device, &body.email).await?;
    Ok(check_your_email())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ResetBody {
    token: String,
    password: String,
}

/// Sets a new password with a reset link's token.
#[utoipa::path(post, path = "/api/auth/password/reset", tag = "email", request_body = ResetBody, responses((status = 204, description = "The password is reset; every session ends")))]
async fn reset_password_route(
    State(state): State<Billing>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ResetBody>,
) -> Result<StatusCode> {
    reset_password(&state, ip, &body.token, &body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a sign-in link and code, if the address has an account.
#[utoipa::path(post, path = "/api/auth/magic-link", tag = "email", request_body = EmailBody, responses((status = 202, description = "Answered the same whether or not the address has an account", body = super::openapi::schemas::CheckYourEmail)))]
async fn request_magic_link_route(
    State(state): State<Billing>,
    ip: ClientIp,
    device: DeviceCookie,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<Response> {
    crate::auth::magic::request_magic_link(&state, ip, &device, &body.email).await?;
    Ok(check_your_email())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct MagicBody {
    token: Option<String>,
    email: Option<String>,
    code: Option<String>,
    /// Answer a token pair (access and refresh token) instead of starting a session. Named so
    /// because `token` is the link's.
    #[serde(default)]
    issue_tokens: bool,
}

/// Signs in with a magic link's token, or with the email and its code.
#[utoipa::path(post, path = "/api/auth/magic-link/consume", tag = "email", request_body = MagicBody, responses((status = 200, description = "Signed in, a token pair, or a second step", body = super::openapi::schemas::SignInAnswer)))]
async fn consume_magic_route(
    State(state): State<Billing>,
    ip: ClientIp,
    from: SignInFrom,
    trust: TrustCookie,
    session: Session,
    ApiJson(body): ApiJson<MagicBody>,
) -> Result<Response> {
    let pair = body.email.as_deref().zip(body.code.as_deref());
    let user = crate::auth::magic::consume_magic(&state, ip, body.token.as_deref(), pair).await?;
    let intent = Intent {
        remember: false,
        tokens: body.issue_tokens,
    };
    if let Some(pending) = second_factor::after_first_factor(&state, &user, &trust, intent).await? {
        return Ok(super::tokens::pending_response(&pending));
    }
    super::auth::complete_sign_in(&state, &session, &user, intent, &from).await
}

#[derive(Deserialize, utoipa::ToSchema)]
struct EmailChangeBody {
    /// Absent for an account without a password (a recent proof stands in).
    password: Option<String>,
    new_email: String,
}

/// Asks to change the address: a confirmation link goes to the new one.
#[utoipa::path(post, path = "/api/auth/email/change", tag = "email", request_body = EmailChangeBody, responses((status = 202, description = "A confirmation link was sent to the new address (no body)")))]
async fn request_email_change_route(
    State(state): State<Billing>,
    ip: ClientIp,
    SessionUser(current): SessionUser,
    ApiJson(body): ApiJson<EmailChangeBody>,
) -> Result<StatusCode> {
    request_email_change(
        &state,
        ip,
        current.signed_in(),
        body.password.as_deref(),
        &body.new_email,
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Confirms a new address: the user's email changes (verified), outstanding tokens die, and the
/// Stripe customer's email follows (queued with the change, pushed at once and retried until
/// Stripe has it).
///
/// The link proves the new mailbox, not the account: whoever confirms must also be signed in to
/// the account on this device or type its password (`ReauthRequired` otherwise; a wrong password
/// is `InvalidCredentials`, and the link stays usable). Else anyone could ask to attach a
/// stranger's address to their own account (one guarded by their authenticator, say) and count on
/// the stranger pressing "confirm".
pub async fn confirm_email_change(
    state: &Billing,
    ip: ClientIp,
    token: &str,
    verifier: Verifier<'_>,
) -> Result<User> {
    rate_limit::hit_ip(state, rate_limit::TOKEN_PER_IP, ip).await?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let consumed = tokens::consume(&mut tx, token, Purpose::EmailChange, now).await?;
    let new_display = consumed.new_email.clone().ok_or(AppError::TokenInvalid)?;
    let mut user = users::find_by_id_on(&mut tx, &consumed.user_id)
        .await?
        .ok_or(AppError::TokenInvalid)?;
    // A suspended account's address does not move (the token stays unused).
    if user.suspended_at.is_some() {
        return Err(AppError::AccountSuspended);
    }
    let account_session = verifier.signed_in.is_some_and(|current| {
        current.user.id == user.id && current.session_epoch >= user.session_epoch
    });
    if !account_session {
        match verifier.password.filter(|p| !p.is_empty()) {
            Some(given) => {
                rate_limit::hit(state, rate_limit::PASSWORD_PER_USER, &user.id).await?;
                crate::auth::confirm_password(state, &user, given).await?;
            }
            None => return Err(AppError::ReauthRequired),
        }
    }
    let new_email = Email {
        display: new_display.clone(),
        normalised: consumed.email_norm.clone(),
    };
    let changed = users::set_proven_email_on(&mut tx, &user.id, &new_email).await;
    match changed {
        Ok(_) => {}
        Err(e) if db::is_unique_violation(&e) => return Err(AppError::EmailTaken),
        Err(e) => return Err(e.into()),
    }
    tokens::invalidate_all(&mut tx, &user.id, now).await?;
    crate::billing::customers::queue_email_sync(&mut tx, &user.id, &new_display, now).await?;
    // The addresses are the owner's own: the trail keeps them masked all the same.
    let payload = serde_json::json!({
        "from": crate::telemetry::mask_address(&user.email),
        "to": crate::telemetry::mask_address(&new_display),
    });
    let entry = crate::auth::own_event(crate::audit::Kind::EmailChanged, &user.id, payload);
    crate::audit::record(&mut tx, now, entry).await?;
    state.commit_for(tx, &user.id).await?;
    user.email = new_display;
    user.email_verified = true;
    // The Stripe customer follows now if it can, else by the worker's retries.
    let pusher = state.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::billing::customers::push_due_emails(&pusher).await {
            tracing::warn!(error = %e, "customer email sync failed");
        }
    });
    tracing::info!(user = %user.id, "email changed");
    Ok(user)
}

/// Confirms a new address with the token of its link.
#[utoipa::path(post, path = "/api/auth/email/confirm", tag = "email", request_body = VerifyBody, responses((status = 200, description = "The address is changed", body = crate::gate::UserJson)))]
async fn confirm_email_change_route(
    State(state): State<Billing>,
    ip: ClientIp,
    session: Session,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<Response> {
    let signed_in = crate::gate::current_user(&state, session).await?;
    let verifier = Verifier {
        signed_in: signed_in.as_ref().map(CurrentUser::signed_in),
        password: body.password.as_deref(),
    };
    let user = confirm_email_change(&state, ip, &body.token, verifier).await?;
    Ok(super::auth::user_json(&state, &user).await?.into_response())
}
