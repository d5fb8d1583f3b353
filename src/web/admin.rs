//! The admin area's pages (`/admin/…`), over the same actions as `/api/admin/…`: find users,
//! read one (access, roles, devices, events) and act on them; the outbound webhook endpoints.
//! Only a signed-in administrator gets a page; anyone else, signed in or not, gets 404.

use axum::{
    Extension, Router,
    extract::{FromRequestParts, Path, Query, State},
    http::StatusCode,
    http::request::Parts,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use minijinja::context;
use serde::Deserialize;
use tower_sessions::Session;

use super::{
    csrf::CsrfToken,
    page::{CsrfForm, NoticeQuery, PageError, page_user},
    render,
};
use crate::{
    account::admin::{actions, webhooks},
    auth::{roles, users},
    error::AppError,
    gate::CurrentUser,
    state::AppState,
};

/// The pages and their forms.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(show_area))
        .route("/admin/users", get(show_users))
        .route("/admin/users/{id}", get(show_user).post(act_on_user))
        .route("/admin/webhooks", get(show_webhooks).post(add_webhook))
        .route("/admin/webhooks/{id}", post(act_on_webhook))
        // Not 405 and its `Allow` for a method the page does not take: the area stays unseen.
        .method_not_allowed_fallback(|| async { PageError::from(AppError::NotFound) })
}

/// The signed-in administrator of an admin page; the 404 page for anyone else. Taken before
/// anything else of the request is read, so a path, query or form that cannot be read tells a
/// stranger nothing either.
struct Administrator(CurrentUser);

impl FromRequestParts<AppState> for Administrator {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("session layer missing")))?;
        match page_user(state, session).await? {
            Some(u) if u.access.roles.iter().any(|r| r == roles::ADMIN) => Ok(Self(u)),
            _ => Err(AppError::NotFound.into()),
        }
    }
}

