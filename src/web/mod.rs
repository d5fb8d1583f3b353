//! Server-rendered HTML pages (templates in `templates/`), usable without JavaScript.
//!
//! Forms post back to the page's own path with a CSRF token ([`csrf`]); failures re-render the
//! form with a readable message and the right status, successes redirect (303). Messages never
//! reveal whether an account exists (registration's "already has an account" is the documented
//! exception).

mod billing;
pub mod csrf;
mod email_pages;
pub mod gate_pages;

use std::collections::HashMap;

use axum::{
    Extension, Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    middleware,
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use minijinja::{Environment, Value, context};
use serde::Deserialize;
use tower_sessions::Session;

use crate::{
    auth::{self, device::DeviceCookie, rate_limit::ClientIp},
    base::Base,
    error::AppError,
    gate,
    gate::CurrentUser,
    state::AppState,
};
use csrf::CsrfToken;

/// The page routes, with the CSRF cookie middleware.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(show_home))
        .route("/signup", get(show_signup).post(submit_signup))
        .route("/login", get(show_login).post(submit_login))
        .route("/logout", axum::routing::post(submit_logout))
        .route("/account", get(show_account))
        .route(
            "/account/password",
            axum::routing::post(submit_password_change),
        )
        .route("/pricing", get(billing::show_pricing))
        .route("/billing", get(billing::show_billing))
        .route(
            "/billing/checkout",
            axum::routing::post(billing::submit_checkout),
        )
        .route(
            "/billing/portal",
            axum::routing::post(billing::submit_portal),
        )
        .route("/billing/success", get(billing::show_success))
        .route(
            "/verify-email",
            get(email_pages::show_verify).post(email_pages::submit_verify),
        )
        .route(
            "/reset-password",
            get(email_pages::show_reset).post(email_pages::submit_reset),
        )
        .route(
            "/magic",
            get(email_pages::show_magic).post(email_pages::submit_magic),
        )
        .route(
            "/magic/code",
            axum::routing::post(email_pages::submit_magic_code),
        )
        .route(
            "/magic-link",
            axum::routing::post(email_pages::submit_magic_request),
        )
        .route(
            "/confirm-email",
            get(email_pages::show_confirm_email).post(email_pages::submit_confirm_email),
        )
        .route(
            "/forgot-password",
            get(email_pages::show_forgot).post(email_pages::submit_forgot),
        )
        .route(
            "/account/verify",
            axum::routing::post(email_pages::submit_resend_verification),
        )
        .route(
            "/account/email",
            axum::routing::post(email_pages::submit_email_change),
        )
        .route(
            "/account/delete",
            axum::routing::post(submit_delete_account),
        )
        .route("/dev/mailbox", get(email_pages::show_mailbox))
        .route("/dev/mailbox.json", get(email_pages::mailbox_json))
        .route(
            "/demo/free",
            get(show_demo).route_layer(gate_pages::require_login_page(&state)),
        )
        .route(
            "/demo/pro",
            get(show_demo).route_layer(gate_pages::require_plan_page(&state, "pro")),
        )
        .route(
            "/demo/team",
            get(show_demo).route_layer(gate_pages::require_plan_page(&state, "team")),
        )
        .route(
            "/demo/export",
            get(show_demo).route_layer(gate_pages::require_feature_page(&state, "export")),
        )
        .layer(middleware::from_fn_with_state(state, csrf::ensure_cookie))
        .route("/static/style.css", get(stylesheet))
}

/// Loads the templates, compiled into the binary.
pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("../../templates/base.html")),
        ("home.html", include_str!("../../templates/home.html")),
        ("signup.html", include_str!("../../templates/signup.html")),
        ("login.html", include_str!("../../templates/login.html")),
        ("account.html", include_str!("../../templates/account.html")),
        ("error.html", include_str!("../../templates/error.html")),
        ("pricing.html", include_str!("../../templates/pricing.html")),
        ("billing.html", include_str!("../../templates/billing.html")),
        ("success.html", include_str!("../../templates/success.html")),
        ("demo.html", include_str!("../../templates/demo.html")),
        (
            "email/layout.html",
            include_str!("../../templates/email/layout.html"),
        ),
        ("confirm.html", include_str!("../../templates/confirm.html")),
        (
            "check_email.html",
            include_str!("../../templates/check_email.html"),
        ),
        ("forgot.html", include_str!("../../templates/forgot.html")),
        ("mailbox.html", include_str!("../../templates/mailbox.html")),
    ] {
        env.add_template(name, source)
            .expect("templates are checked by tests");
    }
    // Email templates: `<kind>.txt` (first line is the subject) and `<kind>.html`.
    for (name, source) in crate::email::TEMPLATES {
        env.add_template(name, source)
            .expect("templates are checked by tests");
    }
    env
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../templates/style.css"),
    )
        .into_response()
}

