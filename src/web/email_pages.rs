//! Pages of the email flows. Every link in an email opens a page whose GET only shows a
//! confirmation form (link scanners that prefetch change nothing); its POST acts. Also the forgot
//! password and magic-link request forms (the development mailbox is in `mailbox.rs`).

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
    account::account_error,
    csrf::CsrfToken,
    page::{CsrfForm, NoFields, PageError, confirm_first, member},
    render,
    second_factor::code_page,
};
use crate::{
    auth::{
        self,
        device::DeviceCookie,
        devices::SignInFrom,
        email_flows,
        rate_limit::ClientIp,
        second_factor::{self, Intent, TrustCookie},
    },
    error::AppError,
    state::AppState,
};

/// The pages behind the emails' links and the request forms.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/verify-email", get(show_verify).post(submit_verify))
        .route("/reset-password", get(show_reset).post(submit_reset))
        .route("/magic", get(show_magic).post(submit_magic))
        .route("/magic/code", post(submit_magic_code))
        .route("/magic-link", post(submit_magic_request))
        .route(
            "/confirm-email",
            get(show_confirm_email).post(submit_confirm_email),
        )
        .route("/forgot-password", get(show_forgot).post(submit_forgot))
        .route("/account/verify", post(submit_resend_verification))
        .route("/account/email", post(submit_email_change))
}

#[derive(Deserialize, Default)]
struct TokenQuery {
    token: Option<String>,
}

/// A confirmation page for a link.
struct Confirm {
    heading: &'static str,
    text: &'static str,
    action: &'static str,
    button: &'static str,
    ask_password: bool,
    /// Verification: an optional field for the password chosen at sign-up, which keeps it.
    ask_own_password: bool,
    /// Email change: the account's password, unless the browser is signed in to it.
    ask_account_password: bool,
    /// Where to go when the link is used or expired, and the words of that link.
    next_step: (&'static str, &'static str),
}

const VERIFY: Confirm = Confirm {
    heading: "Confirm your email address",
    text: "Press the button to confirm this address.",
    action: "/verify-email",
    button: "Confirm my address",
    ask_password: false,
    ask_own_password: true,
    ask_account_password: false,
    next_step: (
        "/account",
        "Sign in and ask for a new confirmation link on your account page",
    ),
};
const RESET: Confirm = Confirm {
    heading: "Choose a new password",
    text: "All your sessions will be signed out.",
    action: "/reset-password",
    button: "Set the new password",
    ask_password: true,
    ask_own_password: false,
    ask_account_password: false,
    next_step: ("/forgot-password", "Ask for a new password reset link"),
};
const MAGIC: Confirm = Confirm {
    heading: "Sign in",
    text: "Press the button to sign in.",
    action: "/magic",
    button: "Sign me in",
    ask_password: false,
    ask_own_password: false,
    ask_account_password: false,
    next_step: ("/login", "Ask for a new sign-in link"),
};
const CHANGE: Confirm = Confirm {
    heading: "Confirm your new email address",
    text: "Someone asked to make this the address of their account. If it was you, confirm it \
           where you are signed in to that account, or type its password. If not, close this \
           page: nothing changes.",
    action: "/confirm-email",
    button: "Confirm the new address",
    ask_password: false,
    ask_own_password: false,
    ask_account_password: true,
    next_step: ("/account", "Start the change again from your account page"),
};

fn confirm_page(
    state: &AppState,
    token: &CsrfToken,
    page: &Confirm,
    link_token: Option<&str>,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    render(
        state,
        status,
        "confirm.html",
        None,
        Some(token),
        context! {
            heading => page.heading,
            text => page.text,
            action => page.action,
            button => page.button,
            ask_password => page.ask_password,
            ask_own_password => page.ask_own_password,
            ask_account_password => page.ask_account_password,
            token => link_token.filter(|t| !t.is_empty()),
            next_href => page.next_step.0,
            next_text => page.next_step.1,
            min_length => state.config.password_min_length,
            error,
        },
    )
}

macro_rules! show {
    ($name:ident, $page:expr) => {
        async fn $name(
            State(state): State<AppState>,
            Extension(token): Extension<CsrfToken>,
            Query(q): Query<TokenQuery>,
        ) -> Response {
            confirm_page(
                &state,
                &token,
                &$page,
                q.token.as_deref(),
                StatusCode::OK,
                None,
            )
        }
    };
}

