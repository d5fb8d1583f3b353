//! One API call as Stripe runs it: outage and authentication checks, idempotency keys, the
//! configured latency and failures, then the operation under the state lock.

use axum::{
    Json,
    body::Bytes,
    extract::{FromRequest, Request},
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use url::form_urlencoded;

use super::{
    Simulator,
    state::{IDEMPOTENCY_KEY_SECS, Idempotency, SimState},
    wire::{ApiResult, Form, form, stripe_error},
};

/// One API request as the simulator reads it: its headers, its parameters, and, for a call that
/// changes something (any method but GET), what an `Idempotency-Key` is bound to: the method, the
/// path and the parameters, whatever their order (Stripe compares parameters, not bytes).
pub(super) struct Call {
    /// The request's headers (authentication, idempotency key).
    pub headers: HeaderMap,
    /// The form parameters (the last of a repeated name wins).
    pub form: Form,
    request: Option<String>,
}

impl FromRequest<Simulator> for Call {
    type Rejection = Response;

    async fn from_request(request: Request, sim: &Simulator) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), sim)
            .await
            .map_err(IntoResponse::into_response)?;
        let request = (parts.method != Method::GET).then(|| {
            let mut pairs: Vec<(String, String)> = form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            pairs.sort();
            let params = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            format!("{} {}?{params}", parts.method, parts.uri.path())
        });
        Ok(Self {
            headers: parts.headers,
            form: form(&body),
            request,
        })
    }
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
    /// Idempotency, for a call that changes something ([`Call`]) sent with an `Idempotency-Key`, as
    /// Stripe keeps it: while the key's first request runs, another gets 409; once answered, the
    /// same request replays the answer (`Idempotent-Replayed: true`) and a different one (other
    /// parameters or endpoint) is refused with 400 `idempotency_error`, for 24 hours of Stripe's
    /// clock. A request refused before it ran (a 400 `invalid_request_error`: bad parameters, a
    /// missing object) saves nothing, so the key can be used again; a 5xx once it began
    /// (`/_sim/fail`) is saved and replayed, as Stripe does.
    pub(super) async fn api(
        &self,
        call: &Call,
        op: impl FnOnce(&Simulator, &mut SimState, i64) -> ApiResult,
    ) -> Response {
        let (headers, request) = (&call.headers, call.request.clone());
        let key = request
            .is_some()
            .then(|| headers.get("idempotency-key").and_then(|v| v.to_str().ok()))
            .flatten()
            .map(str::to_owned);
        let request = request.unwrap_or_default();
        let latency = match self.admit(headers, key.as_deref(), &request) {
            Ok(latency) => latency,
            Err(answer) => return answer.into_response(),
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
        if let Some(k) = in_flight.key.take() {
            save_answer(&mut state, k, request, now, status, &body);
        }
        (status, Json(body)).into_response()
    }

    /// Everything checked before a call runs, under one lock: the request is counted, then the
    /// outage, the API key, the idempotency key and an injected failure may answer it. `Ok` holds
    /// the latency to wait before running it.
    fn admit(
        &self,
        headers: &HeaderMap,
        key: Option<&str>,
        request: &str,
    ) -> Result<u64, Answered> {
        let authorised = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer sk_") || v.starts_with("Bearer rk_"));
        let mut state = self.lock();
        state.requests += 1;
        if state.outage {
            return Err(Answered::new(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": {"type": "api_error", "message": "The simulator is in a simulated outage."}}),
            ));
        }
        if !authorised {
            return Err(refusal(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "Invalid API Key provided".into(),
            ));
        }
        let now = self.inner.clock.now();
        if let Some(k) = key {
            claim_key(&mut state, k, request, now)?;
        }
        injected_failure(&mut state, key, request, now)?;
        Ok(state.latency_ms)
    }
}

/// Marks idempotency key `k` in flight for `request`, unless it already answers it: a replay of
/// its saved answer, a refusal of another request with the key, or 409 while its first request
/// runs. A key older than 24 hours of Stripe's clock is forgotten first.
fn claim_key(state: &mut SimState, k: &str, request: &str, now: i64) -> Result<(), Answered> {
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
            Err(Answered {
                status: *status,
                body: body.clone(),
                replayed: true,
            })
        }
        Some(Idempotency::Done { .. }) => Err(refusal(
            StatusCode::BAD_REQUEST,
            "idempotency_error",
            format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."
            ),
        )),
        Some(Idempotency::InFlight) => Err(refusal(
            StatusCode::CONFLICT,
            "idempotency_error",
            "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): please try again later.".into(),
        )),
        None => {
            state.idempotency.insert(k.to_owned(), Idempotency::InFlight);
            Ok(())
        }
    }
}

/// A failure set with `/_sim/fail`, once the call has begun: Stripe keeps it as the key's answer
/// (its 5xx answers are replayed to every retry with the key for 24 hours).
fn injected_failure(
    state: &mut SimState,
    key: Option<&str>,
    request: &str,
    now: i64,
) -> Result<(), Answered> {
    if state.fail_next == 0 || (key.is_none() && state.fail_keyed_only) {
        return Ok(());
    }
    state.fail_next -= 1;
    let (s, v) = stripe_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "api_error",
        "A simulated failure of this one call.".into(),
        None,
    );
    if let Some(k) = key {
        state.idempotency.insert(
            k.to_owned(),
            Idempotency::Done {
                request: request.to_owned(),
                at: now,
                status: s,
                body: v.clone(),
            },
        );
    }
    Err(Answered::new(s, v))
}

/// Saves a call's answer as its idempotency key's, or frees the key when the call was refused
/// before it ran (a 400, or a missing object).
fn save_answer(
    state: &mut SimState,
    k: String,
    request: String,
    now: i64,
    status: StatusCode,
    body: &Value,
) {
    let refused_before_running =
        status == StatusCode::BAD_REQUEST || body["error"]["code"] == "resource_missing";
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

/// A Stripe error answered before the call runs.
fn refusal(status: StatusCode, kind: &str, message: String) -> Answered {
    let (s, v) = stripe_error(status, kind, message, None);
    Answered::new(s, v)
}

/// An answer given before the call runs: a refusal, or a replay of a key's saved answer.
struct Answered {
    status: StatusCode,
    body: Value,
    replayed: bool,
}

impl Answered {
    fn new(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            replayed: false,
        }
    }
}

impl IntoResponse for Answered {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", "true".parse().expect("static"));
        }
        response
    }
}