/// Renders `name` with the common context (product name, signed-in email, CSRF token).
fn render(
    state: &Base,
    status: StatusCode,
    name: &str,
    user: Option<&CurrentUser>,
    token: Option<&CsrfToken>,
    extra: Value,
) -> Response {
    let ctx = context! {
        product_name => &state.config.product_name,
        user_email => user.map(|u| u.user.email.clone()),
        csrf_token => token.map(|t| t.0.clone()),
        ..extra
    };
    match state
        .templates
        .get_template(name)
        .and_then(|t| t.render(ctx))
    {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => AppError::Internal(anyhow::anyhow!("template {name}: {e}")).into_response(),
    }
}

/// A readable error page in the site's look.
pub fn error_page(state: &Base, status: StatusCode, message: &str) -> Response {
    render(
        state,
        status,
        "error.html",
        None,
        None,
        context! { status => status.as_u16(), message },
    )
}

/// `next` only ever points inside this site — or, with `TOLLGATE_COOKIE_DOMAIN`, to a sibling
/// host under that domain (forward-auth across subdomains), on the base URL's scheme.
pub fn safe_next_for<'a>(state: &AppState, next: Option<&'a str>) -> &'a str {
    if let (Some(domain), Some(n)) = (state.config.cookie_domain.as_deref(), next)
        // The URL parser drops tabs and newlines silently; the redirect header would not.
        && visible_ascii(n)
        && let Ok(url) = url::Url::parse(n)
        && url.scheme() == state.base_url.scheme()
        && url.username().is_empty()
        && url.password().is_none()
        && url.host_str().is_some_and(|h| {
            let domain = domain.trim_start_matches('.');
            !h.split('.').any(str::is_empty) && (h == domain || h.ends_with(&format!(".{domain}")))
        })
        // Only a URL written as the parser writes it back: `https:host`, `https://host\@other`
        // and other spellings browsers read leniently are not passed on.
        && (url.as_str() == n || (url.path() == "/" && url.as_str() == format!("{n}/")))
    {
        return n;
    }
    safe_next(next)
}

/// `next` only ever points inside this site.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && visible_ascii(n) =>
        {
            n
        }
        _ => "/account",
    }
}

/// Only what can stand in a `Location` header as it is: no controls, spaces or raw non-ASCII.
fn visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// A form body after the CSRF and Origin checks; `Err` is the ready 403 page.
#[expect(
    clippy::result_large_err,
    reason = "the error is the response itself, returned at once"
)]
fn checked_form<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Response> {
    let fields: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let token = fields.get(csrf::FIELD).map(String::as_str).unwrap_or("");
    let origin = csrf::origin_allowed(state, headers);
    if !origin || !csrf::form_token_valid(state, headers, token) {
        let reason = if origin { "form_token" } else { "origin" };
        crate::telemetry::security_event("csrf_refused", None, reason);
        return Err(error_page(
            state,
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this site. Go back, reload the page and try again.",
        ));
    }
    serde_urlencoded::from_bytes(body).map_err(|_| {
        error_page(
            state,
            StatusCode::BAD_REQUEST,
            "The form was incomplete. Go back and try again.",
        )
    })
}

/// A form with no fields besides the CSRF token.
#[derive(Deserialize)]
pub(super) struct NoFields {}