show!(show_verify, VERIFY);
show!(show_reset, RESET);
show!(show_magic, MAGIC);
show!(show_confirm_email, CHANGE);

#[derive(Deserialize)]
struct TokenForm {
    token: String,
    password: Option<String>,
}

/// A failed link: the same generic message, the form gone.
fn link_failed(state: &AppState, token: &CsrfToken, page: &Confirm, err: AppError) -> PageError {
    match err {
        AppError::TokenInvalid
        | AppError::PasswordTooShort(_)
        | AppError::PasswordTooCommon
        | AppError::PasswordTooLong
        | AppError::EmailTaken
        | AppError::RateLimited(_) => {
            let (status, _) = err.status_and_code();
            PageError::Page(confirm_page(
                state,
                token,
                page,
                None,
                status,
                Some(err.sentence()),
            ))
        }
        other => PageError::App(other),
    }
}

async fn submit_verify(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    ip: ClientIp,
    from: SignInFrom,
    session: Session,
    CsrfForm(form): CsrfForm<TokenForm>,
) -> Result<Response, PageError> {
    async {
        let proof = (form.token.as_str(), form.password.as_deref());
        crate::account::email::verify_and_sign_in(&state, ip, &session, proof, &from).await?;
        Ok::<_, AppError>(())
    }
    .await
    .map_err(|e| link_failed(&state, &token, &VERIFY, e))?;
    Ok(Redirect::to("/account?notice=email_verified").into_response())
}

async fn submit_reset(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    ip: ClientIp,
    CsrfForm(form): CsrfForm<TokenForm>,
) -> Result<Response, PageError> {
    let password = form.password.unwrap_or_default();
    email_flows::reset_password(&state, ip, &form.token, &password)
        .await
        .map_err(|e| match e {
            // A password the policy refuses keeps the form (the token was not used).
            AppError::PasswordTooShort(_)
            | AppError::PasswordTooCommon
            | AppError::PasswordTooLong => {
                let (status, _) = e.status_and_code();
                PageError::Page(confirm_page(
                    &state,
                    &token,
                    &RESET,
                    Some(&form.token),
                    status,
                    Some(e.sentence()),
                ))
            }
            e => link_failed(&state, &token, &RESET, e),
        })?;
    Ok(Redirect::to("/login?notice=password_reset").into_response())
}

/// Signs in with a magic link's token, or with the address and the code its email carried, and
/// goes to the account page; for an account with a second factor, to the code step first.
async fn magic_sign_in(
    state: &AppState,
    (ip, from, trust): (ClientIp, &SignInFrom, &TrustCookie),
    session: &Session,
    csrf: &CsrfToken,
    token: Option<&str>,
    email_and_code: Option<(&str, &str)>,
) -> Result<Response, AppError> {
    let user = crate::auth::magic::consume_magic(state, ip, token, email_and_code).await?;
    let intent = Intent::default();
    if let Some(pending) = second_factor::after_first_factor(state, &user, trust, intent).await? {
        let pending = (pending.token.as_str(), pending.passkey());
        return Ok(code_page(state, csrf, pending, "/account", None));
    }
    auth::sign_in(state, session, &user, false, from).await?;
    let mut response = Redirect::to("/account").into_response();
    auth::devices::welcome(state, &user, from, response.headers_mut()).await?;
    Ok(response)
}

async fn submit_magic(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    ip: ClientIp,
    from: SignInFrom,
    trust: TrustCookie,
    session: Session,
    CsrfForm(form): CsrfForm<TokenForm>,
) -> Result<Response, PageError> {
    let request = (ip, &from, &trust);
    let link = Some(form.token.as_str());
    magic_sign_in(&state, request, &session, &token, link, None)
        .await
        .map_err(|e| link_failed(&state, &token, &MAGIC, e))
}

#[derive(Deserialize)]
struct CodeForm {
    email: String,
    code: String,
}

