//! Step 1: verification, tollgate's own, over the raw body. Every `v1` signature of the
//! `Stripe-Signature` header is checked against every configured secret (rotation) in constant
//! time, the timestamp must be within the tolerance in both directions, `v0` is ignored. Anything
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
        let signature = request
            .headers()
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
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

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::sim::delivery::sign;

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
