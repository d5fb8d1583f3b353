//! The home page, sign-up, log-in and log-out.

use axum::{
    Extension, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use minijinja::context;
use serde::Deserialize;
use tower_sessions::Session;

use super::{
    billing,
    csrf::CsrfToken,
    page::{CsrfForm, NoFields, PageError, page_user, with_retry_after},
    render, safe_next_for,
    second_factor::code_page,
};
use crate::{
    auth::{
        self,
        devices::SignInFrom,
        rate_limit::ClientIp,
        second_factor::{self, Intent, TrustCookie},
    },
    error::AppError,
    state::AppState,
};

/// Sign-up, log-in and log-out.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/signup", get(show_signup).post(submit_signup))
        .route("/login", get(show_login).post(submit_login))
        .route("/logout", post(submit_logout))
}

pub(super) async fn show_home(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    Query(q): Query<NextQuery>,
) -> Result<Response, PageError> {
    let user = page_user(&state, session).await?;
    Ok(render(
        &state,
        StatusCode::OK,
        "home.html",
        user.as_ref(),
        Some(&token),
        context! {
            notice => (q.notice.as_deref() == Some("account_deleted"))
                .then_some("Your account was deleted."),
        },
    ))
}

#[derive(Deserialize, Default)]
pub(super) struct NextQuery {
    next: Option<String>,
    notice: Option<String>,
}

#[derive(Deserialize, Default)]
struct SignupQuery {
    next: Option<String>,
    plan: Option<String>,
    interval: Option<String>,
}

async fn show_signup(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<SignupQuery>,
) -> Response {
    // A paid plan chosen while signed out: sign-up leads straight into Checkout.
    let plan = q
        .plan
        .as_deref()
        .and_then(|p| state.catalog.plan(p))
        .filter(|p| !p.is_free());
    render(
        &state,
        StatusCode::OK,
        "signup.html",
        None,
        Some(&token),
        context! {
            next => safe_next_for(&state, q.next.as_deref()),
            passkeys => state.passkeys.is_some(),
            social => state.social.buttons(),
            min_length => state.config.password_min_length,
            plan => plan.map(|p| p.id.clone()),
            plan_name => plan.map(|p| p.name.clone()),
            interval => q.interval.as_deref().filter(|i| *i == "year").unwrap_or("month"),
        },
    )
}

#[derive(Deserialize)]
struct SignupForm {
    email: String,
    password: String,
    next: Option<String>,
    plan: Option<String>,
    interval: Option<String>,
}

async fn submit_signup(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    ip: ClientIp,
    from: SignInFrom,
    session: Session,
    CsrfForm(form): CsrfForm<SignupForm>,
) -> Result<Response, PageError> {
    let next = safe_next_for(&state, form.next.as_deref()).to_owned();
    let failed = |err| PageError::reshow(err, |e| signup_error(&state, &token, &form, &next, e));
    // Privacy mode: the same page for new and taken addresses, and no session before the
    // address is proven (the JSON API's rule).
    if state.config.registration_privacy {
        auth::register_private(&state, ip, &form.email, &form.password)
            .await
            .map_err(failed)?;
        return Ok(render(
            &state,
            StatusCode::OK,
            "check_email.html",
            None,
            Some(&token),
            context! {},
        ));
    }
    let user = async {
        let user = auth::register_user(&state, ip, &form.email, &form.password).await?;
        auth::sign_in(&state, &session, &user, false, &from).await?;
        Ok::<_, AppError>(user)
    }
    .await
    .map_err(failed)?;
    match form.plan.as_deref().filter(|p| !p.is_empty()) {
        Some(plan) => {
            let interval = form.interval.as_deref().unwrap_or("month");
            billing::checkout_redirect(&state, &user, plan, interval).await
        }
        None => Ok(Redirect::to(&next).into_response()),
    }
}

/// The sign-up page again, with what went wrong.
fn signup_error(
    state: &AppState,
    token: &CsrfToken,
    form: &SignupForm,
    next: &str,
    err: AppError,
) -> Response {
    let (status, _) = err.status_and_code();
    render(
        state,
        status,
        "signup.html",
        None,
        Some(token),
        context! {
            error => err.sentence(),
            email => &form.email,
            next,
            social => state.social.buttons(),
            min_length => state.config.password_min_length,
            plan => &form.plan,
            plan_name => form
                .plan
                .as_deref()
                .and_then(|p| state.catalog.plan(p))
                .map(|p| p.name.clone()),
            interval => &form.interval,
        },
    )
}

async fn show_login(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<NextQuery>,
) -> Response {
    render(
        &state,
        StatusCode::OK,
        "login.html",
        None,
        Some(&token),
        context! {
            next => safe_next_for(&state, q.next.as_deref()),
            passkeys => state.passkeys.is_some(),
            social => state.social.buttons(),
            // Fixed texts chosen by code, never echoed from the URL.
            notice => match q.notice.as_deref() {
                Some("password_reset") => Some("Your password was changed. Sign in with the new one."),
                Some("email_changed") => {
                    Some("Your email address was changed. Sign in with the new one.")
                }
                _ => None,
            },
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    remember: Option<String>,
    next: Option<String>,
}

async fn submit_login(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    ip: ClientIp,
    from: SignInFrom,
    trust: TrustCookie,
    session: Session,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Result<Response, PageError> {
    let next = safe_next_for(&state, form.next.as_deref()).to_owned();
    let signed_in = async {
        let user =
            auth::authenticate(&state, ip, &from.device, &form.email, &form.password).await?;
        let intent = Intent {
            remember: form.remember.is_some(),
            tokens: false,
        };
        if let Some(pending) =
            second_factor::after_first_factor(&state, &user, &trust, intent).await?
        {
            return Ok::<_, AppError>(Err(pending));
        }
        auth::sign_in(&state, &session, &user, form.remember.is_some(), &from).await?;
        Ok(Ok(user))
    }
    .await
    .map_err(|err| match err {
        AppError::InvalidCredentials | AppError::RateLimited(_) | AppError::AccountSuspended => {
            let (status, _) = err.status_and_code();
            let response = render(
                &state,
                status,
                "login.html",
                None,
                Some(&token),
                context! {
                    error => err.sentence(),
                    email => &form.email,
                    next => &next,
                    passkeys => state.passkeys.is_some(),
                    social => state.social.buttons(),
                },
            );
            PageError::Page(with_retry_after(response, &err))
        }
        err => PageError::App(err),
    })?;
    let user = match signed_in {
        Ok(user) => user,
        Err(pending) => {
            let pending = (pending.token.as_str(), pending.passkey());
            return Ok(code_page(&state, &token, pending, &next, None));
        }
    };
    let mut response = Redirect::to(&next).into_response();
    auth::devices::welcome(&state, &user, &from, response.headers_mut()).await?;
    Ok(response)
}

async fn submit_logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    crate::account::auth::sign_out(&state, &headers, &session).await?;
    Ok(Redirect::to("/").into_response())
}