/// The signed-in member of a page that needs one, or the redirect to log in and come back to
/// `back`.
async fn member(state: &AppState, session: Session, back: &str) -> Result<CurrentUser, Response> {
    match page_user(state, session).await? {
        Some(u) => Ok(u),
        None => Err(Redirect::to(&format!("/login?next={back}")).into_response()),
    }
}

/// A form post by a signed-in member: the CSRF-checked form and the member, or the ready answer
/// (the 403 page, or the redirect to log in and come back to `back`).
async fn member_form<T: serde::de::DeserializeOwned>(
    state: &AppState,
    session: Session,
    headers: &HeaderMap,
    body: &Bytes,
    back: &str,
) -> Result<(T, CurrentUser), Response> {
    let form = checked_form(state, headers, body)?;
    Ok((form, member(state, session, back).await?))
}

async fn page_user(state: &AppState, session: Session) -> Result<Option<CurrentUser>, Response> {
    gate::current_user(state, session)
        .await
        .map_err(|e| error_response(state, e))
}

/// The page for an error that is not about the form's fields.
fn error_response(state: &AppState, err: AppError) -> Response {
    let (status, _) = err.status_and_code();
    with_retry_after(error_page(state, status, &err.public_message()), &err)
}

/// `response` with the `Retry-After` header a rate-limit error calls for.
fn with_retry_after(mut response: Response, err: &AppError) -> Response {
    if let AppError::RateLimited(secs) = err
        && let Ok(v) = secs.to_string().parse()
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

#[derive(Deserialize)]
struct DeleteForm {
    password: String,
}

async fn submit_delete_account(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, user): (DeleteForm, _) =
        match member_form(&state, session, &headers, &body, "/account").await {
            Ok(v) => v,
            Err(r) => return r,
        };
    match crate::account::delete::delete_account(&state, &user, &form.password).await {
        Ok(()) => Redirect::to("/?notice=account_deleted").into_response(),
        Err(e @ (AppError::InvalidCredentials | AppError::RateLimited(_))) => {
            account_error(&state, &user, &token, e)
        }
        Err(e) => error_response(&state, e),
    }
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
        context! { area, plan => member.access.plan.clone() },
    )
}

async fn show_home(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    Query(q): Query<NextQuery>,
) -> Response {
    let user = match page_user(&state, session).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    render(
        &state,
        StatusCode::OK,
        "home.html",
        user.as_ref(),
        Some(&token),
        context! {
            notice => (q.notice.as_deref() == Some("account_deleted"))
                .then_some("Your account was deleted."),
        },
    )
}

