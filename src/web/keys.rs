//! The API keys page: the user's keys, a form to make one (its secret shown on the answer page,
//! once, never in a URL), and a revoke button per key.

use axum::{
    Extension, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use minijinja::context;
use serde::Deserialize;
use tower_sessions::Session;

use super::{
    csrf::CsrfToken,
    page::{CsrfForm, NoticeQuery, PageError, member},
    render,
    second_factor::recently_proved,
};
use crate::{
    auth::api_keys::{self, KeyJson, NewKey},
    error::AppError,
    gate::CurrentUser,
    state::AppState,
};

/// The page and its two forms.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/account/keys", get(show_keys).post(submit_new_key))
        .route("/account/keys/revoke", post(submit_revoke))
}

/// What the page shows besides the list.
#[derive(Default)]
struct Shown {
    notice: Option<&'static str>,
    error: Option<String>,
    /// A key just made: its name and secret.
    new_key: Option<(String, String)>,
}

async fn keys_page(
    state: &AppState,
    status: StatusCode,
    user: &CurrentUser,
    token: &CsrfToken,
    shown: Shown,
) -> Result<Response, PageError> {
    let keys = api_keys::list(&state.db, &user.user.id).await?;
    let keys: Vec<KeyJson> = keys.iter().map(KeyJson::from).collect();
    let (new_key_name, new_key) = shown.new_key.unzip();
    Ok(render(
        state,
        status,
        "keys.html",
        Some(user),
        Some(token),
        context! { keys, notice => shown.notice, error => shown.error, new_key_name, new_key },
    ))
}

async fn show_keys(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<NoticeQuery>,
    session: Session,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account/keys").await?;
    let notice = q.text(&[("revoked", "The key was revoked. It no longer works.")]);
    let shown = Shown {
        notice,
        ..Shown::default()
    };
    keys_page(&state, StatusCode::OK, &user, &token, shown).await
}

#[derive(Deserialize)]
struct NewKeyForm {
    name: String,
    scope_read: Option<String>,
    scope_billing: Option<String>,
    /// Empty for a key that does not expire.
    #[serde(default)]
    expires_in_days: String,
}

async fn submit_new_key(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    CsrfForm(form): CsrfForm<NewKeyForm>,
) -> Result<Response, PageError> {
    let user = recently_proved(&state, session, "/account/keys").await?;
    let scopes: Vec<String> = [(&form.scope_read, "read"), (&form.scope_billing, "billing")]
        .into_iter()
        .filter(|(ticked, _)| ticked.is_some())
        .map(|(_, scope)| scope.to_owned())
        .collect();
    let now = state.clock.now();
    let expires_in_days = match form.expires_in_days.as_str() {
        "" => Ok(None),
        days => days
            .parse::<i64>()
            .map(Some)
            .map_err(|_| AppError::InvalidField("expires_in_days".into())),
    };
    let made = match expires_in_days {
        Ok(expires_in_days) => {
            let new = NewKey {
                name: &form.name,
                scopes: &scopes,
                expires_in_days,
            };
            api_keys::create(&state.db, user.signed_in(), new, now).await
        }
        Err(e) => Err(e),
    };
    let shown = match made {
        Ok((key, secret)) => {
            tracing::info!(user = %user.user.id, key = %key.id, "API key created");
            Shown {
                new_key: Some((key.name, secret)),
                ..Shown::default()
            }
        }
        Err(err @ (AppError::Internal(_) | AppError::ServiceUnavailable)) => {
            return Err(PageError::App(err));
        }
        Err(err) => {
            let (status, _) = err.status_and_code();
            let shown = Shown {
                error: Some(err.sentence()),
                ..Shown::default()
            };
            return keys_page(&state, status, &user, &token, shown).await;
        }
    };
    keys_page(&state, StatusCode::OK, &user, &token, shown).await
}

#[derive(Deserialize)]
struct RevokeForm {
    id: String,
}

async fn submit_revoke(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    CsrfForm(form): CsrfForm<RevokeForm>,
) -> Result<Response, PageError> {
    let user = recently_proved(&state, session, "/account/keys").await?;
    let now = state.clock.now();
    if !api_keys::revoke(&state, &user.user.id, &form.id, now).await? {
        let shown = Shown {
            error: Some("That key is not one of yours, or it was revoked already.".into()),
            ..Shown::default()
        };
        return keys_page(&state, StatusCode::NOT_FOUND, &user, &token, shown).await;
    }
    tracing::info!(user = %user.user.id, key = %form.id, "API key revoked");
    Ok(Redirect::to("/account/keys?notice=revoked").into_response())
}
