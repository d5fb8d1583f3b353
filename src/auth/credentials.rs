//! What a request's `Authorization` headers present: a tollgate API key, a tollgate access
//! token, nothing of tollgate's, or something to refuse.
//!
//! Only tollgate's own credentials are judged: an upstream app's Basic auth or bearer token
//! passes through forward-auth and the gates untouched, and the request is a cookie request. A
//! credential of tollgate's is judged alone, never by a cookie beside it.

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};

use super::{api_keys, refresh, signing};

/// What a request's `Authorization` headers present.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    /// Nothing of tollgate's: no header, or one for something else (an upstream app's own Basic
    /// auth or token). The request is a cookie request, with every cookie rule.
    Nothing,
    /// One tollgate key: `Bearer tg_…`, or Basic with `tg_…` as the password (any user name) or
    /// as the user name (no password). The request is judged by it alone.
    Key(String),
    /// One tollgate access token: `Bearer` and a JWT whose header names a tollgate key
    /// (`kid: "tollgate-…"`). The request is judged by it alone.
    Token(String),
    /// A tollgate credential among several `Authorization` headers, or a header that is not
    /// text: refused.
    Ambiguous,
}

/// What `headers` present (see [`Presented`]). A value tollgate cannot read (not UTF-8) is
/// refused rather than guessed at.
pub fn presented(headers: &axum::http::HeaderMap) -> Presented {
    let values: Vec<Carried> = headers
        .get_all(axum::http::header::AUTHORIZATION)
        .iter()
        .map(|v| carried(v.as_bytes()))
        .collect();
    if values.contains(&Carried::Unreadable) {
        return Presented::Ambiguous;
    }
    let count = values.len();
    let mut ours = values.into_iter().filter(|c| *c != Carried::Other);
    match (ours.next(), ours.next(), count) {
        (None, _, _) => Presented::Nothing,
        (Some(Carried::Key(key)), None, 1) => Presented::Key(key),
        (Some(Carried::Token(token)), None, 1) => Presented::Token(token),
        _ => Presented::Ambiguous,
    }
}

/// What one `Authorization` value carries.
#[derive(Debug, PartialEq, Eq)]
enum Carried {
    /// Something that is not tollgate's.
    Other,
    /// A tollgate key, shaped or not.
    Key(String),
    /// A JWT that names a tollgate signing key, valid or not.
    Token(String),
    /// Bytes that are not text.
    Unreadable,
}

/// `Bearer tg_…`, or Basic whose password (or, with an empty password, user name) starts with
/// `tg_`, is a key, and so is a credential under any other scheme that starts with `tg_` (a key
/// sent the wrong way is refused, not ignored). A refresh token (`tgr_…`) anywhere is refused the
/// same way: it is never a credential, and never passed on. `Bearer` and a JWT naming a tollgate key is an
/// access token.
fn carried(value: &[u8]) -> Carried {
    let Ok(value) = std::str::from_utf8(value) else {
        return Carried::Unreadable;
    };
    let value = value.trim();
    // The scheme ends at any whitespace (a tab too): read the way an upstream app might.
    let (scheme, rest) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or(("", value));
    let rest = rest.trim();
    let is_key = |k: &str| k.starts_with(api_keys::PREFIX) || k.starts_with(refresh::PREFIX);
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.starts_with(refresh::PREFIX) {
            // A refresh token is never a bearer credential: refused, not passed on upstream.
            return Carried::Key(value.to_owned());
        }
        if is_key(rest) {
            return Carried::Key(rest.to_owned());
        }
        if names_our_key(rest) {
            return Carried::Token(rest.to_owned());
        }
        return Carried::Other;
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let key = STANDARD
            .decode(rest)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|d| {
                let (user, password) = d.split_once(':')?;
                Some(if password.is_empty() { user } else { password }.to_owned())
            });
        return match key {
            // A refresh token is never a credential here: refused as a malformed key.
            Some(key) if key.starts_with(refresh::PREFIX) => Carried::Key(value.to_owned()),
            Some(key) if is_key(&key) => Carried::Key(key),
            _ => Carried::Other,
        };
    }
    if is_key(rest) {
        // Judged as the whole value, which is never a well-formed key: refused.
        Carried::Key(value.to_owned())
    } else {
        Carried::Other
    }
}

