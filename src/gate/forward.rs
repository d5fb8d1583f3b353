//! `GET /auth/forward`: access decisions for reverse proxies (nginx `auth_request`, Caddy
//! `forward_auth`, Traefik `ForwardAuth`).
//!
//! **Which URI is judged.** Exactly one header names it: `TOLLGATE_FORWARD_URI_HEADER`, by
//! default `X-Forwarded-Uri`, which Caddy and Traefik set themselves (replacing a client's) and
//! the README's nginx configuration sets with `proxy_set_header`. A proxy that forgets to set it
//! would pass the client's own value, so tollgate fails closed wherever it can tell: the header
//! missing or repeated, or another URI header (`X-Original-URI`, `X-Forwarded-Uri`,
//! `X-Original-URL`) present with a different value, is a 403.
//!
//! **Which paths are judged, and how.** Only an origin-form URI of visible ASCII is read. Its
//! path is refused (403) when a proxy and an upstream could read it differently: `;` parameters,
//! `#`, `\`, `,/`, dot segments (`.`/`..`, also percent-encoded) and other segments ending in `.`
//! or a space, `%25` (double encoding), encoded `/` or `\`, NUL and control characters (raw or
//! encoded), bytes that do not decode to UTF-8, characters Unicode normalisation (NFKC) changes.
//! Otherwise it is percent-decoded and repeated slashes are merged, then matched against the
//! catalog's `[[rules]]`: first matching prefix wins, a prefix `/pro/` also covers `/pro` (and
//! `/pro.json`, a format suffix), and
//! unmatched paths need a login. Matching ignores ASCII case unless
//! `TOLLGATE_FORWARD_PATH_CASE=sensitive`, because many upstreams route `/PRO/x` to `/pro/x`.
//! Public rules are never widened this way: they match their exact prefix only.
//!
//! Granted: 200 with `X-Tollgate-User-Id`, `X-Tollgate-Email` (percent-encoded UTF-8),
//! `X-Tollgate-Plan`, `X-Tollgate-Tier`, `X-Tollgate-Roles` (comma-separated). Denied: 401 with `X-Tollgate-Login-Url`, or 403 with
//! `X-Tollgate-Upgrade-Url` (none when the URI itself was refused).

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
    auth::api_keys::Scope,
    billing::Billing,
    billing::catalog::{Requirement, Rule},
    error::AppError,
    gate::CurrentUser,
};

/// The URI headers proxies use; any of them beside the configured one must agree with it.
const URI_HEADERS: [&str; 3] = ["x-forwarded-uri", "x-original-uri", "x-original-url"];

/// Why a forwarded URI was not judged.
#[derive(Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// The configured header is absent.
    Missing,
    /// The configured header appears more than once.
    Repeated,
    /// Another URI header carries a different URI.
    Conflicting,
    /// Not an origin-form URI of visible ASCII, or a path two programs could read differently.
    Refused,
}

/// The one URI the proxy forwarded, from `header` (lower-case), after the checks above.
pub fn forwarded_uri<'a>(headers: &'a HeaderMap, header: &str) -> Result<&'a str, Unreadable> {
    let mut values = headers.get_all(header).iter();
    let value = values.next().ok_or(Unreadable::Missing)?;
    if values.next().is_some() {
        return Err(Unreadable::Repeated);
    }
    // Visible ASCII only: a raw `é`, a space or a control byte is not something a proxy sends.
    if !value.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(Unreadable::Refused);
    }
    let uri = value.to_str().map_err(|_| Unreadable::Refused)?;
    for other in URI_HEADERS.iter().filter(|h| **h != header) {
        if headers
            .get_all(*other)
            .iter()
            .any(|v| v.as_bytes() != uri.as_bytes())
        {
            return Err(Unreadable::Conflicting);
        }
    }
    Ok(uri)
}

/// The path of an origin-form `uri`, percent-decoded with repeated slashes merged; `None` when
/// a proxy and an upstream could disagree about what it names (see the module docs).
pub fn normalize_path(uri: &str) -> Option<String> {
    // `,/` is what a proxy that appends its value to a client's would produce.
    if !uri.starts_with('/') || uri.contains('#') || uri.contains(",/") {
        return None;
    }
    let path = uri.split('?').next().unwrap_or("");
    if path.contains([';', '\\']) {
        return None;
    }
    let decoded = String::from_utf8(percent_decode(path.as_bytes())?).ok()?;
    // Characters that Unicode normalisation changes (fullwidth letters, no-break spaces) name
    // another path to an upstream that normalises.
    if !unicode_normalization::is_nfkc(&decoded) {
        return None;
    }
    // An encoded `?` ends the path for an upstream that decodes before it splits, and invisible
    // characters (zero-width spaces, bidi controls) vanish in one that strips them.
    if decoded
        .chars()
        .any(|c| c == '?' || crate::auth::users::is_invisible(c))
    {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" => {}
            // Dot segments, and segments some servers trim (`/pro.`, `/pro%20` are `/pro` to IIS).
            s if s.ends_with(['.', ' ']) => return None,
            s => out.push(s),
        }
    }
    let mut normalized = format!("/{}", out.join("/"));
    if decoded.ends_with('/') && normalized.len() > 1 {
        normalized.push('/');
    }
    Some(normalized)
}

