//! Two-factor pages: the code step of a sign-in, confirming it is you before a sensitive change,
//! and the account page's enrolment, recovery codes and turning it off.

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
    page::{CsrfForm, NoFields, NoticeQuery, PageError, member, with_retry_after},
    render, safe_next_for,
};
use crate::{
    account::tokens::no_store,
    auth::{
        self,
        devices::SignInFrom,
        passkeys,
        rate_limit::ClientIp,
        second_factor::{self, Proof},
    },
    error::AppError,
    gate::CurrentUser,
    state::AppState,
};

/// The routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/login/code", post(submit_code))
        .route("/account/confirm", get(show_reauth).post(submit_reauth))
        .route("/account/2fa", get(show_manage))
        .route("/account/2fa/begin", post(submit_begin))
        .route("/account/2fa/confirm", post(submit_confirm))
        .route("/account/2fa/recovery-codes", post(submit_renew))
        .route("/account/2fa/disable", post(submit_turn_off))
}

/// A page of this module, answering `err` when there is one: its status, its message as `error`,
/// and a rate limit's `Retry-After`.
fn form_page(
    state: &AppState,
    name: &str,
    (user, token): (Option<&CurrentUser>, &CsrfToken),
    err: Option<&AppError>,
    extra: minijinja::Value,
) -> Response {
    let status = err.map_or(StatusCode::OK, |e| e.status_and_code().0);
    let ctx = context! { error => err.map(AppError::public_message), ..extra };
    let response = render(state, status, name, user, Some(token), ctx);
    match err {
        Some(err) => with_retry_after(response, err),
        None => response,
    }
}

/// The code step of a sign-in whose first factor passed: the pending sign-in's token rides in the
/// form (it grants nothing by itself).
pub(super) fn code_page(
    state: &AppState,
    token: &CsrfToken,
    (pending, passkey): (&str, bool),
    next: &str,
    err: Option<&AppError>,
) -> Response {
    let extra = context! { pending, passkey, next };
    form_page(state, "second_factor.html", (None, token), err, extra)
}

#[derive(Deserialize)]
struct CodeForm {
    pending_token: String,
    /// Present when the account has a passkey (the page offers it again).
    passkey: Option<String>,
    code: String,
    next: Option<String>,
    trust: Option<String>,
}

