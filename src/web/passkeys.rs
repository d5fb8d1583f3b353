//! The passkeys page of the account: the list (rename, remove) and "Add a passkey", which runs in
//! the one script tollgate serves (`/static/passkeys.js`; WebAuthn has no form-only path).

use axum::{
    Extension, Router,
    extract::{Query, State},
    http::{StatusCode, header},
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
use crate::{auth::passkeys, clock::rfc3339, error::AppError, gate::CurrentUser, state::AppState};

/// The page, its forms and the script.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/account/passkeys", get(show_passkeys))
        .route("/account/passkeys/rename", post(submit_rename))
        .route("/account/passkeys/remove", post(submit_remove))
        .route("/static/passkeys.js", get(script))
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../templates/passkeys.js"),
    )
        .into_response()
}

const BACK: &str = "/account/passkeys";

async fn show_passkeys(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<NoticeQuery>,
    session: Session,
) -> Result<Response, PageError> {
    let user = member(&state, session, BACK).await?;
    let notice = q.text(&[
        (
            "added",
            "Passkey added. You can sign in with it from now on.",
        ),
        ("renamed", "Passkey renamed."),
        ("removed", "Passkey removed: it no longer signs in."),
        ("not_found", "That passkey is not on your account any more."),
        (
            "last_method",
            "That passkey is your only way to sign in besides email: set a password or link a provider first.",
        ),
    ]);
    Ok(page(&state, &token, &user, notice, None).await?)
}

async fn page(
    state: &AppState,
    token: &CsrfToken,
    user: &CurrentUser,
    notice: Option<&str>,
    err: Option<&AppError>,
) -> Result<Response, AppError> {
    let list: Vec<_> = passkeys::list(state, &user.user.id)
        .await?
        .into_iter()
        .map(|p| {
            context! {
                id => p.id,
                name => p.name,
                created_at => rfc3339(p.created_at),
                last_used_at => p.last_used_at.map(rfc3339),
            }
        })
        .collect();
    let status = err.map_or(StatusCode::OK, |e| e.status_and_code().0);
    let two_factor = crate::auth::second_factor::enabled(state, &user.user.id).await?;
    let ctx = context! {
        passkeys => list,
        two_factor,
        available => state.passkeys.is_some(),
        notice,
        error => err.map(AppError::public_message),
    };
    Ok(render(
        state,
        status,
        "passkeys.html",
        Some(user),
        Some(token),
        ctx,
    ))
}

#[derive(Deserialize)]
struct RenameForm {
    id: String,
    name: String,
}

async fn submit_rename(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    CsrfForm(form): CsrfForm<RenameForm>,
) -> Result<Response, PageError> {
    let user = recently_proved(&state, session, BACK).await?;
    match passkeys::rename(&state, user.signed_in(), &form.id, &form.name).await {
        Ok(()) => Ok(Redirect::to("/account/passkeys?notice=renamed").into_response()),
        Err(AppError::NotFound) => {
            Ok(Redirect::to("/account/passkeys?notice=not_found").into_response())
        }
        Err(err @ AppError::InvalidField(_)) => {
            Err(page(&state, &token, &user, None, Some(&err)).await?.into())
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Deserialize)]
struct RemoveForm {
    id: String,
}

async fn submit_remove(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<RemoveForm>,
) -> Result<Response, PageError> {
    let user = recently_proved(&state, session, BACK).await?;
    let notice = match passkeys::remove(&state, user.signed_in(), &form.id).await {
        Ok(()) => "removed",
        Err(AppError::NotFound) => "not_found",
        Err(AppError::SocialLastMethod) => "last_method",
        Err(err) => return Err(err.into()),
    };
    Ok(Redirect::to(&format!("/account/passkeys?notice={notice}")).into_response())
}
