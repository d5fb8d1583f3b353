//! Device cookies (OWASP, "Slow Down Online Guessing Attacks with Device Cookies"): a browser that
//! has signed in to an account gets a signed cookie naming that account. Its later login attempts
//! for the account count on a bucket of their own, so strangers who fill the account's bucket with
//! wrong passwords cannot lock the owner out, and the cookie's own failures lock only the cookie.
//!
//! The cookie is `user_id.nonce.HMAC(key, user_id|epoch|nonce)` with a key kept in the database
//! like the CSRF key; each successful login replaces it with a fresh nonce (a fresh bucket). The
//! user's session epoch is in the MAC, so every revocation (password change or reset, a mailbox
//! proof that removes a stranger's password) ends the trust of every earlier device: whoever knew
//! an old password keeps no guesses of their own.

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{HeaderMap, HeaderValue, header, request::Parts},
};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore as _;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::Auth;
use crate::error::AppError;

/// How long a device stays known without signing in again: a year.
const MAX_AGE_SECS: u64 = 365 * 86_400;

/// The cookie name: `__Host-` prefixed when cookies are `Secure`.
pub fn cookie_name(state: &Auth) -> &'static str {
    if state.https() {
        "__Host-tollgate_device"
    } else {
        "tollgate_device"
    }
}

/// The value of the request cookie `name`, if sent.
pub fn request_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn mac(key: &[u8], user_id: &str, epoch: i64, nonce: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(user_id.as_bytes());
    mac.update(b"|");
    mac.update(epoch.to_string().as_bytes());
    mac.update(b"|");
    mac.update(nonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The device cookie a request carried (not yet checked).
#[derive(Clone, Debug, Default)]
pub struct DeviceCookie(pub Option<String>);

impl DeviceCookie {
    /// The account the cookie claims to be for (unchecked: see [`Self::nonce_for`]).
    pub fn claimed_user(&self) -> Option<&str> {
        self.0
            .as_deref()?
            .split('.')
            .next()
            .filter(|id| !id.is_empty())
    }

    /// The cookie's nonce when it is ours and was issued for `user_id` under its current session
    /// `epoch`; `None` for anything else (absent, forged, another account's, or from before a
    /// revocation).
    pub fn nonce_for(&self, key: &[u8], user_id: &str, epoch: i64) -> Option<&str> {
        let mut parts = self.0.as_deref()?.split('.');
        let (Some(id), Some(nonce), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let signed = bool::from(mac(key, id, epoch, nonce).as_bytes().ct_eq(tag.as_bytes()));
        (signed && id == user_id).then_some(nonce)
    }
}

impl<S> FromRequestParts<S> for DeviceCookie
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = Auth::from_ref(state);
        Ok(Self(request_cookie(&parts.headers, cookie_name(&state))))
    }
}

/// A `Set-Cookie` value holding a new device cookie for `user_id` under session `epoch`.
pub fn issue(state: &Auth, user_id: &str, epoch: i64) -> HeaderValue {
    let mut nonce = [0u8; 16];
    rand::rng().fill_bytes(&mut nonce);
    let nonce = hex::encode(nonce);
    let tag = mac(&state.device_key, user_id, epoch, &nonce);
    // HttpOnly: scripts never need it; Lax: sent on top-level navigations to the login form.
    let secure = if state.https() { "; Secure" } else { "" };
    let cookie = format!(
        "{}={user_id}.{nonce}.{tag}; Path=/; Max-Age={MAX_AGE_SECS}; HttpOnly; SameSite=Lax{secure}",
        cookie_name(state)
    );
    HeaderValue::from_str(&cookie).expect("ids, hex and fixed attributes are valid header text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_trusted_only_for_its_account_key_and_epoch() {
        let value = format!("usr_a.n1.{}", mac(b"key", "usr_a", 3, "n1"));
        let cookie = DeviceCookie(Some(value.clone()));
        assert_eq!(cookie.nonce_for(b"key", "usr_a", 3), Some("n1"));
        assert_eq!(
            cookie.nonce_for(b"key", "usr_a", 4),
            None,
            "after a revocation"
        );
        assert_eq!(
            cookie.nonce_for(b"key", "usr_b", 3),
            None,
            "another account"
        );
        assert_eq!(cookie.nonce_for(b"other", "usr_a", 3), None, "another key");
        let forged = DeviceCookie(Some(format!("usr_b.n1.{}", mac(b"key", "usr_a", 3, "n1"))));
        assert_eq!(forged.nonce_for(b"key", "usr_b", 3), None, "id swapped");
        let extra = DeviceCookie(Some(format!("{value}.x")));
        assert_eq!(extra.nonce_for(b"key", "usr_a", 3), None, "trailing part");
        assert_eq!(DeviceCookie(None).nonce_for(b"key", "usr_a", 3), None);
    }
}
