//! What the page handlers share: the CSRF-checked form extractor ([`CsrfForm`]), the page error
//! ([`PageError`], so handlers can use `?`) and the middleware that renders it
//! ([`render_errors`]), and the signed-in member of a page.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{FromRef, FromRequest, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use serde::{Deserialize, de::DeserializeOwned};
use tower_sessions::Session;

use super::{csrf, error_page};
use crate::{error::AppError, gate, gate::CurrentUser, state::AppState};

/// A urlencoded form body after the CSRF and Origin checks. A refused token or Origin is
/// answered with the 403 page (and logged as a security event), a body that does not
/// deserialize with the 400 page, a body over the limit as `Bytes` answers it.
pub(super) struct CsrfForm<T>(pub T);

impl<S, T> FromRequest<S> for CsrfForm<T>
where
    AppState: FromRef<S>,
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        checked_form(&AppState::from_ref(state), &headers, &body).map(CsrfForm)
    }
}

/// A form body after the CSRF and Origin checks; `Err` is the ready 403 (or 400) page.
#[expect(
    clippy::result_large_err,
    reason = "the error is the response itself, returned at once"
)]
fn checked_form<T: DeserializeOwned>(
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
/// [`render_errors`].
#[derive(Clone)]
struct PendingErrorPage {
    status: StatusCode,
    message: String,
    retry_after: Option<HeaderValue>,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Page(response) => response,
            PageError::App(err) => {
                let (status, _) = err.status_and_code();
                let message = err.public_message();
                let pending = PendingErrorPage {
                    status,
                    message: message.clone(),
                    retry_after: retry_after(&err),
                };
                // Plain text until `render_errors` puts the page in its place.
                let mut response = (status, message).into_response();
                response.extensions_mut().insert(pending);
                response
            }
        }
    }
}

/// Middleware for pages: renders the error page of a [`PageError::App`].
pub(super) async fn render_errors(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    match response.extensions_mut().remove::<PendingErrorPage>() {
        Some(p) => {
            let mut page = error_page(&state, p.status, &p.message);
            if let Some(v) = p.retry_after {
                page.headers_mut().insert(header::RETRY_AFTER, v);
            }
            page
        }
        None => response,
    }
}

/// The `Retry-After` value a rate-limit error calls for.
fn retry_after(err: &AppError) -> Option<HeaderValue> {
    match err {
        AppError::RateLimited(secs) => secs.to_string().parse().ok(),
        _ => None,
    }
}

/// `response` with the `Retry-After` header a rate-limit error calls for.
pub(super) fn with_retry_after(mut response: Response, err: &AppError) -> Response {
    if let Some(v) = retry_after(err) {
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
        assert_eq!(pending.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(pending.message, AppError::RateLimited(42).public_message());
        assert_eq!(pending.retry_after.as_ref().unwrap(), "42");
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