async fn submit_code(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    ip: ClientIp,
    from: SignInFrom,
    session: Session,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> Result<Response, PageError> {
    let next = safe_next_for(&state, form.next.as_deref()).to_owned();
    let proof = Proof::from_typed(&form.code);
    let done = match second_factor::complete(&state, ip, &form.pending_token, proof).await {
        Ok(done) => done,
        Err(err @ (AppError::SecondFactorInvalid | AppError::RateLimited(_))) => {
            let pending = (form.pending_token.as_str(), form.passkey.is_some());
            return Err(code_page(&state, &token, pending, &next, Some(&err)).into());
        }
        Err(err @ AppError::PendingSignInInvalid) => {
            let (status, _) = err.status_and_code();
            let page = render(
                &state,
                status,
                "login.html",
                None,
                Some(&token),
                context! {
                    error => err.sentence(),
                    next => &next,
                    passkeys => state.passkeys.is_some(),
                    social => state.social.buttons(),
                },
            );
            return Err(page.into());
        }
        Err(err) => return Err(err.into()),
    };
    auth::sign_in(&state, &session, &done.user, done.intent.remember, &from).await?;
    tracing::info!(user = %done.user.id, "signed in with a second factor");
    let mut response = Redirect::to(&next).into_response();
    auth::devices::welcome(&state, &done.user, &from, response.headers_mut()).await?;
    if form.trust.is_some() {
        crate::account::second_factor::trust_cookie(&state, &mut response, &done);
    }
    Ok(response)
}

#[derive(Deserialize, Default)]
struct NextQuery {
    next: Option<String>,
}

async fn show_reauth(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<NextQuery>,
    session: Session,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account").await?;
    Ok(reauth_page(
        &state,
        &token,
        &user,
        safe_next_for(&state, q.next.as_deref()),
        None,
    )
    .await?)
}

async fn reauth_page(
    state: &AppState,
    token: &CsrfToken,
    user: &CurrentUser,
    next: &str,
    err: Option<&AppError>,
) -> Result<Response, AppError> {
    let has_code = second_factor::enabled(state, &user.user.id).await?;
    let has_passkey = state.passkeys.is_some() && passkeys::count(state, &user.user.id).await? > 0;
    let extra = context! {
        next,
        has_password => user.user.password_hash.is_some(),
        has_code,
        has_passkey,
    };
    Ok(form_page(
        state,
        "reauth.html",
        (Some(user), token),
        err,
        extra,
    ))
}

#[derive(Deserialize)]
struct ReauthForm {
    password: Option<String>,
    code: Option<String>,
    next: Option<String>,
}

async fn submit_reauth(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    CsrfForm(form): CsrfForm<ReauthForm>,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account").await?;
    let next = safe_next_for(&state, form.next.as_deref()).to_owned();
    fn typed(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
    let (password, proof) = match (typed(&form.password), typed(&form.code)) {
        (Some(password), _) => (Some(password), None),
        (None, Some(code)) => (None, Some(Proof::from_typed(code))),
        (None, None) => (None, None),
    };
    match auth::reauthenticate(&state, user.signed_in(), password, proof).await {
        Ok(()) => Ok(Redirect::to(&next).into_response()),
        Err(err @ (AppError::Internal(_) | AppError::ServiceUnavailable)) => Err(err.into()),
        Err(err) => Err(reauth_page(&state, &token, &user, &next, Some(&err))
            .await?
            .into()),
    }
}

/// The signed-in member, when they proved who they are in the last 10 minutes; otherwise the
/// redirect to confirm it and come back to `back` (a path of this site).
pub(super) async fn recently_proved(
    state: &AppState,
    session: Session,
    back: &str,
) -> Result<CurrentUser, PageError> {
    let user = member(state, session, back).await?;
    match auth::require_recent_proof(state, &user.session).await {
        Ok(()) => Ok(user),
        Err(AppError::ReauthRequired) => Err(super::page::confirm_first(back)),
        Err(err) => Err(err.into()),
    }
}

/// The two-factor page of the account: on or off, recovery codes left, and the actions.
async fn manage_page(
    state: &AppState,
    token: &CsrfToken,
    user: &CurrentUser,
    notice: Option<&str>,
    err: Option<&AppError>,
) -> Result<Response, AppError> {
    let status = second_factor::status(state, &user.user.id).await?;
    let extra = context! { status, notice };
    Ok(form_page(
        state,
        "two_factor.html",
        (Some(user), token),
        err,
        extra,
    ))
}

/// `err` on the two-factor page, except the server's own failures (the error page).
async fn reshow(
    state: &AppState,
    token: &CsrfToken,
    user: &CurrentUser,
    err: AppError,
) -> PageError {
    match err {
        err @ (AppError::Internal(_) | AppError::ServiceUnavailable) => PageError::App(err),
        err => match manage_page(state, token, user, None, Some(&err)).await {
            Ok(page) => PageError::Page(page),
            Err(e) => PageError::App(e),
        },
    }
}

async fn show_manage(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<NoticeQuery>,
    session: Session,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account/2fa").await?;
    let notice = q.text(&[("second_factor_off", "Two-factor sign-in is off.")]);
    Ok(manage_page(&state, &token, &user, notice, None).await?)
}

fn enrolment_page(
    state: &AppState,
    token: &CsrfToken,
    user: &CurrentUser,
    enrolment: &second_factor::Enrolment,
    err: Option<&AppError>,
) -> Response {
    let extra = context! { enrolment };
    no_store(form_page(
        state,
        "two_factor.html",
        (Some(user), token),
        err,
        extra,
    ))
}

fn codes_page(
    state: &AppState,
    token: &CsrfToken,
    user: &CurrentUser,
    codes: &[String],
) -> Response {
    let response = render(
        state,
        StatusCode::OK,
        "two_factor.html",
        Some(user),
        Some(token),
        context! { codes },
    );
    no_store(response)
}

async fn submit_begin(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    let user = recently_proved(&state, session, "/account/2fa").await?;
    let enrolment = match second_factor::begin(&state, &user.user).await {
        Ok(enrolment) => enrolment,
        Err(err) => return Err(reshow(&state, &token, &user, err).await),
    };
    Ok(enrolment_page(&state, &token, &user, &enrolment, None))
}

/// A form with one code (from the app, or a recovery code).
#[derive(Deserialize)]
struct OneCodeForm {
    code: String,
}

async fn submit_confirm(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    CsrfForm(form): CsrfForm<OneCodeForm>,
) -> Result<Response, PageError> {
    let user = recently_proved(&state, session, "/account/2fa").await?;
    match second_factor::confirm(&state, user.signed_in(), &form.code).await {
        Ok(codes) => Ok(codes_page(&state, &token, &user, &codes)),
        Err(err @ (AppError::SecondFactorInvalid | AppError::RateLimited(_))) => {
            // The same secret again, so the app already holding it needs no new scan.
            let again = second_factor::enrolment_in_progress(&state, &user.user).await?;
            match again {
                Some(enrolment) => {
                    Err(enrolment_page(&state, &token, &user, &enrolment, Some(&err)).into())
                }
                None => Err(reshow(&state, &token, &user, err).await),
            }
        }
        Err(err) => Err(reshow(&state, &token, &user, err).await),
    }
}

async fn submit_renew(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    CsrfForm(form): CsrfForm<OneCodeForm>,
) -> Result<Response, PageError> {
    let user = recently_proved(&state, session, "/account/2fa").await?;
    let proof = Proof::from_typed(&form.code);
    let codes = match second_factor::renew_codes(&state, user.signed_in(), proof).await {
        Ok(codes) => codes,
        Err(err) => return Err(reshow(&state, &token, &user, err).await),
    };
    Ok(codes_page(&state, &token, &user, &codes))
}

async fn submit_turn_off(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    CsrfForm(form): CsrfForm<OneCodeForm>,
) -> Result<Response, PageError> {
    let user = recently_proved(&state, session, "/account/2fa").await?;
    let proof = Proof::from_typed(&form.code);
    if let Err(err) = second_factor::turn_off(&state, user.signed_in(), proof).await {
        return Err(reshow(&state, &token, &user, err).await);
    }
    Ok(Redirect::to("/account/2fa?notice=second_factor_off").into_response())
}
