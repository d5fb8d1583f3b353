//! One API call as Stripe runs it: outage and authentication checks, idempotency keys, the
//! configured latency and failures, then the operation under the state lock.

use axum::{
    Json,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{
    Simulator,
    state::{IDEMPOTENCY_KEY_SECS, Idempotency, SimState},
    wire::{ApiResult, stripe_error},
};

/// What an idempotency key is bound to: the method and path, and the parameters sent.
pub(super) fn request_of(route: String, body: &[u8]) -> String {
    format!("{route}?{}", String::from_utf8_lossy(body))
}

/// Releases an in-flight key whose request was dropped before it was processed.
struct InFlight<'a> {
    sim: &'a Simulator,
    key: Option<String>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.sim.lock().idempotency.remove(&key);
        }
    }
}

impl Simulator {
    /// Runs one API call: outage check, authentication, idempotency (below), the configured
    /// latency, then `op` under the state lock.
    ///
    /// Idempotency, for a creating call (`request` names it) sent with an `Idempotency-Key`, as
    /// Stripe keeps it: while the key's first request runs, another gets 409; once answered, the
    /// same request replays the answer (`Idempotent-Replayed: true`) and a different one (other
    /// parameters or endpoint) is refused with 400 `idempotency_error`, for 24 hours of Stripe's
    /// clock. A request refused before it ran (a 400 `invalid_request_error`: bad parameters, a
    /// missing object) saves nothing, so the key can be used again; a 5xx once it began
    /// (`/_sim/fail`) is saved and replayed, as Stripe does.
    pub(super) async fn api(
        &self,
        headers: &HeaderMap,
        request: Option<String>,
        op: impl FnOnce(&Simulator, &mut SimState, i64) -> ApiResult,
    ) -> Response {
        let authorised = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer sk_") || v.starts_with("Bearer rk_"));
        let key = request
            .is_some()
            .then(|| headers.get("idempotency-key").and_then(|v| v.to_str().ok()))
            .flatten()
            .map(str::to_owned);
        let request = request.unwrap_or_default();
        let latency = {
            let mut state = self.lock();
            state.requests += 1;
            if state.outage {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"error": {"type": "api_error", "message": "The simulator is in a simulated outage."}})),
                )
                    .into_response();
            }
            if !authorised {
                let (s, v) = stripe_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request_error",
                    "Invalid API Key provided".into(),
                    None,
                );
                return (s, Json(v)).into_response();
            }
            let now = self.inner.clock.now();
            if let Some(k) = &key {
                let expired = matches!(state.idempotency.get(k),
                    Some(Idempotency::Done { at, .. }) if now - at >= IDEMPOTENCY_KEY_SECS);
                if expired {
                    state.idempotency.remove(k);
                }
                match state.idempotency.get(k) {
                    Some(Idempotency::Done {
                        request: first,
                        status,
                        body,
                        ..
                    }) if *first == request => {
                        let mut response = (*status, Json(body.clone())).into_response();
                        response
                            .headers_mut()
                            .insert("idempotent-replayed", "true".parse().expect("static"));
                        return response;
                    }
                    Some(Idempotency::Done { .. }) => {
                        let (s, v) = stripe_error(
                            StatusCode::BAD_REQUEST,
                            "idempotency_error",
                            format!(
                                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."
                            ),
                            None,
                        );
                        return (s, Json(v)).into_response();
                    }
                    Some(Idempotency::InFlight) => {
                        let (s, v) = stripe_error(
                            StatusCode::CONFLICT,
                            "idempotency_error",
                            "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): please try again later.".into(),
                            None,
                        );
                        return (s, Json(v)).into_response();
                    }
                    None => {
                        state.idempotency.insert(k.clone(), Idempotency::InFlight);
                    }
                }
            }
            // A failure once the call has begun: Stripe keeps it as the key's answer (its 5xx
            // answers are replayed to every retry with the key for 24 hours).
            if state.fail_next > 0 && (key.is_some() || !state.fail_keyed_only) {
                state.fail_next -= 1;
                let (s, v) = stripe_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    "A simulated failure of this one call.".into(),
                    None,
                );
                if let Some(k) = &key {
                    state.idempotency.insert(
                        k.clone(),
                        Idempotency::Done {
                            request,
                            at: now,
                            status: s,
                            body: v.clone(),
                        },
                    );
                }
                return (s, Json(v)).into_response();
            }
            state.latency_ms
        };
        let mut in_flight = InFlight {
            sim: self,
            key: key.clone(),
        };
        if latency > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
        }
        let mut state = self.lock();
        let now = self.inner.clock.now();
        self.expire_due_sessions(&mut state, now);
        let (status, body) = op(self, &mut state, now).unwrap_or_else(|e| e);
        let refused_before_running =
            status == StatusCode::BAD_REQUEST || body["error"]["code"] == "resource_missing";
        if let Some(k) = in_flight.key.take() {
            if refused_before_running {
                state.idempotency.remove(&k);
            } else {
                state.idempotency.insert(
                    k,
                    Idempotency::Done {
                        request,
                        at: now,
                        status,
                        body: body.clone(),
                    },
                );
            }
        }
        (status, Json(body)).into_response()
    }
}