/// True for a compact JWT whose header's `kid` is one of tollgate's (`tollgate-…`). Nothing is
/// verified here: this only says whose the token claims to be.
fn names_our_key(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    #[derive(serde::Deserialize)]
    struct Header {
        kid: Option<String>,
    }
    URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|json| serde_json::from_slice::<Header>(&json).ok())
        .and_then(|h| h.kid)
        .is_some_and(|kid| kid.starts_with(signing::KID_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    #[test]
    fn authorization_headers_carry_a_key_as_bearer_or_as_the_basic_password() {
        let key = |v: &[u8]| match carried(v) {
            Carried::Key(k) => Some(k),
            _ => None,
        };
        assert_eq!(key(b"Bearer tg_x").as_deref(), Some("tg_x"));
        assert_eq!(key(b"bearer  tg_x ").as_deref(), Some("tg_x"));
        // `curl -u :tg_x` and `curl -u me:tg_x`.
        assert_eq!(key(b"Basic OnRnX3g=").as_deref(), Some("tg_x"));
        assert_eq!(key(b"Basic bWU6dGdfeA==").as_deref(), Some("tg_x"));
        // `curl -u tg_x:`: the key as the user name, with no password.
        assert_eq!(key(b"Basic dGdfeDo=").as_deref(), Some("tg_x"));
        // A key under another scheme, or none, is still a key (and refused).
        assert!(key(b"Token tg_x").is_some());
        assert!(key(b"tg_x").is_some());
        // Another app's credentials are not tollgate's business, even when `tg_` happens to
        // appear inside them (base64url has `_`).
        for other in [
            &b"Bearer eyJhbGciOi"[..],
            b"Bearer",
            b"Basic !!!",
            b"Basic dXBzdHJlYW06cGFzcw==",
            b"Digest username=x",
            b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.abctg_def",
            b"Token abc-tg_x",
        ] {
            assert_eq!(carried(other), Carried::Other, "{other:?}");
        }
        assert_eq!(carried(b"Bearer tg_\xff"), Carried::Unreadable);
        // A tab ends the scheme as a space does; a refresh token as a bearer is refused.
        assert_eq!(key(b"Bearer\ttg_x").as_deref(), Some("tg_x"));
        assert!(key(b"Bearer tgr_0123").is_some());
        for refresh_token in [&b"Token tgr_0123"[..], b"tgr_0123", b"Basic OnRncl8wMTIz"] {
            assert!(key(refresh_token).is_some(), "{refresh_token:?}");
        }
    }

    #[test]
    fn a_jwt_is_ours_only_when_its_header_names_a_tollgate_key() {
        let ours = jwt(r#"{"alg":"EdDSA","kid":"tollgate-abc"}"#);
        assert_eq!(
            carried(format!("Bearer {ours}").as_bytes()),
            Carried::Token(ours.clone())
        );
        assert_eq!(
            carried(format!("Bearer\t{ours}").as_bytes()),
            Carried::Token(ours.clone())
        );
        // `alg: none` naming our key is still ours to judge (and refuse).
        let none = jwt(r#"{"alg":"none","kid":"tollgate-abc"}"#);
        assert!(matches!(
            carried(format!("Bearer {none}").as_bytes()),
            Carried::Token(_)
        ));
        for theirs in [
            jwt(r#"{"alg":"RS256","kid":"auth0-key"}"#),
            jwt(r#"{"alg":"HS256"}"#),
            jwt(r#"{"alg":"EdDSA","kid":7}"#),
            format!("{ours}.extra"),
            "not.a.jwt".into(),
        ] {
            assert_eq!(
                carried(format!("Bearer {theirs}").as_bytes()),
                Carried::Other,
                "{theirs}"
            );
        }
    }

    #[test]
    fn one_credential_is_presented_and_one_among_several_headers_is_ambiguous() {
        use axum::http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let token = jwt(r#"{"kid":"tollgate-1"}"#);
        assert_eq!(presented(&headers(&[])), Presented::Nothing);
        assert_eq!(presented(&headers(&["Bearer other"])), Presented::Nothing);
        assert_eq!(
            presented(&headers(&["Bearer other", "Basic x"])),
            Presented::Nothing
        );
        assert_eq!(
            presented(&headers(&["Bearer tg_1"])),
            Presented::Key("tg_1".into())
        );
        assert_eq!(
            presented(&headers(&[&format!("Bearer {token}")])),
            Presented::Token(token.clone())
        );
        for twice in [
            &["Bearer tg_1", "Bearer tg_1"][..],
            &["Basic x", "Bearer tg_1"],
            &["Bearer tg_1", &format!("Bearer {token}")],
            &["Bearer other", &format!("Bearer {token}")],
        ] {
            assert_eq!(
                presented(&headers(twice)),
                Presented::Ambiguous,
                "{twice:?}"
            );
        }
    }
}
