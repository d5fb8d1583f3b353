//! The outermost middleware: every request's id and client address, the methods refused
//! everywhere, and the plain-text refusals axum makes on its own turned into JSON errors.

use axum::{
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::REQUEST_ID;
use crate::{auth::rate_limit, error::AppError, state::AppState};

/// Handles the request with its id (set by the layer outside) known to the audit trail.
pub(super) async fn request_scope(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    crate::telemetry::with_request_id(id, next.run(request)).await
}

/// The first thing every request meets: `TRACE` and `CONNECT` are refused on every path (405),
/// and a client's `X-Request-Id` is dropped unless it comes from a trusted proxy
/// (`TOLLGATE_TRUSTED_PROXIES`) and looks like an id, so logs only ever carry ids tollgate made
/// or a proxy it trusts made.
pub(super) async fn edge(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::TRACE | Method::CONNECT) {
        let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        return plain_errors_as_json(response);
    }
    let trusted = rate_limit::ClientIp::peer_is_trusted(&state, request.extensions());
    let acceptable = |v: &HeaderValue| {
        (1..=64).contains(&v.len())
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    let headers = request.headers_mut();
    let mut ids = headers.get_all(REQUEST_ID).iter();
    let keep = trusted && matches!((ids.next(), ids.next()), (Some(v), None) if acceptable(v));
    if !keep {
        headers.remove(REQUEST_ID);
    }
    // Worked out once: security events logged while handling the request name its client, and
    // the `ClientIp` extractor reads it from here.
    let ip = rate_limit::ClientIp::of(&state, request.extensions(), request.headers());
    request.extensions_mut().insert(ip);
    let api = request.uri().path().starts_with("/api/");
    // A NUL character in the path or query: no stored text holds one (PostgreSQL refuses it).
    if api {
        let nul = |part: &str| part.contains("%00");
        if nul(request.uri().path()) {
            return AppError::InvalidField("path".into()).into_response();
        }
        if request.uri().query().is_some_and(nul) {
            return AppError::InvalidField("query".into()).into_response();
        }
    }
    let response = crate::telemetry::with_client_ip(ip.0, next.run(request)).await;
    let response = if api {
        unreadable_as_json(response).await
    } else {
        response
    };
    plain_errors_as_json(response)
}

/// A 400 axum answers in plain text on its own, for a path or query string it cannot read (a
/// segment that is not UTF-8 once decoded, a repeated or malformed parameter): on `/api/`, the
/// JSON `invalid_field` error, naming `path` or `query`.
async fn unreadable_as_json(response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if response.status() != StatusCode::BAD_REQUEST || !plain {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let field = if text.starts_with(b"Invalid URL") {
        "path"
    } else {
        "query"
    };
    AppError::InvalidField(field.into()).into_response()
}

/// The refusals axum makes on its own (a method a route does not take, a body over the limit)
/// come without a body or as plain text: they get tollgate's JSON error, headers kept. Answers
/// tollgate made itself (JSON, or a page's HTML) are left as they are.
fn plain_errors_as_json(response: Response) -> Response {
    let (error, message) = match response.status() {
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "This method is not allowed here.")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "The request body is too large."),
        _ => return response,
    };
    let ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if ours {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::json!({"error": error, "message": message}).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The admin area's 404 for a method a route does not take comes with the `Allow` axum adds,
/// which would map the area for anyone: it goes (this runs around the whole router).
pub(super) async fn hide_admin_allow(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let admin = path.starts_with("/api/admin/") || path == "/admin" || path.starts_with("/admin/");
    let mut response = next.run(request).await;
    if admin && response.status() == StatusCode::NOT_FOUND {
        response.headers_mut().remove(header::ALLOW);
    }
    response
}