#[derive(Deserialize, Default)]
struct NextQuery {
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
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: SignupForm = match checked_form(&state, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let next = safe_next_for(&state, form.next.as_deref()).to_owned();
    // Privacy mode: the same page for new and taken addresses, and no session before the
    // address is proven (the JSON API's rule).
    if state.config.registration_privacy {
        return match auth::register_private(&state, ip, &form.email, &form.password).await {
            Ok(()) => render(
                &state,
                StatusCode::OK,
                "check_email.html",
                None,
                Some(&token),
                context! {},
            ),
            Err(err @ (AppError::Internal(_) | AppError::ServiceUnavailable)) => {
                error_response(&state, err)
            }
            Err(err) => signup_error(&state, &token, &form, &next, err),
        };
    }
    let result = async {
        let user = auth::register_user(&state, ip, &form.email, &form.password).await?;
        auth::sign_in(&state, &session, &user, false).await?;
        Ok(user)
    }
    .await;
    match result {
        Ok(user) => match form.plan.as_deref().filter(|p| !p.is_empty()) {
            Some(plan) => {
                let interval = form.interval.as_deref().unwrap_or("month");
                billing::checkout_redirect(&state, &user, plan, interval).await
            }
            None => Redirect::to(&next).into_response(),
        },
        Err(err @ (AppError::Internal(_) | AppError::ServiceUnavailable)) => {
            error_response(&state, err)
        }
        Err(err) => signup_error(&state, &token, &form, &next, err),
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
            error => err.public_message(),
            email => &form.email,
            next,
            min_length => state.config.password_min_length,
            plan => &form.plan,
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
            // Fixed texts chosen by code, never echoed from the URL.
            notice => (q.notice.as_deref() == Some("password_reset"))
                .then_some("Your password was changed. Sign in with the new one."),
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
    device: DeviceCookie,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: LoginForm = match checked_form(&state, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let next = safe_next_for(&state, form.next.as_deref()).to_owned();
    let result = async {
        let user = auth::authenticate(&state, ip, &device, &form.email, &form.password).await?;
        auth::sign_in(&state, &session, &user, form.remember.is_some()).await?;
        Ok(user)
    }
    .await;
    match result {
        Ok(user) => {
            let mut response = Redirect::to(&next).into_response();
            let cookie = auth::device::issue(&state, &user.id, user.session_epoch);
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(err @ (AppError::InvalidCredentials | AppError::RateLimited(_))) => {
            let (status, _) = err.status_and_code();
            let response = render(
                &state,
                status,
                "login.html",
                None,
                Some(&token),
                context! { error => err.public_message(), email => form.email, next },
            );
            with_retry_after(response, &err)
        }
        Err(err) => error_response(&state, err),
    }
}

async fn submit_logout(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = checked_form::<NoFields>(&state, &headers, &body) {
        return r;
    }
    match session.flush().await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => error_response(&state, e.into()),
    }
}

#[derive(Deserialize, Default)]
struct AccountQuery {
    notice: Option<String>,
}

async fn show_account(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<AccountQuery>,
    session: Session,
) -> Response {
    let user = match member(&state, session, "/account").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    // Notices are fixed texts chosen by code, never echoed from the URL.
    let notice = match q.notice.as_deref() {
        Some("password_changed") => {
            Some("Your password was changed. Other sessions were signed out.")
        }
        Some("email_verified") => Some("Your email address is confirmed."),
        Some("verification_sent") => Some("We sent a new confirmation link to your address."),
        Some("email_change_sent") => Some("We sent a confirmation link to the new address."),
        Some("email_changed") => Some("Your email address was changed."),
        _ => None,
    };
    account_page(&state, StatusCode::OK, &user, &token, notice, None)
}

fn account_page(
    state: &AppState,
    status: StatusCode,
    user: &CurrentUser,
    token: &CsrfToken,
    notice: Option<&str>,
    error: Option<String>,
) -> Response {
    let access = &user.access;
    render(
        state,
        status,
        "account.html",
        Some(user),
        Some(token),
        context! {
            email_verified => user.user.email_verified,
            access,
            notice,
            error,
            min_length => state.config.password_min_length,
        },
    )
}

/// The account page again, with `err` as its message and status.
fn account_error(
    state: &AppState,
    user: &CurrentUser,
    token: &CsrfToken,
    err: AppError,
) -> Response {
    let (status, _) = err.status_and_code();
    account_page(state, status, user, token, None, Some(err.public_message()))
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

async fn submit_password_change(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, user): (PasswordForm, _) =
        match member_form(&state, session, &headers, &body, "/account").await {
            Ok(v) => v,
            Err(r) => return r,
        };
    match auth::change_user_password(
        &state,
        user.signed_in(),
        &form.current_password,
        &form.new_password,
    )
    .await
    {
        Ok(()) => Redirect::to("/account?notice=password_changed").into_response(),
        Err(err @ (AppError::Internal(_) | AppError::ServiceUnavailable)) => {
            error_response(&state, err)
        }
        Err(err) => account_error(&state, &user, &token, err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        for (input, expected) in [
            (Some("/billing"), "/billing"),
            (Some("/a?b=c"), "/a?b=c"),
            (Some("//evil.example"), "/account"),
            (Some("/\\evil.example"), "/account"),
            (Some("https://evil.example"), "/account"),
            (Some("javascript:alert(1)"), "/account"),
            (Some("/a\nb"), "/account"),
            (Some("/caf\u{e9}"), "/account"),
            (Some("/a b"), "/account"),
            (None, "/account"),
        ] {
            assert_eq!(safe_next(input), expected, "{input:?}");
        }
    }

    #[test]
    fn every_template_compiles() {
        let env = templates();
        for name in [
            "home.html",
            "signup.html",
            "login.html",
            "account.html",
            "error.html",
        ] {
            env.get_template(name).expect(name);
        }
    }
}
