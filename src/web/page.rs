//! What the page handlers share: the CSRF-checked form extractor ([`CsrfForm`]), the page error
//! ([`PageError`], so handlers can use `?`) and the middleware that renders it
//! ([`render_errors`]), and the signed-in member of a page.

use axum::{
    body::Bytes,
    extract::{FromRef, FromRequest, Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use serde::{Deserialize, de::DeserializeOwned};
use tower_sessions::Session;
use url::form_urlencoded;

use super::{csrf, error_page};
use crate::{error::AppError, gate, gate::CurrentUser, state::AppState};

/// A urlencoded form body after the Origin and CSRF checks. A foreign Origin is refused before
/// the body is read, and a missing, repeated or wrong token after; both answer the 403 page (and
/// are logged as a security event). A body over the limit answers the 413 page; one that is not
/// UTF-8 once decoded, or does not deserialize (a missing or repeated field), the 400 page.
pub(super) struct CsrfForm<T>(pub T);

impl<S, T> FromRequest<S> for CsrfForm<T>
where
    AppState: FromRef<S>,
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        if !csrf::origin_allowed(&app, request.headers()) {
            return Err(refused(&app, "origin"));
        }
        let cookie = csrf::cookie_token(&app, request.headers());
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    error_page(
                        &app,
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "The form is too large. Go back, shorten what you typed and try again.",
                    )
                } else {
                    incomplete(&app)
                }
            })?;
        let mut tokens = form_urlencoded::parse(&body).filter(|(k, _)| k == csrf::FIELD);
        let token = match (tokens.next(), tokens.next()) {
            (Some((_, token)), None) => token,
            _ => Default::default(),
        };
        if !csrf::form_token_valid(&app, cookie.as_deref(), &token) {
            return Err(refused(&app, "form_token"));
        }
        if !utf8_form(&body) {
            return Err(incomplete(&app));
        }
        serde_urlencoded::from_bytes(&body)
            .map(CsrfForm)
            .map_err(|_| incomplete(&app))
    }
}

/// The 403 page of a refused form, logged as a security event.
fn refused(state: &AppState, reason: &str) -> Response {
    crate::telemetry::security_event("csrf_refused", None, reason);
    error_page(
        state,
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from this site. Go back, reload the page and try again.",
    )
}

/// The 400 page of a form that cannot be read.
fn incomplete(state: &AppState) -> Response {
    error_page(
        state,
        StatusCode::BAD_REQUEST,
        "The form was incomplete. Go back and try again.",
    )
}

/// True when every name and value of a urlencoded body decodes to UTF-8 (the form decoders
/// would quietly turn `%FF` into U+FFFD) without a NUL character (no stored text holds one, and
/// PostgreSQL refuses it).
fn utf8_form(body: &[u8]) -> bool {
    body.split(|b| *b == b'&').all(|pair| {
        let pair: Vec<u8> = pair
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        percent_encoding::percent_decode(&pair)
            .decode_utf8()
            .is_ok_and(|text| !text.contains('\0'))
    })
}

/// A form with no fields besides the CSRF token.
#[derive(Deserialize)]
pub(super) struct NoFields {}

/// Why a page handler did not succeed.
pub(super) enum PageError {
    /// The error page for this error: its status, its public message and, for a rate limit, a
    /// `Retry-After` header. Rendered by [`render_errors`], which holds the templates.
    App(AppError),
    /// A ready answer: the form again with a message, a redirect.
    Page(Response),
}

impl From<AppError> for PageError {
    fn from(err: AppError) -> Self {
        PageError::App(err)
    }
}

impl From<Response> for PageError {
    fn from(response: Response) -> Self {
        PageError::Page(response)
    }
}

impl PageError {
    /// `err` on the page `reshow` renders for it (a form again, with the message), except the
    /// server's own failures (internal, unavailable), which get the error page.
    pub(super) fn reshow(err: AppError, reshow: impl FnOnce(AppError) -> Response) -> Self {
        match err {
            err @ (AppError::Internal(_) | AppError::ServiceUnavailable) => PageError::App(err),
            err => PageError::Page(reshow(err)),
        }
    }
}

