//! API key management over JSON: list, create (the secret is in this one answer), revoke. Only a
//! signed-in session manages keys; a request made with a key gets 403 `session_required`.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    auth::api_keys::{self, KeyJson, NewKey},
    billing::Billing,
    error::{AppError, Result},
    extract::ApiJson,
    gate::SessionUser,
};

/// The account's API keys (never their secrets).
#[utoipa::path(get, path = "/api/keys", tag = "api-keys", responses((status = 200, description = "The account's keys", body = super::openapi::schemas::KeyList)))]
pub(super) async fn list_keys(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
) -> Result<Json<Value>> {
    let keys = api_keys::list(&state.db, &current.user.id).await?;
    let keys: Vec<KeyJson> = keys.iter().map(KeyJson::from).collect();
    Ok(Json(json!({ "keys": keys })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = NewKeyBody)]
pub(super) struct CreateBody {
    name: String,
    /// `read` (who am I, the gates, forward-auth) and `billing` (Checkout, the portal).
    #[schema(value_type = Vec<crate::auth::api_keys::Scope>)]
    scopes: Vec<String>,
    /// Whole days from now; absent for a key that does not expire.
    expires_in_days: Option<i64>,
}

/// Makes an API key with scopes and an optional expiry.
#[utoipa::path(post, path = "/api/keys", tag = "api-keys", request_body = CreateBody, responses((status = 201, description = "The key and its secret, shown once", body = super::openapi::schemas::NewKey)))]
pub(super) async fn create_key(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<Value>)> {
    crate::auth::require_recent_proof(&state, &current.session).await?;
    let now = state.clock.now();
    let new = NewKey {
        name: &body.name,
        scopes: &body.scopes,
        expires_in_days: body.expires_in_days,
    };
    let (key, secret) = api_keys::create(&state.db, current.signed_in(), new, now).await?;
    tracing::info!(user = %current.user.id, key = %key.id, "API key created");
    let mut answer =
        serde_json::to_value(KeyJson::from(&key)).map_err(|e| AppError::Internal(e.into()))?;
    answer["key"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Revokes an API key.
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "api-keys", params(("id" = String, Path, description = "The key (`key_…`)")), responses((status = 204, description = "Revoked")))]
pub(super) async fn revoke_key(
    State(state): State<Billing>,
    SessionUser(current): SessionUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    crate::auth::require_recent_proof(&state, &current.session).await?;
    if !api_keys::revoke(&state, &current.user.id, &id, state.clock.now()).await? {
        return Err(AppError::NotFound);
    }
    tracing::info!(user = %current.user.id, key = %id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
