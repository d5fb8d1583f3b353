//! Access and refresh tokens over JSON: a session exchanged for a pair, a refresh, a client giving
//! its tokens up, and the published signing keys (`/.well-known/jwks.json`). Signing in with
//! `"token": true` (password, magic link or code) answers a pair too (`super::auth`,
//! `super::email`).

use axum::{
    Json, Router,
    extract::{FromRef, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;

use crate::{
    auth::{Auth, refresh, signing, users::User},
    billing::Billing,
    error::{AppError, Result},
    extract::ApiJson,
    gate::{SessionUser, tokens},
};

/// The routes of this module.
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    Auth: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/auth/token", post(exchange_session))
        .route("/api/auth/token/refresh", post(refresh_route))
        .route("/api/auth/token/revoke", post(revoke_route))
        .route("/.well-known/jwks.json", get(jwks))
}

/// A token pair as the answer to a sign-in (`at_most`: see [`tokens::issue`]): `no-store`, as
/// OAuth token responses are.
pub async fn pair_response(state: &Billing, user: &User, at_most: Option<i64>) -> Result<Response> {
    let pair = tokens::issue(state, user, at_most).await?;
    Ok(no_store(Json(pair).into_response()))
}

/// The answer to a first step that needs a second factor: 200, no session, no token; only the
/// pending sign-in's token, for `POST /api/auth/2fa/verify`.
pub fn pending_response(waiting: &crate::auth::second_factor::Waiting) -> Response {
    no_store(
        Json(serde_json::json!({
            "second_factor_required": true,
            "pending_token": waiting.token,
            "expires_in": crate::auth::second_factor::pending::LIFETIME_SECS,
            "methods": waiting.methods,
        }))
        .into_response(),
    )
}

/// `Cache-Control: no-store` on an answer that carries a secret.
pub fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// A signed-in session asks for a token pair (a web app handing tokens to its own mobile or
/// desktop client, or to a backend call). The session stays signed in, and the tokens' sign-in
/// ends no later than the session's absolute timeout would.
#[utoipa::path(post, path = "/api/auth/token", tag = "tokens", responses((status = 200, description = "A token pair for the session's user", body = crate::gate::tokens::TokenPair)))]
async fn exchange_session(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
) -> Result<Response> {
    let left = crate::auth::session_time_left(&state, &current.session).await?;
    pair_response(&state, &current.user, Some(left)).await
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RefreshBody {
    refresh_token: String,
}

/// Trades a refresh token for a new pair (each refresh token works once).
#[utoipa::path(post, path = "/api/auth/token/refresh", tag = "tokens", request_body = RefreshBody, responses((status = 200, description = "A new pair; the refresh token sent is used up", body = crate::gate::tokens::TokenPair)))]
async fn refresh_route(
    State(state): State<Billing>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Response> {
    let pair = tokens::refresh(&state, &body.refresh_token)
        .await?
        .ok_or(AppError::RefreshTokenInvalid)?;
    Ok(no_store(Json(pair).into_response()))
}

/// Ends the family of a refresh token (RFC 7009's answer: 204 whether or not it was known, so the
/// route tells nothing about tokens it is shown).
#[utoipa::path(post, path = "/api/auth/token/revoke", tag = "tokens", request_body = RefreshBody, responses((status = 204, description = "Ended (the same answer for an unknown token)")))]
async fn revoke_route(
    State(state): State<Billing>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<StatusCode> {
    if let Some(user) = refresh::revoke(&state, &body.refresh_token, state.clock.now()).await? {
        tracing::info!(user = %user, "token family revoked by its client");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The public keys that verify access tokens (RFC 7517). Verifiers may cache it for a minute (a
/// new key signs only once every cached copy holds it); a token naming a key they do not know
/// yet is their cue to fetch it again.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens", responses((status = 200, description = "The keys that verify access tokens", body = super::openapi::schemas::Jwks)))]
async fn jwks(State(state): State<Billing>) -> Result<Response> {
    let set = state.signing.jwks().await?;
    let mut response = Json(set).into_response();
    let cache = format!("public, max-age={}", signing::JWKS_MAX_AGE_SECS);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_str(&cache).expect("ASCII"),
    );
    Ok(response)
}
