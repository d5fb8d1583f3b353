//! Social sign-in pages: "Continue with …" (a form, so the flow starts only from our pages), the
//! provider's callback, the emailed link that confirms linking to an existing account, and the
//! account page's link and unlink.

use axum::{
    Extension, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use minijinja::context;
use serde::Deserialize;
use tower_sessions::Session;

use super::{
    billing,
    csrf::CsrfToken,
    page::{CsrfForm, NoticeQuery, PageError, member, page_user},
    render, safe_next_for,
    second_factor::{code_page, recently_proved},
};
use crate::{
    auth::{
        self,
        devices::SignInFrom,
        rate_limit::ClientIp,
        second_factor::{self, Intent, TrustCookie},
        social::{self, Callback, Purpose, accounts, accounts::Outcome},
        users::User,
    },
    error::AppError,
    state::AppState,
};

/// The routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/link", get(show_link).post(submit_link))
        .route("/auth/{provider}", post(submit_start))
        .route("/auth/{provider}/callback", get(callback))
        .route("/account/social", get(show_providers))
        .route("/account/social/{provider}/link", post(submit_link_start))
        .route("/account/social/{provider}/unlink", post(submit_unlink))
}

#[derive(Deserialize)]
struct StartForm {
    next: Option<String>,
    plan: Option<String>,
    interval: Option<String>,
}

/// Sends the browser to the provider, with the binding cookie.
fn to_provider(started: social::Started) -> Response {
    let mut response = Redirect::to(started.authorize_url.as_str()).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, started.cookie);
    response
}

async fn submit_start(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    ip: ClientIp,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<StartForm>,
) -> Result<Response, PageError> {
    accounts::limit_starts(&state, ip).await?;
    // A paid plan chosen before signing up: its Checkout follows the sign-in.
    let plan = form
        .plan
        .as_deref()
        .and_then(|p| state.catalog.plan(p))
        .filter(|p| !p.is_free())
        .map(|p| {
            let interval = if form.interval.as_deref() == Some("year") {
                "year"
            } else {
                "month"
            };
            format!("{}/{interval}", p.id)
        });
    let purpose = Purpose {
        next: safe_next_for(&state, form.next.as_deref()).to_owned(),
        link_user_id: None,
        plan,
    };
    let binding = social::binding_of(&state, &headers);
    Ok(to_provider(
        social::start(&state, &provider, purpose, binding).await?,
    ))
}

async fn submit_link_start(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    session: Session,
    CsrfForm(_): CsrfForm<StartForm>,
) -> Result<Response, PageError> {
    let user = recently_proved(&state, session, "/account/social").await?;
    accounts::may_link(&user.user)?;
    let purpose = Purpose {
        next: "/account/social?notice=linked".into(),
        link_user_id: Some(user.user.id.clone()),
        plan: None,
    };
    let binding = social::binding_of(&state, &headers);
    Ok(to_provider(
        social::start(&state, &provider, purpose, binding).await?,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn callback(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Path(provider): Path<String>,
    Query(query): Query<Callback>,
    (ip, from, trust): (ClientIp, SignInFrom, TrustCookie),
    headers: HeaderMap,
    session: Session,
) -> Result<Response, PageError> {
    let binding = social::binding_of(&state, &headers);
    let finished = social::finish(&state, &provider, &query, binding.as_deref()).await?;
    let current = page_user(&state, session.clone()).await?;
    let signed_in = current.as_ref().map(|c| c.signed_in());
    match accounts::resolve(&state, ip, finished, signed_in).await? {
        Outcome::Linked { next } => Ok(Redirect::to(&next).into_response()),
        Outcome::ConfirmByEmail { email } => Ok(render(
            &state,
            StatusCode::OK,
            "social_confirm.html",
            None,
            Some(&token),
            context! { email },
        )),
        Outcome::SignIn {
            user,
            next,
            plan,
            created,
        } => {
            let to = (next.as_str(), plan, created);
            sign_in(&state, (&session, &from, &trust, &token), &user, to).await
        }
    }
}

/// Signs `user` in as a first factor: the second step when two-factor is on, else the session,
/// then Checkout for a plan chosen before signing up, or `next`.
async fn sign_in(
    state: &AppState,
    (session, from, trust, token): (&Session, &SignInFrom, &TrustCookie, &CsrfToken),
    user: &User,
    (next, plan, created): (&str, Option<String>, bool),
) -> Result<Response, PageError> {
    let intent = Intent::default();
    if let Some(waiting) = second_factor::after_first_factor(state, user, trust, intent).await? {
        let pending = (waiting.token.as_str(), waiting.passkey());
        return Ok(code_page(state, token, pending, next, None));
    }
    auth::sign_in(state, session, user, false, from).await?;
    let mut response = match plan.as_deref().and_then(|p| p.split_once('/')) {
        Some((plan, interval)) => billing::checkout_redirect(state, user, plan, interval).await?,
        None => Redirect::to(next).into_response(),
    };
    // An account made just now is not told of a "new device" (a registration never is).
    if !created {
        auth::devices::welcome(state, user, from, response.headers_mut()).await?;
    }
    Ok(response)
}

#[derive(Deserialize)]
struct LinkQuery {
    token: Option<String>,
}

/// The emailed link's page: a button, so a mail scanner's GET changes nothing.
async fn show_link(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<LinkQuery>,
) -> Response {
    render(
        &state,
        StatusCode::OK,
        "social_link.html",
        None,
        Some(&token),
        context! { token => q.token.unwrap_or_default() },
    )
}

#[derive(Deserialize)]
struct LinkForm {
    token: String,
}

async fn submit_link(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    (from, trust): (SignInFrom, TrustCookie),
    headers: HeaderMap,
    session: Session,
    CsrfForm(form): CsrfForm<LinkForm>,
) -> Result<Response, PageError> {
    let binding = social::binding_of(&state, &headers);
    let (user, next) = accounts::confirm_link(&state, &form.token, binding.as_deref()).await?;
    let to = (next.as_str(), None, false);
    sign_in(&state, (&session, &from, &trust, &token), &user, to).await
}

async fn show_providers(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<NoticeQuery>,
    session: Session,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account/social").await?;
    let linked = accounts::linked(&state, &user.user.id).await?;
    let providers: Vec<_> = state
        .social
        .buttons()
        .into_iter()
        .map(|b| {
            let mine = linked.iter().find(|l| l.provider == b.id);
            context! { id => b.id, name => b.name, linked => mine }
        })
        .collect();
    let notice = q.text(&[
        ("linked", "Linked: it signs you in from now on."),
        ("unlinked", "Unlinked: it no longer signs you in."),
        (
            "last_method",
            "That is your only way to sign in besides email: set a password or add a passkey first.",
        ),
    ]);
    Ok(render(
        &state,
        StatusCode::OK,
        "providers.html",
        Some(&user),
        Some(&token),
        context! { providers, notice },
    ))
}

async fn submit_unlink(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    session: Session,
    CsrfForm(_): CsrfForm<StartForm>,
) -> Result<Response, PageError> {
    let user = recently_proved(&state, session, "/account/social").await?;
    match accounts::unlink(&state, user.signed_in(), &provider).await {
        Ok(()) => Ok(Redirect::to("/account/social?notice=unlinked").into_response()),
        Err(AppError::SocialLastMethod) => {
            Ok(Redirect::to("/account/social?notice=last_method").into_response())
        }
        Err(err) => Err(err.into()),
    }
}
