//! `GET /auth/forward`: access decisions for reverse proxies (nginx `auth_request`, Caddy
//! `forward_auth`, Traefik `ForwardAuth`).
//!
//! The requested URI comes from `X-Forwarded-Uri`, else `X-Original-URI`. Its path is normalised
//! the way proxies route it (percent-decoding, `.`/`..` segments, repeated slashes) before the
//! catalog's `[[rules]]` are matched, so `/public/../pro/x` is judged as `/pro/x`. First matching
//! prefix wins; unmatched paths need a login. Granted: 200 with `X-Tollgate-User-Id`,
//! `X-Tollgate-Email` (percent-encoded UTF-8), `X-Tollgate-Plan`, `X-Tollgate-Tier`. Denied: 401
//! with `X-Tollgate-Login-Url`, or 403 with `X-Tollgate-Upgrade-Url`.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;
use tower_sessions::Session;

use super::enforce::{self, Denied, Need, urlencode};
use crate::{
    app::AppState,
    auth::{self, CurrentUser},
    billing::catalog::Requirement,
};

/// Percent-decodes `path` and resolves it like a proxy routes it. `None` for paths that do not
/// decode to UTF-8 or contain NUL; those are refused.
pub fn normalize_path(raw: &str) -> Option<String> {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let decoded: Vec<u8> = percent_decode(path.as_bytes())?;
    let decoded = String::from_utf8(decoded).ok()?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut normalized = format!("/{}", out.join("/"));
    if decoded.ends_with('/') && normalized.len() > 1 {
        normalized.push('/');
    }
    Some(normalized)
}

fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(value);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}

fn header(name: &'static str, value: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("")),
    )
}

fn identity(member: &CurrentUser) -> [(HeaderName, HeaderValue); 4] {
    [
        header("x-tollgate-user-id", &member.user.id),
        header("x-tollgate-email", &urlencode(&member.user.email)),
        header(
            "x-tollgate-plan",
            member.access.plan.as_deref().unwrap_or(""),
        ),
        header(
            "x-tollgate-tier",
            &member
                .access
                .tier
                .map(|t| t.to_string())
                .unwrap_or_default(),
        ),
    ]
}

/// The handler.
pub async fn forward_auth(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
) -> Response {
    let raw = headers
        .get("x-forwarded-uri")
        .or_else(|| headers.get("x-original-uri"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("/");
    let Some(path) = normalize_path(raw) else {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "forbidden", "message": "that address cannot be judged"})),
        )
            .into_response();
    };
    let rule = state
        .catalog
        .rules
        .iter()
        .find(|r| path.starts_with(&r.path));
    let need = match rule.map(|r| &r.requires) {
        Some(Requirement::Public) => None,
        Some(Requirement::Login) | None => Some(Need::Login),
        Some(Requirement::Plan(p)) => Some(Need::Plan(p.clone())),
        Some(Requirement::Feature(f)) => Some(Need::Feature(f.clone())),
    };
    let member = match auth::current_user(&state, session).await {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let Some(need) = need else {
        return granted(member.as_ref());
    };
    match enforce::check(&state, member.as_ref(), &need) {
        Ok(()) => granted(member.as_ref()),
        Err(Denied::Unauthenticated) => {
            let login = format!(
                "{}login?next={}",
                state.base_url,
                urlencode(&next_url(&state, &headers, raw, &path))
            );
            let mut response = Denied::Unauthenticated.json(&state);
            response.headers_mut().insert(
                "x-tollgate-login-url",
                HeaderValue::from_str(&login).expect("encoded"),
            );
            response
        }
        Err(denied) => {
            let upgrade = enforce::upgrade_url(&state, &denied);
            let mut response = denied.json(&state);
            if let Ok(v) = HeaderValue::from_str(&upgrade) {
                response.headers_mut().insert("x-tollgate-upgrade-url", v);
            }
            response
        }
    }
}

/// Where signing in returns to. It keeps the query string. Across sibling hosts
/// (TOLLGATE_COOKIE_DOMAIN) it is absolute, so signing in on tollgate's host returns to the app's;
/// the login page checks the host.
fn next_url(state: &AppState, headers: &HeaderMap, raw: &str, path: &str) -> String {
    let query = raw.split_once('?').map(|(_, q)| q).unwrap_or("");
    let next = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let forwarded_host = headers
        .get("x-forwarded-host")
        .and_then(|v| v.to_str().ok());
    if let (Some(_), Some(host)) = (state.config.cookie_domain.as_deref(), forwarded_host)
        && Some(host) != state.base_url.host_str()
    {
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(state.base_url.scheme());
        return format!("{scheme}://{host}{next}");
    }
    next
}

/// 200 with the identity headers of `member` (none for an anonymous visitor of a public path).
fn granted(member: Option<&CurrentUser>) -> Response {
    let mut response = StatusCode::OK.into_response();
    for (name, value) in member.map(identity).into_iter().flatten() {
        response.headers_mut().insert(name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_like_a_proxy_routes_them() {
        let cases = [
            ("/pro/x", Some("/pro/x")),
            ("/public/../pro/x", Some("/pro/x")),
            ("/public/%2e%2e/pro/x", Some("/pro/x")),
            ("//pro//x", Some("/pro/x")),
            ("/pro/x?a=1#f", Some("/pro/x")),
            ("/./pro/", Some("/pro/")),
            ("/../../etc", Some("/etc")),
            ("/a%00b", None),
            ("/a%zz", None),
            ("/a%5c..%5cpro", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalize_path(raw).as_deref(), expected, "{raw}");
        }
    }
}
