//! The account page and its forms (password change, account deletion), and the gated demo pages.

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
    gate_pages,
    page::{CsrfForm, NoticeQuery, PageError, member},
    render,
};
use crate::{auth, error::AppError, gate::CurrentUser, state::AppState};

/// The account page, its forms, and the demo pages behind the gate.
pub(super) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/account", get(show_account))
        .route("/account/password", post(submit_password_change))
        .route("/account/delete", post(submit_delete_account))
        .route(
            "/demo/free",
            get(show_demo).route_layer(gate_pages::require_login_page(state)),
        )
        .route(
            "/demo/pro",
            get(show_demo).route_layer(gate_pages::require_plan_page(state, "pro")),
        )
        .route(
            "/demo/team",
            get(show_demo).route_layer(gate_pages::require_plan_page(state, "team")),
        )
        .route(
            "/demo/export",
            get(show_demo).route_layer(gate_pages::require_feature_page(state, "export")),
        )
}

async fn show_account(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<NoticeQuery>,
    session: Session,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account").await?;
    let notice = q.text(&[
        (
            "password_changed",
            "Your password was changed. Other sessions were signed out.",
        ),
        ("email_verified", "Your email address is confirmed."),
        (
            "verification_sent",
            "We sent a new confirmation link to your address.",
        ),
        (
            "email_change_sent",
            "We sent a confirmation link to the new address.",
        ),
        ("email_changed", "Your email address was changed."),
    ]);
    Ok(account_page(
        &state,
        StatusCode::OK,
        &user,
        &token,
        notice,
        None,
    ))
}

fn account_page(
    state: &AppState,
    status: StatusCode,
    user: &CurrentUser,
    token: &CsrfToken,
    notice: Option<&str>,
    error: Option<String>,
) -> Response {
    render(
        state,
        status,
        "account.html",
        Some(user),
        Some(token),
        context! {
            email_verified => user.user.email_verified,
            has_password => user.user.password_hash.is_some(),
            plan_name => plan_name(state, user),
            notice,
            error,
            min_length => state.config.password_min_length,
            administrator => user.access.roles.iter().any(|r| r == crate::auth::roles::ADMIN),
        },
    )
}

/// The name of the user's plan (`None` without one), as people read it.
fn plan_name(state: &AppState, user: &CurrentUser) -> Option<String> {
    let id = user.access.plan.as_deref()?;
    Some(
        state
            .catalog
            .plan(id)
            .map_or(id.to_owned(), |p| p.name.clone()),
    )
}

/// The account page again, with `err` as its message and status.
pub(super) fn account_error(
    state: &AppState,
    user: &CurrentUser,
    token: &CsrfToken,
    err: AppError,
) -> Response {
    let (status, _) = err.status_and_code();
    account_page(state, status, user, token, None, Some(err.sentence()))
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
    /// The "also revoke API keys" box: present when ticked.
    revoke_api_keys: Option<String>,
}

async fn submit_password_change(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account").await?;
    let change = auth::PasswordChange {
        current: &form.current_password,
        new: &form.new_password,
        revoke_api_keys: form.revoke_api_keys.is_some(),
    };
    let epoch = auth::change_user_password(&state, user.signed_in(), change)
        .await
        .map_err(|err| PageError::reshow(err, |e| account_error(&state, &user, &token, e)))?;
    let mut response = Redirect::to("/account?notice=password_changed").into_response();
    let cookie = auth::device::issue(&state, &user.user.id, epoch);
    response
        .headers_mut()
        .append(axum::http::header::SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Deserialize)]
struct DeleteForm {
    password: Option<String>,
}

async fn submit_delete_account(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account").await?;
    crate::account::delete::delete_account(&state, &user, form.password.as_deref())
        .await
        .map_err(|err| match err {
            AppError::ReauthRequired => super::page::confirm_first("/account"),
            AppError::InvalidCredentials | AppError::RateLimited(_) => {
                PageError::Page(account_error(&state, &user, &token, err))
            }
            err => PageError::App(err),
        })?;
    Ok(Redirect::to("/?notice=account_deleted").into_response())
}

async fn show_demo(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Extension(member): Extension<CurrentUser>,
    uri: axum::http::Uri,
) -> Response {
    let area = uri.path().rsplit('/').next().unwrap_or("").to_owned();
    render(
        &state,
        StatusCode::OK,
        "demo.html",
        Some(&member),
        Some(&token),
        context! { area, plan => plan_name(&state, &member) },
    )
}