/// Percent-decodes, refusing `%25`, encoded `/` and `\`, and encoded control characters, each of
/// which means something else to a program that decodes once more or not at all.
fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if matches!(value, b'%' | b'/' | b'\\' | b';' | b'#') || value.is_ascii_control() {
                return None;
            }
            out.push(value);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Whether `rule` covers `path`: a prefix match, and a prefix ending in `/` also covers the path
/// without it, alone or with a format suffix (`/pro/` covers `/pro` and `/pro.json`).
pub fn rule_covers(rule: &str, path: &str, ignore_case: bool) -> bool {
    let eq = |a: &str, b: &str| {
        if ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let prefix = path.get(..rule.len()).is_some_and(|p| eq(p, rule));
    // `/pro`, and `/pro.json` (a format suffix many frameworks route to `/pro`).
    let bare = rule.strip_suffix('/').is_some_and(|bare| {
        path.get(..bare.len()).is_some_and(|p| eq(p, bare))
            && matches!(path.as_bytes().get(bare.len()), None | Some(b'.'))
    });
    prefix || bare
}

/// The first rule covering `path`. Only rules that restrict are widened (other case, bare name,
/// format suffix): widening a public rule would open `/PUBLIC/x` on an upstream that serves it
/// as another, protected resource.
fn rule_for<'a>(rules: &'a [Rule], path: &str, ignore_case: bool) -> Option<&'a Rule> {
    rules.iter().find(|r| match r.requires {
        Requirement::Public => path.starts_with(&r.path),
        _ => rule_covers(&r.path, path, ignore_case),
    })
}

fn header(name: &'static str, value: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("")),
    )
}

/// The identity headers, always all four: empty for an anonymous visitor of a public path, so a
/// proxy that copies them (Caddy's `copy_headers`) replaces whatever a client sent with nothing
/// (Caddy 2.6 passes its own placeholder text on when a header is absent).
fn identity(member: Option<&CurrentUser>) -> [(HeaderName, HeaderValue); 5] {
    let plan = member.and_then(|m| m.access.plan.as_deref()).unwrap_or("");
    let tier = member
        .and_then(|m| m.access.tier)
        .map(|t| t.to_string())
        .unwrap_or_default();
    [
        header("x-tollgate-user-id", member.map_or("", |m| &m.user.id)),
        header(
            "x-tollgate-email",
            &member.map_or(String::new(), |m| urlencode(&m.user.email)),
        ),
        header("x-tollgate-plan", plan),
        header("x-tollgate-tier", &tier),
        header(
            "x-tollgate-roles",
            &member.map_or(String::new(), |m| m.access.roles.join(",")),
        ),
    ]
}

/// 401 with the login URL that comes back to `raw`.
fn login_required(state: &Billing, headers: &HeaderMap, raw: &str) -> Response {
    let login = format!(
        "{}login?next={}",
        state.base_url,
        urlencode(&next_url(state, headers, raw))
    );
    let mut response = Denied::Unauthenticated.json(state);
    response.headers_mut().insert(
        "x-tollgate-login-url",
        HeaderValue::from_str(&login).expect("encoded"),
    );
    response
}

