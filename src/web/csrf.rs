//! CSRF protection.
//!
//! - JSON API: every unsafe request under `/api/` must carry `Content-Type: application/json`
//!   (which a cross-site HTML form cannot send without a CORS preflight), and an `Origin` header,
//!   when present, must be ours or an allowed one (docs/api.md), unless the request presents an
//!   API key or an access token and sends no cookie (no ambient credential to abuse).
//! - HTML forms: a signed double-submit token. The cookie holds `nonce.hmac(nonce)` and every form
//!   carries the same value in `csrf_token`; a POST passes when both are equal and the MAC checks
//!   with the key stored in the database. Anonymous page views therefore create no session rows.
//!   The `Origin` check applies to forms too.

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore as _;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::{auth::credentials::Presented, error::AppError, state::AppState};

/// The form field that carries the token.
pub const FIELD: &str = "csrf_token";

/// The token a page should embed in its forms (set by [`ensure_cookie`]).
#[derive(Clone, Debug)]
pub struct CsrfToken(pub String);

/// The cookie name: `__Host-` prefixed when cookies are `Secure`.
pub fn cookie_name(state: &AppState) -> &'static str {
    if state.https() {
        "__Host-tollgate_csrf"
    } else {
        "tollgate_csrf"
    }
}

fn mac(key: &[u8], nonce: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(nonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn new_token(key: &[u8]) -> String {
    let mut nonce = [0u8; 16];
    rand::rng().fill_bytes(&mut nonce);
    let nonce = hex::encode(nonce);
    let tag = mac(key, &nonce);
    format!("{nonce}.{tag}")
}

fn well_formed(key: &[u8], token: &str) -> bool {
    token
        .split_once('.')
        .is_some_and(|(nonce, tag)| bool::from(mac(key, nonce).as_bytes().ct_eq(tag.as_bytes())))
}

/// The token in the request's cookie, if any.
pub(super) fn cookie_token(state: &AppState, headers: &HeaderMap) -> Option<String> {
    crate::auth::device::request_cookie(headers, cookie_name(state))
}

/// True when a form's token matches the request's cookie token (`cookie_token`) and carries our
/// MAC.
pub fn form_token_valid(state: &AppState, cookie: Option<&str>, submitted: &str) -> bool {
    let Some(cookie) = cookie else {
        return false;
    };
    bool::from(cookie.as_bytes().ct_eq(submitted.as_bytes()))
        && well_formed(&state.csrf_key, cookie)
}

/// True when the `Origin` header is absent or one we serve.
pub fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        None => true,
        Some(Ok(origin)) => state.allowed_origins.iter().any(|o| o == origin),
        Some(Err(_)) => false,
    }
}

fn unsafe_method(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware: the JSON API's content-type and Origin rules.
pub async fn check_api(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/api/") && unsafe_method(request.method()) {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        // A request that presents an API key or an access token and sends no cookie has no
        // ambient credential for the Origin rule to guard (a cross-site page cannot add the
        // header without a CORS preflight anyway). With a cookie, the rule applies, whatever
        // else is sent.
        let headers = request.headers();
        let key_only = matches!(
            crate::auth::credentials::presented(headers),
            Presented::Key(_) | Presented::Token(_)
        ) && !headers.contains_key(header::COOKIE);
        let origin = key_only || origin_allowed(&state, headers);
        if !json || !origin {
            let reason = if json { "origin" } else { "content_type" };
            crate::telemetry::security_event("csrf_refused", None, reason);
            return AppError::CsrfFailed.into_response();
        }
    }
    next.run(request).await
}

/// Middleware for pages: makes sure the browser holds a valid token cookie and hands the token to
/// the page through a request extension.
pub async fn ensure_cookie(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let existing =
        cookie_token(&state, request.headers()).filter(|t| well_formed(&state.csrf_key, t));
    let (token, fresh) = match existing {
        Some(t) => (t, false),
        None => (new_token(&state.csrf_key), true),
    };
    request.extensions_mut().insert(CsrfToken(token.clone()));
    let mut response = next.run(request).await;
    if fresh {
        let secure = if state.https() { "; Secure" } else { "" };
        let cookie = format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Lax{secure}",
            cookie_name(&state)
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_key() {
        let token = new_token(b"key one");
        assert!(well_formed(b"key one", &token));
        assert!(!well_formed(b"key two", &token));
        assert!(!well_formed(b"key one", "abc.def"));
        assert!(!well_formed(b"key one", "no-dot"));
    }
}
