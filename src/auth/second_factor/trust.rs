//! "Trust this device for 30 days": a signed cookie that lets one browser skip the second factor
//! of one account.
//!
//! The cookie is `user_id.factor_id.expires.HMAC(key, "trust"|user_id|epoch|factor_id|expires)`
//! with the device-cookie key. The factor id changes at every enrolment and the user's session
//! epoch at every "sign out everywhere", password change or reset, so turning two-factor off (or
//! on again) or signing out everywhere ends the trust of every device at once. A browser holds one
//! such cookie: trusting it for a second account replaces the first.

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{HeaderValue, request::Parts},
};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::super::{Auth, device::request_cookie};
use crate::error::AppError;

/// How long a device stays trusted.
pub const TRUST_SECS: i64 = 30 * 86_400;

/// The cookie name: `__Host-` prefixed when cookies are `Secure`.
pub fn cookie_name(state: &Auth) -> &'static str {
    if state.https() {
        "__Host-tollgate_trust"
    } else {
        "tollgate_trust"
    }
}

fn mac(key: &[u8], user_id: &str, epoch: i64, factor_id: &str, expires: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("trust|{user_id}|{epoch}|{factor_id}|{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The trust cookie a request carried (not yet checked).
#[derive(Clone, Debug, Default)]
pub struct TrustCookie(pub Option<String>);

impl TrustCookie {
    /// Whether the cookie is ours, unexpired, and for this user, epoch and factor.
    pub fn trusts(&self, key: &[u8], user_id: &str, epoch: i64, factor_id: &str, now: i64) -> bool {
        let Some(value) = self.0.as_deref() else {
            return false;
        };
        let mut parts = value.split('.');
        let (Some(id), Some(factor), Some(expires), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return false;
        };
        let Ok(expires) = expires.parse::<i64>() else {
            return false;
        };
        let signed: bool = mac(key, id, epoch, factor, expires)
            .as_bytes()
            .ct_eq(tag.as_bytes())
            .into();
        signed && id == user_id && factor == factor_id && expires > now
    }
}

impl<S> FromRequestParts<S> for TrustCookie
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

/// A `Set-Cookie` value trusting this browser for `user_id`'s factor `factor_id` under `epoch`.
pub fn issue(state: &Auth, user_id: &str, epoch: i64, factor_id: &str, now: i64) -> HeaderValue {
    let expires = now + TRUST_SECS;
    let tag = mac(&state.device_key, user_id, epoch, factor_id, expires);
    let secure = if state.https() { "; Secure" } else { "" };
    let cookie = format!(
        "{}={user_id}.{factor_id}.{expires}.{tag}; Path=/; Max-Age={TRUST_SECS}; HttpOnly; SameSite=Lax{secure}",
        cookie_name(state)
    );
    HeaderValue::from_str(&cookie).expect("ids, digits, hex and fixed attributes are header text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_holds_only_for_its_user_epoch_factor_key_and_time() {
        let value = format!(
            "usr_a.tfa_1.1000.{}",
            mac(b"key", "usr_a", 2, "tfa_1", 1000)
        );
        let cookie = TrustCookie(Some(value.clone()));
        assert!(cookie.trusts(b"key", "usr_a", 2, "tfa_1", 999));
        assert!(!cookie.trusts(b"key", "usr_a", 2, "tfa_1", 1000), "expired");
        assert!(
            !cookie.trusts(b"key", "usr_a", 3, "tfa_1", 999),
            "signed out everywhere"
        );
        assert!(
            !cookie.trusts(b"key", "usr_a", 2, "tfa_2", 999),
            "enrolled again"
        );
        assert!(
            !cookie.trusts(b"key", "usr_b", 2, "tfa_1", 999),
            "another account"
        );
        assert!(
            !cookie.trusts(b"other", "usr_a", 2, "tfa_1", 999),
            "another key"
        );
        let later = value.replace(".1000.", ".9000.");
        assert!(
            !TrustCookie(Some(later)).trusts(b"key", "usr_a", 2, "tfa_1", 1500),
            "expiry moved"
        );
        assert!(!TrustCookie(Some(format!("{value}.x"))).trusts(b"key", "usr_a", 2, "tfa_1", 999));
        assert!(!TrustCookie(None).trusts(b"key", "usr_a", 2, "tfa_1", 0));
    }
}
