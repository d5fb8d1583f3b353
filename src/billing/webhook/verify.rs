//! Step 1: verification, tollgate's own, over the raw body. Every `v1` signature of the
//! `Stripe-Signature` header is checked against every configured secret (rotation) in constant
//! time, the timestamp must be within the tolerance in both directions, `v0` is ignored; a
//! repeated header is refused. Anything
//! else is 400 `signature_invalid` with nothing stored; a verified body that is not an event is
//! 400 `invalid_json`.

use axum::{
    body::Bytes,
    extract::{FromRef, FromRequest, Request},
    response::{IntoResponse, Response},
};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::event::Event;
use crate::{billing::Billing, config::Secret, error::AppError};

/// A request whose body is a correctly signed Stripe event (an extractor: the handler sees only
/// verified events).
pub struct SignedEvent(pub Event);

impl<S> FromRequest<S> for SignedEvent
where
    Billing: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let state = Billing::from_ref(state);
        // Stripe sends one header; a second one (or one that is not text) is not believed.
        let mut headers = request.headers().get_all("stripe-signature").iter();
        let signature = match (headers.next(), headers.next()) {
            (Some(one), None) => one.to_str().unwrap_or("").to_owned(),
            _ => String::new(),
        };
        let body = Bytes::from_request(request, &state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !verify(
            &signature,
            &body,
            &state.stripe.webhook_secrets,
            state.config.stripe_webhook_tolerance_secs,
            state.clock.now(),
        ) {
            let reason = if signature.is_empty() {
                "missing"
            } else {
                "mismatch_or_stale"
            };
            crate::telemetry::security_event("webhook_signature_invalid", None, reason);
            return Err(AppError::SignatureInvalid.into_response());
        }
        Event::parse(&body)
            .map(SignedEvent)
            .ok_or_else(|| AppError::InvalidJson.into_response())
    }
}

/// Checks a `Stripe-Signature` header against `secrets` at time `now`.
pub fn verify(header: &str, body: &[u8], secrets: &[Secret], tolerance: u64, now: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.push(sig),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    if signatures.is_empty() || now.abs_diff(t) > tolerance {
        return false;
    }
    secrets.iter().any(|secret| {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = hex::encode(mac.finalize().into_bytes());
        signatures
            .iter()
            .any(|sig| bool::from(expected.as_bytes().ct_eq(sig.as_bytes())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Stripe-Signature` header for `payload` at `t`, as Stripe makes it.
    fn sign(secret: &str, t: i64, payload: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(format!("{t}.").as_bytes());
        mac.update(payload);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn a_signature_computed_elsewhere_is_accepted() {
        // HMAC-SHA256("whsec_new", "1000." + body), computed with Python's hmac module.
        let header = "t=1000,v1=e2904fbd32f1b9ce74a60e7e3117d915117f3355cd808725f83c9da12229d5df";
        let secrets = [Secret::new("whsec_new")];
        assert!(verify(header, br#"{"id":"evt_1"}"#, &secrets, 300, 1_000));
        assert_eq!(sign("whsec_new", 1_000, br#"{"id":"evt_1"}"#), header);
    }

    #[test]
    fn signatures_are_checked_against_every_secret_and_every_v1() {
        let secrets = [Secret::new("whsec_old"), Secret::new("whsec_new")];
        let body = br#"{"id":"evt_1"}"#;
        let good = sign("whsec_new", 1_000, body);
        assert!(verify(&good, body, &secrets, 300, 1_000));
        let v1 = good.split_once(",v1=").unwrap().1;
        let several = format!("t=1000,v1={},v0=ignored,v1={v1}", "0".repeat(64));
        assert!(
            verify(&several, body, &secrets, 300, 1_000),
            "any v1 may match"
        );
        let cases = [
            ("", "missing"),
            ("garbage", "malformed"),
            ("t=1000", "no v1"),
            ("v1=abc", "no timestamp"),
        ];
        for (header, why) in cases {
            assert!(!verify(header, body, &secrets, 300, 1_000), "{why}");
        }
        assert!(
            !verify(
                &sign("whsec_other", 1_000, body),
                body,
                &secrets,
                300,
                1_000
            ),
            "wrong secret"
        );
        assert!(
            !verify(&good, br#"{"id":"evt_2"}"#, &secrets, 300, 1_000),
            "altered body"
        );
        assert!(!verify(&good, body, &secrets, 300, 1_301), "stale");
        assert!(!verify(&good, body, &secrets, 300, 699), "from the future");
        assert!(
            verify(&good, body, &secrets, 300, 1_300),
            "at the edge of the tolerance"
        );
    }
}