/// The error page still to render: what [`PageError::App`] leaves on its response for
/// [`render_errors`] (the response already has the error's status and `Retry-After`).
#[derive(Clone)]
struct PendingErrorPage {
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Page(response) => response,
            PageError::App(err) => {
                let message = err.sentence();
                // The error's own answer (which logs an internal error, with its cause, once),
                // until `render_errors` puts the page in its place.
                let mut response = err.into_response();
                response
                    .extensions_mut()
                    .insert(PendingErrorPage { message });
                response
            }
        }
    }
}

/// Middleware for pages: renders the error page of a [`PageError::App`], keeping its status and
/// `Retry-After`.
pub(super) async fn render_errors(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let Some(pending) = response.extensions_mut().remove::<PendingErrorPage>() else {
        return readable(&state, response);
    };
    let mut page = error_page(&state, response.status(), &pending.message);
    if let Some(v) = response.headers().get(header::RETRY_AFTER) {
        page.headers_mut().insert(header::RETRY_AFTER, v.clone());
    }
    page
}

/// An extractor's plain-text refusal (a query string that does not deserialize, such as a
/// repeated `next`) as the error page: people read pages, not axum's messages.
fn readable(state: &AppState, response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(plain && response.status().is_client_error()) {
        return response;
    }
    error_page(
        state,
        response.status(),
        "That address could not be read. Check the link, or start again from the home page.",
    )
}

/// `response` with the `Retry-After` header a rate-limit error calls for.
pub(super) fn with_retry_after(mut response: Response, err: &AppError) -> Response {
    if let Some(v) = err.retry_after() {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// The signed-in member of a page that needs one, or the redirect to log in and come back to
/// `back`.
pub(super) async fn member(
    state: &AppState,
    session: Session,
    back: &str,
) -> Result<CurrentUser, PageError> {
    match page_user(state, session).await? {
        Some(u) => Ok(u),
        None => Err(Redirect::to(&format!("/login?next={back}"))
            .into_response()
            .into()),
    }
}

/// The signed-in user of a page, if any.
pub(super) async fn page_user(
    state: &AppState,
    session: Session,
) -> Result<Option<CurrentUser>, PageError> {
    Ok(gate::current_user(state, session).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_error_leaves_its_page_for_the_middleware() {
        let response = PageError::from(AppError::RateLimited(42)).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let pending = response.extensions().get::<PendingErrorPage>().unwrap();
        assert_eq!(pending.message, AppError::RateLimited(42).sentence());
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
    }

    #[test]
    fn a_ready_page_passes_through() {
        let page = Redirect::to("/account").into_response();
        let response = PageError::from(page).into_response();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(response.extensions().get::<PendingErrorPage>().is_none());
    }

    #[test]
    fn the_servers_own_failures_skip_the_form() {
        let reshown = |_| StatusCode::UNPROCESSABLE_ENTITY.into_response();
        assert!(matches!(
            PageError::reshow(AppError::ServiceUnavailable, reshown),
            PageError::App(AppError::ServiceUnavailable)
        ));
        assert!(matches!(
            PageError::reshow(AppError::InvalidCredentials, reshown),
            PageError::Page(_)
        ));
    }
}

/// `?notice=` on a page after a redirect: a key that code chose, shown as one of the page's fixed
/// texts, never echoed from the URL.
#[derive(Deserialize, Default)]
pub struct NoticeQuery {
    notice: Option<String>,
}

impl NoticeQuery {
    /// The text `texts` gives the notice's key, if any.
    pub fn text(&self, texts: &[(&str, &'static str)]) -> Option<&'static str> {
        let key = self.notice.as_deref()?;
        texts.iter().find(|(k, _)| *k == key).map(|(_, text)| *text)
    }
}

/// The way to a change that needs a fresh proof: confirm it is you, then come back to `back` (a
/// path of this site).
pub(super) fn confirm_first(back: &str) -> PageError {
    PageError::Page(Redirect::to(&format!("/account/confirm?next={back}")).into_response())
}