/// The handler.
pub async fn forward_auth(
    State(state): State<Billing>,
    headers: HeaderMap,
    session: Session,
) -> Response {
    let judged = forwarded_uri(&headers, &state.config.forward_uri_header)
        .and_then(|raw| Ok((raw, normalize_path(raw).ok_or(Unreadable::Refused)?)));
    let (raw, path) = match judged {
        Ok(judged) => judged,
        Err(why) => {
            // Fail closed: a URI tollgate cannot read with certainty is never judged as another.
            crate::telemetry::security_event("forward_auth_refused", None, &format!("{why:?}"));
            return (
                StatusCode::FORBIDDEN,
                Json(json!({"error": "forbidden", "message": "That address cannot be judged."})),
            )
                .into_response();
        }
    };
    let ignore_case = state.config.forward_path_ignore_case;
    let need = match rule_for(&state.catalog.rules, &path, ignore_case).map(|r| &r.requires) {
        Some(Requirement::Public) => None,
        Some(Requirement::Login) | None => Some(Need::Login),
        Some(Requirement::Plan(p)) => Some(Need::Plan(p.clone())),
        Some(Requirement::Feature(f)) => Some(Need::Feature(f.clone())),
        Some(Requirement::Role(r)) => Some(Need::Role(r.clone())),
    };
    // An API key in the request the proxy passes on counts as a session does.
    let member = match super::member::user_of(&state, &headers, session, Scope::Read).await {
        Ok(m) => m,
        // A bad API key: sign in (or fix the key), like a request without credentials.
        Err(AppError::Unauthenticated) => return login_required(&state, &headers, raw),
        Err(e) => return e.into_response(),
    };
    let Some(need) = need else {
        return granted(member.as_ref());
    };
    match enforce::check(&state, member.as_ref(), &need) {
        Ok(()) => granted(member.as_ref()),
        Err(Denied::Unauthenticated) => login_required(&state, &headers, raw),
        // A role comes with no plan: no upgrade is offered, the refusal stands.
        Err(denied @ Denied::Role { .. }) => denied.json(&state),
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

/// Where signing in returns to: the URI as requested, query string included. Across sibling hosts
/// (TOLLGATE_COOKIE_DOMAIN) it is absolute, so signing in on tollgate's host returns to the app's;
/// only a host under that domain and an `http`/`https` scheme are taken from the proxy's headers.
fn next_url(state: &Billing, headers: &HeaderMap, raw: &str) -> String {
    // The URI as the proxy sent it (checked to be origin-form visible ASCII): the decoded path
    // would hold `é` or a space, which a `Location` cannot carry, and login would drop it.
    let next = raw.to_owned();
    let single = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        }
    };
    let Some(domain) = state.config.cookie_domain.as_deref() else {
        return next;
    };
    let domain = domain.trim_start_matches('.');
    let host = single("x-forwarded-host").filter(|host| {
        let name = host.rsplit_once(':').map_or(*host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                ""
            }
        });
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && (name.eq_ignore_ascii_case(domain)
                || name
                    .to_ascii_lowercase()
                    .ends_with(&format!(".{}", domain.to_ascii_lowercase())))
    });
    match host {
        Some(host) if Some(host) != state.base_url.host_str() => {
            let scheme = single("x-forwarded-proto")
                .filter(|p| matches!(*p, "http" | "https"))
                .unwrap_or(state.base_url.scheme());
            format!("{scheme}://{host}{next}")
        }
        _ => next,
    }
}

/// 200 with the identity headers of `member` (empty for an anonymous visitor of a public path).
fn granted(member: Option<&CurrentUser>) -> Response {
    let mut response = StatusCode::OK.into_response();
    for (name, value) in identity(member) {
        response.headers_mut().insert(name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_or_refused_never_guessed() {
        let cases = [
            ("/pro/x", Some("/pro/x")),
            ("//pro//x", Some("/pro/x")),
            ("/pro/x?a=1", Some("/pro/x")),
            ("/%70ro/x", Some("/pro/x")),
            ("/caf%C3%A9", Some("/café")),
            ("/", Some("/")),
            ("/pro/", Some("/pro/")),
            ("/public/../pro/x", None),
            ("/public/%2e%2e/pro/x", None),
            ("/./pro/", None),
            ("/pro/x#f", None),
            ("/pro;a=b/x", None),
            ("/pro%3Bx", None),
            ("/pro%252fx", None),
            ("/public%2F..%2Fpro", None),
            ("/a%00b", None),
            ("/a%0Ab", None),
            ("/a%zz", None),
            ("/a%5c..%5cpro", None),
            ("/a\\b", None),
            ("/caf%E9", None),
            ("/pro.", None),
            ("/pro%2e/x", None),
            ("/pro%20", None),
            ("/%EF%BD%90ro/x", None),
            ("/pro%C2%A0/x", None),
            ("/public/x,/pro/x", None),
            ("/pro.json", Some("/pro.json")),
            ("/a,b", Some("/a,b")),
            ("http://evil.test/pro", None),
            ("*", None),
            ("", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalize_path(raw).as_deref(), expected, "{raw}");
        }
    }

    #[test]
    fn a_rule_covers_its_prefix_and_its_bare_name() {
        assert!(rule_covers("/pro/", "/pro/x", false));
        assert!(rule_covers("/pro/", "/pro", false));
        assert!(!rule_covers("/pro/", "/profile", false));
        assert!(rule_covers("/pro/", "/pro.json", false));
        assert!(rule_covers("/pro/", "/PRO.json", true));
        assert!(!rule_covers("/pro/", "/PRO/x", false));
        assert!(rule_covers("/pro/", "/PRO/x", true));
        assert!(rule_covers("/pro/", "/Pro", true));
        assert!(!rule_covers("/pro/", "/", true));
    }
}