/// `/admin`: to the users (for an administrator only; the area shows no one else it exists).
async fn show_area(Administrator(_admin): Administrator) -> Result<Response, PageError> {
    Ok(Redirect::to("/admin/users").into_response())
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn show_users(
    State(state): State<AppState>,
    Administrator(admin): Administrator,
    Extension(token): Extension<CsrfToken>,
    Query(query): Query<SearchQuery>,
) -> Result<Response, PageError> {
    let found = users::search(&state.db, &query.q, 50).await?;
    let found: Vec<_> = found
        .iter()
        .map(|u| {
            context! {
                id => u.id, email => u.email, verified => u.email_verified,
                suspended => u.suspended_at.is_some(),
            }
        })
        .collect();
    Ok(render(
        &state,
        StatusCode::OK,
        "admin_users.html",
        Some(&admin),
        Some(&token),
        context! { users => found, q => query.q },
    ))
}

const NOTICES: &[(&str, &str)] = &[
    (
        "signed_out",
        "Every session and app sign-in of this user ended.",
    ),
    ("device_signed_out", "That device was signed out."),
    ("device_gone", "That device was not signed in any more."),
    ("sent", "A new verification link was sent."),
    (
        "verified",
        "The address is proven already: nothing was sent.",
    ),
    ("resynced", "The subscriptions were read again from Stripe."),
    (
        "suspended",
        "The account is suspended: it cannot sign in, its sessions ended.",
    ),
    ("unsuspended", "The suspension is lifted."),
    ("granted", "The role was granted."),
    ("revoked", "The role was taken back."),
];

async fn show_user(
    State(state): State<AppState>,
    Administrator(admin): Administrator,
    Extension(token): Extension<CsrfToken>,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let user = actions::target(&state, &id).await?;
    Ok(user_page(
        &state,
        &admin,
        &token,
        &user,
        q.text(NOTICES),
        None,
        StatusCode::OK,
    )
    .await?)
}

async fn user_page(
    state: &AppState,
    admin: &CurrentUser,
    token: &CsrfToken,
    user: &users::User,
    notice: Option<&str>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let view = actions::view(state, user).await?;
    let plan = (view.user.access.plan.as_deref())
        .and_then(|p| state.catalog.plan(p))
        .map(|p| p.name.clone());
    let events: Vec<_> = (view.events.iter())
        .map(|e| context! { kind => e.kind, at => e.at, client_ip => e.client_ip, details => e.payload.to_string() })
        .collect();
    Ok(render(
        state,
        status,
        "admin_user.html",
        Some(admin),
        Some(token),
        context! {
            view, events, notice, error,
            own => user.id == admin.user.id,
            plan,
        },
    ))
}

#[derive(Deserialize)]
struct UserForm {
    action: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    confirm: Option<String>,
}

/// One form for every action on a user: `action` says which.
async fn act_on_user(
    State(state): State<AppState>,
    Administrator(admin): Administrator,
    Extension(token): Extension<CsrfToken>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<UserForm>,
) -> Result<Response, PageError> {
    let user = actions::target(&state, &id).await?;
    let by = admin.user.id.as_str();
    let text = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_owned();
    let done: Result<&str, AppError> = async {
        Ok(match form.action.as_str() {
            "sign_out" => {
                actions::sign_out_everywhere(&state, by, &user).await?;
                "signed_out"
            }
            "sign_out_device" => {
                match actions::sign_out_device(&state, by, &user, &text(&form.device)).await? {
                    true => "device_signed_out",
                    false => "device_gone",
                }
            }
            "verify_email" => match actions::resend_verification(&state, by, &user).await? {
                true => "sent",
                false => "verified",
            },
            "resync" => {
                actions::resync(&state, by, &user).await?;
                "resynced"
            }
            "suspend" => {
                let reason = text(&form.reason);
                actions::suspend(&state, by, &user, Some(&reason)).await?;
                "suspended"
            }
            "unsuspend" => {
                actions::unsuspend(&state, by, &user).await?;
                "unsuspended"
            }
            "grant_role" => {
                actions::grant_role(&state, by, &user, &text(&form.role)).await?;
                "granted"
            }
            "revoke_role" => {
                actions::revoke_role(&state, by, &user, &text(&form.role)).await?;
                "revoked"
            }
            "delete" => {
                // Typing the address is the confirmation.
                if !text(&form.confirm).eq_ignore_ascii_case(&user.email) {
                    return Err(AppError::InvalidField("confirm".into()));
                }
                actions::delete_account(&state, by, &user).await?;
                "deleted"
            }
            _ => return Err(AppError::InvalidField("action".into())),
        })
    }
    .await;
    match done {
        Ok("deleted") => Ok(Redirect::to("/admin/users").into_response()),
        Ok(notice) => {
            Ok(Redirect::to(&format!("/admin/users/{}?notice={notice}", user.id)).into_response())
        }
        Err(e @ (AppError::Internal(_) | AppError::ServiceUnavailable)) => Err(e.into()),
        Err(e) => {
            let (status, _) = e.status_and_code();
            let message = match &e {
                AppError::InvalidField(f) if f == "confirm" => {
                    "Type the account's email address to delete it.".to_owned()
                }
                AppError::InvalidField(f) if f == "id" => {
                    "Not on your own account: the account page does that.".to_owned()
                }
                AppError::InvalidField(f) if f == "role" => {
                    "A role is 1 to 32 lower-case letters, digits, - or _, starting with a letter."
                        .to_owned()
                }
                AppError::InvalidField(f) if f == "reason" => {
                    "The reason may be at most 500 characters, without control characters."
                        .to_owned()
                }
                e => e.sentence(),
            };
            Ok(user_page(&state, &admin, &token, &user, None, Some(message), status).await?)
        }
    }
}

async fn show_webhooks(
    State(state): State<AppState>,
    Administrator(admin): Administrator,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let notice = q.text(&[
        (
            "retried",
            "The endpoint is started again at its dead delivery.",
        ),
        ("running", "That endpoint was not stopped."),
        ("deleted", "The endpoint was removed."),
    ]);
    let page = webhooks_page(&state, &admin, &token, notice, None, StatusCode::OK).await?;
    Ok(page)
}

async fn webhooks_page(
    state: &AppState,
    admin: &CurrentUser,
    token: &CsrfToken,
    notice: Option<&str>,
    extra: Option<minijinja::Value>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let endpoints = webhooks::endpoints(state).await?;
    Ok(render(
        state,
        status,
        "admin_webhooks.html",
        Some(admin),
        Some(token),
        context! { endpoints, notice, ..extra.unwrap_or_default() },
    ))
}

#[derive(Deserialize)]
struct NewEndpoint {
    url: String,
    #[serde(default)]
    events: String,
}

async fn add_webhook(
    State(state): State<AppState>,
    Administrator(admin): Administrator,
    Extension(token): Extension<CsrfToken>,
    CsrfForm(form): CsrfForm<NewEndpoint>,
) -> Result<Response, PageError> {
    let events: Vec<String> = form
        .events
        .split(',')
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    let page = match webhooks::add(&state, &admin.user.id, &form.url, &events).await {
        // The secret is on this page only: never in a URL, never again.
        Ok(created) => {
            let extra = context! { secret => created.secret, secret_for => created.endpoint.url };
            webhooks_page(
                &state,
                &admin,
                &token,
                None,
                Some(extra),
                StatusCode::CREATED,
            )
            .await?
        }
        Err(AppError::InvalidField(field)) => {
            let error = if field == "url" {
                "The URL must be absolute http or https (https in production), without a user name, password or #fragment."
            } else {
                "Each event type is *, a family such as billing.*, or a type such as account.deleted, comma-separated."
            };
            let extra = context! { error, url => form.url, events => form.events };
            webhooks_page(
                &state,
                &admin,
                &token,
                None,
                Some(extra),
                StatusCode::BAD_REQUEST,
            )
            .await?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(page)
}

#[derive(Deserialize)]
struct EndpointForm {
    action: String,
}

async fn act_on_webhook(
    State(state): State<AppState>,
    Administrator(admin): Administrator,
    Extension(token): Extension<CsrfToken>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<EndpointForm>,
) -> Result<Response, PageError> {
    let by = admin.user.id.as_str();
    let notice = match form.action.as_str() {
        "rotate" => {
            let rotated = webhooks::new_secret(&state, by, &id).await?;
            let extra = context! {
                secret => rotated.secret, secret_for => id,
                previous_until => rotated.previous_valid_until,
            };
            let page = webhooks_page(&state, &admin, &token, None, Some(extra), StatusCode::OK);
            return Ok(page.await?);
        }
        "retry" => match webhooks::start_again(&state, by, &id).await? {
            true => "retried",
            false => "running",
        },
        "delete" => {
            webhooks::delete_endpoint(&state, by, &id).await?;
            "deleted"
        }
        _ => return Err(AppError::InvalidField("action".into()).into()),
    };
    Ok(Redirect::to(&format!("/admin/webhooks?notice={notice}")).into_response())
}