async fn submit_magic_code(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    ip: ClientIp,
    from: SignInFrom,
    trust: TrustCookie,
    session: Session,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> Result<Response, PageError> {
    let request = (ip, &from, &trust);
    let email_and_code = Some((form.email.as_str(), form.code.as_str()));
    let response = magic_sign_in(&state, request, &session, &token, None, email_and_code)
        .await
        .map_err(|e| match e {
            AppError::TokenInvalid | AppError::RateLimited(_) => {
                let (status, _) = e.status_and_code();
                PageError::Page(render(
                    &state,
                    status,
                    "check_email.html",
                    None,
                    Some(&token),
                    context! { code_form => true, email => &form.email, error => e.sentence() },
                ))
            }
            e => PageError::App(e),
        })?;
    Ok(response)
}

async fn submit_confirm_email(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    ip: ClientIp,
    session: Session,
    CsrfForm(form): CsrfForm<TokenForm>,
) -> Result<Response, PageError> {
    let signed_in = crate::gate::current_user(&state, session).await?;
    let here = signed_in.is_some();
    let verifier = email_flows::Verifier {
        signed_in: signed_in.as_ref().map(crate::gate::CurrentUser::signed_in),
        password: form.password.as_deref(),
    };
    crate::account::email::confirm_email_change(&state, ip, &form.token, verifier)
        .await
        .map_err(|e| match e {
            // Not signed in to the account here and no (or a wrong) password: the form again,
            // with the link still usable.
            AppError::ReauthRequired | AppError::InvalidCredentials | AppError::RateLimited(_) => {
                let (status, _) = e.status_and_code();
                PageError::Page(confirm_page(
                    &state,
                    &token,
                    &CHANGE,
                    Some(&form.token),
                    status,
                    Some(e.sentence()),
                ))
            }
            e => link_failed(&state, &token, &CHANGE, e),
        })?;
    // Confirmed with the password in a browser that is not signed in: the sign-in page says so.
    let to = if here {
        "/account?notice=email_changed"
    } else {
        "/login?notice=email_changed"
    };
    Ok(Redirect::to(to).into_response())
}

async fn show_forgot(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
) -> Response {
    render(
        &state,
        StatusCode::OK,
        "forgot.html",
        None,
        Some(&token),
        context! {},
    )
}

#[derive(Deserialize)]
struct EmailForm {
    email: String,
}

/// The request forms: the same page whether or not the address has an account.
async fn email_request(
    state: &AppState,
    token: &CsrfToken,
    ip: ClientIp,
    device: &DeviceCookie,
    form: EmailForm,
    magic: bool,
) -> Result<Response, PageError> {
    // The owner's own browser (its device cookie) counts on its own mail bucket.
    if magic {
        crate::auth::magic::request_magic_link(state, ip, device, &form.email).await?;
    } else {
        email_flows::forgot_password(state, ip, device, &form.email).await?;
    }
    Ok(render(
        state,
        StatusCode::OK,
        "check_email.html",
        None,
        Some(token),
        context! { code_form => magic, email => form.email },
    ))
}

async fn submit_forgot(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    ip: ClientIp,
    device: DeviceCookie,
    CsrfForm(form): CsrfForm<EmailForm>,
) -> Result<Response, PageError> {
    email_request(&state, &token, ip, &device, form, false).await
}

async fn submit_magic_request(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    ip: ClientIp,
    device: DeviceCookie,
    CsrfForm(form): CsrfForm<EmailForm>,
) -> Result<Response, PageError> {
    email_request(&state, &token, ip, &device, form, true).await
}

async fn submit_resend_verification(
    State(state): State<AppState>,
    ip: ClientIp,
    session: Session,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account").await?;
    email_flows::request_verification(&state, ip, &user.user).await?;
    Ok(Redirect::to("/account?notice=verification_sent").into_response())
}

#[derive(Deserialize)]
struct EmailChangeForm {
    new_email: String,
    password: Option<String>,
}

async fn submit_email_change(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    ip: ClientIp,
    session: Session,
    CsrfForm(form): CsrfForm<EmailChangeForm>,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account").await?;
    auth::email_change::request_email_change(
        &state,
        ip,
        user.signed_in(),
        form.password.as_deref(),
        &form.new_email,
    )
    .await
    .map_err(|e| match e {
        AppError::ReauthRequired => confirm_first("/account"),
        e => PageError::reshow(e, |e| account_error(&state, &user, &token, e)),
    })?;
    Ok(Redirect::to("/account?notice=email_change_sent").into_response())
}
