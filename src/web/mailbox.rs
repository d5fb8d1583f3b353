//! The development mailbox (`/dev/mailbox`): the outbox's latest messages, in development only.

use axum::{
    Extension, Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use minijinja::context;

use super::{csrf::CsrfToken, page::PageError, render};
use crate::{
    config::Mode,
    email::outbox::{self, MailboxMessage},
    error::AppError,
    state::AppState,
};

/// The mailbox page and its JSON.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/dev/mailbox", get(show_mailbox))
        .route("/dev/mailbox.json", get(mailbox_json))
}

/// True where the development mailbox may exist: development mode, no SMTP, no real Stripe keys,
/// and a base URL that is not https.
fn mailbox_enabled(state: &AppState) -> bool {
    state.config.mode == Mode::Development
        && matches!(state.mail_transport, crate::email::Transport::Mailbox)
        && state.config.stripe_secret_key.is_none()
        && !state.https()
}

/// How many messages the development mailbox lists.
const MAILBOX_SIZE: i64 = 100;

async fn mailbox_messages(state: &AppState) -> Result<Vec<MailboxMessage>, AppError> {
    Ok(outbox::latest(&state.db, MAILBOX_SIZE).await?)
}

async fn show_mailbox(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
) -> Result<Response, PageError> {
    if !mailbox_enabled(&state) {
        return Ok(super::error_page(
            &state,
            StatusCode::NOT_FOUND,
            "There is nothing at this address.",
        ));
    }
    let messages = mailbox_messages(&state).await?;
    Ok(render(
        &state,
        StatusCode::OK,
        "mailbox.html",
        None,
        Some(&token),
        context! { messages },
    ))
}

async fn mailbox_json(State(state): State<AppState>) -> Response {
    if !mailbox_enabled(&state) {
        return AppError::NotFound.into_response();
    }
    match mailbox_messages(&state).await {
        Ok(messages) => Json(serde_json::json!({ "messages": messages })).into_response(),
        Err(e) => e.into_response(),
    }
}
