//! The JSON routes of accounts: register, log in, log out, who am I, change password.

use axum::{
    Json, Router,
    extract::{FromRef, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use tower_sessions::Session;

use crate::{
    auth::{
        Auth, PasswordChange,
        api_keys::Scope,
        authenticate, change_user_password,
        credentials::{self, Presented},
        devices::{self, SignInFrom},
        email_flows,
        rate_limit::ClientIp,
        refresh::{self, Ending},
        register_private, register_user,
        second_factor::{self, Intent, TrustCookie},
        sign_in,
        users::User,
    },
    billing::Billing,
    error::{AppError, Result},
    extract::ApiJson,
    gate::{self, CurrentUser, SessionUser, UserJson, member::Via},
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

#[derive(Deserialize, utoipa::ToSchema)]
struct Credentials {
    email: String,
    password: String,
    #[serde(default)]
    remember: bool,
    /// Answer a token pair instead of starting a session (`"token": true`, or `"issue_tokens":
    /// true` as the magic-link route names it).
    #[serde(default, alias = "issue_tokens")]
    token: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Registration {
    email: String,
    password: String,
}

/// Registers an account with an email and a password and signs it in (in privacy mode: emails a link instead).
#[utoipa::path(post, path = "/api/auth/register", tag = "accounts", request_body = Registration, responses((status = 201, description = "Registered and signed in (a session cookie)", body = UserJson), (status = 202, description = "Privacy mode: an email was sent; the link signs in", body = super::openapi::schemas::CheckYourEmail)))]
async fn register(
    State(state): State<Billing>,
    ip: ClientIp,
    from: SignInFrom,
    session: Session,
    ApiJson(body): ApiJson<Registration>,
) -> Result<Response> {
    if state.config.registration_privacy {
        register_private(&state, ip, &body.email, &body.password).await?;
        return Ok(email_flows::check_your_email());
    }
    let user = register_user(&state, ip, &body.email, &body.password).await?;
    sign_in(&state, &session, &user, false, &from).await?;
    Ok((StatusCode::CREATED, user_json(&state, &user).await?).into_response())
}

/// Signs in with an email and a password: a session, a token pair (`"token": true`), or the second step a second factor needs.
#[utoipa::path(post, path = "/api/auth/login", tag = "accounts", request_body = Credentials, responses((status = 200, description = "Signed in, a token pair, or a second step", body = super::openapi::schemas::SignInAnswer)))]
async fn login(
    State(state): State<Billing>,
    ip: ClientIp,
    from: SignInFrom,
    trust: TrustCookie,
    session: Session,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response> {
    let user = authenticate(&state, ip, &from.device, &body.email, &body.password).await?;
    let intent = Intent {
        remember: body.remember,
        tokens: body.token,
    };
    if let Some(pending) = second_factor::after_first_factor(&state, &user, &trust, intent).await? {
        return Ok(super::tokens::pending_response(&pending));
    }
    complete_sign_in(&state, &session, &user, intent, &from).await
}

/// Completes a sign-in whose factors all passed, as the first step asked: a token pair, or a
/// session and the user JSON; then the new-device notice and a fresh device cookie.
pub async fn complete_sign_in(
    state: &Billing,
    session: &Session,
    user: &User,
    intent: Intent,
    from: &SignInFrom,
) -> Result<Response> {
    let mut response = if intent.tokens {
        tracing::info!(user = %user.id, "signed in for tokens");
        super::tokens::pair_response(state, user, None).await?
    } else {
        sign_in(state, session, user, intent.remember, from).await?;
        tracing::info!(user = %user.id, "signed in");
        user_json(state, user).await?.into_response()
    };
    devices::welcome(state, user, from, response.headers_mut()).await?;
    Ok(response)
}

/// Signs out (see [`sign_out`]). With an API key: 403 `session_required`; with an access token
/// tollgate refuses (expired, say): 401, and nothing ends (an app signs out with
/// `POST /api/auth/token/revoke`).
#[utoipa::path(post, path = "/api/auth/logout", tag = "accounts", responses((status = 204, description = "Signed out (and every token sign-in of the session's user)")))]
async fn logout(
    State(state): State<Billing>,
    headers: HeaderMap,
    session: Session,
) -> Result<StatusCode> {
    sign_out(&state, &headers, &session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signing out, for the JSON route and the page's form alike. A session ends, and with it every
/// token sign-in of its user; an access token ends its own sign-in only (a backend the token was
/// handed to cannot sign the user out everywhere).
pub async fn sign_out(state: &Billing, headers: &HeaderMap, session: &Session) -> Result<()> {
    if matches!(credentials::presented(headers), Presented::Key(_)) {
        return Err(AppError::SessionRequired);
    }
    if let Some(current) =
        gate::member::user_of(state, headers, session.clone(), Scope::Read).await?
    {
        let now = state.clock.now();
        let mut tx = state.db.begin().await?;
        let via = match &current.via {
            Via::Token(token) => {
                refresh::end_on_family(&mut tx, &token.family.id, Ending::Logout, now).await?;
                "token"
            }
            _ => {
                refresh::end_all_on(&mut tx, &current.user.id, Ending::Logout, now).await?;
                "session"
            }
        };
        let payload = serde_json::json!({"via": via});
        let entry =
            crate::auth::own_event(crate::audit::Kind::SignedOut, &current.user.id, payload);
        crate::audit::record(&mut tx, now, entry).await?;
        state.commit_for(tx, &current.user.id).await?;
        tracing::info!(user = %current.user.id, "signed out");
    }
    session.flush().await?;
    Ok(())
}

/// The signed-in user and their access (session, API key or access token).
#[utoipa::path(get, path = "/api/me", tag = "accounts", responses((status = 200, description = "The signed-in user and their access", body = UserJson)))]
async fn me(current: CurrentUser) -> Json<UserJson> {
    Json(UserJson::new(&current.user, current.access))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PasswordChangeBody {
    current_password: String,
    new_password: String,
    /// Also revoke every API key of the account.
    #[serde(default)]
    revoke_api_keys: bool,
}

/// Changes the password (the current one is required); every other session and token sign-in ends.
#[utoipa::path(post, path = "/api/auth/password/change", tag = "accounts", request_body = PasswordChangeBody, responses((status = 204, description = "Changed; every other session and token sign-in ends")))]
async fn change_password(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    ApiJson(body): ApiJson<PasswordChangeBody>,
) -> Result<Response> {
    let change = PasswordChange {
        current: &body.current_password,
        new: &body.new_password,
        revoke_api_keys: body.revoke_api_keys,
    };
    let epoch = change_user_password(&state, current.signed_in(), change).await?;
    // This browser stays known under the new epoch (no "new sign-in" mail for its owner).
    let cookie = crate::auth::device::issue(&state, &current.user.id, epoch);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}
