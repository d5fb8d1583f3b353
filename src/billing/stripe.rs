//! The Stripe client: the real async-stripe client, pointed at Stripe, at `STRIPE_API_BASE`, or at
//! the built-in simulator, with bounded retries.
//!
//! Every creating call carries an idempotency key that names one attempt: it is generated and
//! stored before the call and reused only when that same attempt is retried (Stripe keeps keys for
//! 24 hours). Time: one call (retries included) gets at most [`CALL_BUDGET`], and a request's
//! whole Stripe work (checkout, portal, account deletion) at most [`REQUEST_DEADLINE`], so a
//! hanging Stripe is answered with a JSON 503 well inside the 30 s request timeout.
//! Retries: 3 attempts, 200 ms then 400 ms apart, on 429, 5xx, timeouts, network
//! errors and the 409 `idempotency_error` Stripe answers while the key's first request is still in
//! flight; other Stripe errors are not retried. When Stripe cannot be reached the caller answers
//! 503 `payment_provider_unavailable` with nothing half-done locally.

use std::{future::Future, time::Duration};

use anyhow::Context as _;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError};

use crate::{
    billing::catalog::Catalog,
    config::{Config, Mode, Secret},
    error::AppError,
};

/// How long a call to Stripe may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The client and, in development without keys, the simulator behind it.
#[derive(Clone)]
pub struct StripeApi {
    /// The async-stripe client.
    pub client: Client,
    /// The URL of the in-process simulator, when tollgate runs one (its pages link to it).
    pub simulator_url: Option<String>,
    /// Accepted webhook signing secrets (configured, or generated for the simulator).
    pub webhook_secrets: Vec<Secret>,
}

impl StripeApi {
    /// True in development without Stripe keys: start-up then runs the built-in simulator and
    /// talks to it ([`StripeApi::simulator`]).
    pub fn wants_simulator(config: &Config) -> bool {
        config.stripe_secret_key.is_none()
            && config.stripe_api_base.is_none()
            && config.mode == Mode::Development
    }

    /// A client of the in-process simulator at `url`, accepting `webhook_secrets`.
    pub fn simulator(url: &str, webhook_secrets: Vec<Secret>) -> anyhow::Result<Self> {
        let client = ClientBuilder::new("sk_test_simulator")
            .url(url)
            .timeout(TIMEOUT)
            .build()
            .context("stripe client")?;
        Ok(Self {
            client,
            simulator_url: Some(url.to_owned()),
            webhook_secrets,
        })
    }

    /// Connects to Stripe as configured and resolves the catalog's prices to Stripe price ids.
    pub async fn connect(config: &Config, catalog: &mut Catalog) -> anyhow::Result<Self> {
        let timeout = TIMEOUT;
        let key = config
            .stripe_secret_key
            .as_ref()
            .map(|k| k.expose().to_owned())
            .unwrap_or_else(|| "sk_test_unset".into());
        let mut builder = ClientBuilder::new(key).timeout(timeout);
        if let Some(base) = &config.stripe_api_base {
            builder = builder.url(base.as_str());
        }
        let client = builder.build().context("stripe client")?;
        let api = Self {
            client,
            simulator_url: None,
            webhook_secrets: config.stripe_webhook_secrets.clone(),
        };
        api.resolve_prices(catalog, config.mode).await?;
        Ok(api)
    }

    /// Real Stripe: price ids are used as they are, lookup keys are looked up once at start-up
    /// (active prices only, at most 10 keys a request, as Stripe allows), and every price the
    /// catalog offers is checked against Stripe: it exists, is active, recurs on the catalog's
    /// interval and has the catalog's amount and currency. A mismatch is a [`CatalogMismatch`]
    /// naming the plan (exit 2), so tollgate never shows one price and charges another.
    async fn resolve_prices(&self, catalog: &mut Catalog, mode: Mode) -> anyhow::Result<()> {
        let mut keys = Vec::new();
        for (id, name, interval, price) in catalog.prices_mut() {
            match price.reference.clone() {
                Some(r) if r.starts_with("price_") => price.stripe_id = r,
                Some(r) => keys.push(r),
                // A standalone `tollgate stripe-sim` seeds unnamed prices under this key.
                None if mode == Mode::Development => {
                    let key = Catalog::default_lookup_key(id, interval);
                    price.reference = Some(key.clone());
                    keys.push(key);
                }
                None => anyhow::bail!(
                    "TOLLGATE_PLANS: plan `{name}` {interval} price needs `price` (a Stripe price id or lookup key) when Stripe keys are set"
                ),
            }
        }
        let mut found: Vec<stripe_product::Price> = Vec::new();
        for batch in keys.chunks(10) {
            // Archived prices keep their lookup key in Stripe's list unless asked for active ones.
            let request = stripe_product::price::ListPrice::new()
                .lookup_keys(batch.to_vec())
                .active(true)
                .limit(100);
            let page = retrying(|| request.send(&self.client)).await.map_err(|_| {
                anyhow::anyhow!("cannot look up the catalog's price lookup keys in Stripe")
            })?;
            found.extend(page.data);
        }
        for (id, name, interval, price) in catalog.prices_mut() {
            let stripe_price = if price.stripe_id.is_empty() {
                let key = price.reference.clone().unwrap_or_default();
                let hit = found
                    .iter()
                    .find(|p| p.lookup_key.as_deref() == Some(key.as_str()))
                    .cloned()
                    .ok_or_else(|| {
                        CatalogMismatch(format!(
                            "plan `{id}` ({name}) {interval}: no active Stripe price has lookup key `{key}`"
                        ))
                    })?;
                price.stripe_id = hit.id.to_string();
                hit
            } else {
                let request = stripe_product::price::RetrievePrice::new(price.stripe_id.as_str());
                // Retried like any call; an unreadable price stops start-up, never goes unchecked.
                let fetched = retrying(|| async {
                    absent_as_none(request.send(&self.client).await, is_missing)
                })
                .await
                .map_err(|_| anyhow::anyhow!("cannot read the catalog's prices from Stripe"))?;
                fetched.ok_or_else(|| {
                    CatalogMismatch(format!(
                        "plan `{id}` ({name}) {interval}: Stripe has no price `{}`",
                        price.stripe_id
                    ))
                })?
            };
            let problem = price_mismatch(&stripe_price, interval.as_str(), price);
            if let Some(problem) = problem {
                return Err(CatalogMismatch(format!(
                    "plan `{id}` ({name}) {interval}: Stripe price `{}` {problem}",
                    stripe_price.id
                ))
                .into());
            }
        }
        Ok(())
    }
}

/// What is wrong with `stripe_price` for a catalog `price` billed every `interval`, if anything.
fn price_mismatch(
    stripe_price: &stripe_product::Price,
    interval: &str,
    price: &crate::billing::catalog::Price,
) -> Option<String> {
    if !stripe_price.active {
        return Some("is archived".into());
    }
    let Some(recurring) = &stripe_price.recurring else {
        return Some("is not recurring".into());
    };
    if recurring.interval.as_str() != interval || recurring.interval_count != 1 {
        return Some(format!(
            "recurs every {} {}, not every {interval}",
            recurring.interval_count,
            recurring.interval.as_str()
        ));
    }
    if stripe_price.unit_amount != Some(price.amount) {
        return Some(format!(
            "costs {:?}, the catalog says {}",
            stripe_price.unit_amount, price.amount
        ));
    }
    let currency = stripe_price.currency.to_string();
    if !currency.eq_ignore_ascii_case(&price.currency) {
        return Some(format!(
            "is in {currency}, the catalog says {}",
            price.currency
        ));
    }
    None
}

/// The catalog does not match Stripe's prices: start-up stops with exit code 2, naming the plan.
#[derive(Debug)]
pub struct CatalogMismatch(pub String);

impl std::fmt::Display for CatalogMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TOLLGATE_PLANS does not match Stripe: {}", self.0)
    }
}

impl std::error::Error for CatalogMismatch {}

/// The most one call to Stripe may take, its retries included.
pub const CALL_BUDGET: Duration = Duration::from_secs(12);

/// The most a request may spend on Stripe in all: under 15 s, so a hanging Stripe gets a JSON 503
/// `payment_provider_unavailable`, never the bare 503 of the 30 s request timeout.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(14);

/// Runs a request's Stripe work under [`REQUEST_DEADLINE`]; past it, 503
/// `payment_provider_unavailable`. Every step is idempotent, so what a cut leaves half-done is
/// finished by the next attempt.
pub async fn within_deadline<T>(
    work: impl Future<Output = Result<T, AppError>>,
) -> Result<T, AppError> {
    tokio::time::timeout(REQUEST_DEADLINE, work)
        .await
        .unwrap_or_else(|_| {
            tracing::warn!("Stripe work past the request deadline");
            Err(AppError::PaymentProviderUnavailable)
        })
}

/// The request strategy for one attempt identified by `key`.
pub fn idempotent(key: &str) -> RequestStrategy {
    RequestStrategy::Idempotent(IdempotencyKey::new(key).expect("non-empty key"))
}

fn retryable(err: &StripeError) -> bool {
    match err {
        // The key's first request is still in flight: asking again with the same key gets its
        // answer once it is done (never a second object).
        StripeError::Stripe(api, 409) => api.type_ == stripe::ApiErrorsType::IdempotencyError,
        StripeError::Stripe(_, status) => *status == 429 || *status >= 500,
        StripeError::ClientError(_) | StripeError::Timeout => true,
        StripeError::JSONDeserialize(_) | StripeError::ConfigError(_) => false,
    }
}

/// Runs `call` up to three times with backoff on transient failures. Exhausted retries become
/// 503 `payment_provider_unavailable`; a Stripe error that retrying cannot fix is internal.
pub async fn retrying<T, F, Fut>(mut call: F) -> Result<T, AppError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StripeError>>,
{
    retrying_with_key("", |_| call()).await
}

/// [`retrying`] for a call sent with an idempotency key: `call` gets the key to send. A network
/// failure, a timeout or Stripe's 409 for a key still in flight is retried with the same key (so
/// a request that did run is answered, never run twice). A 5xx answer is retried under a fresh
/// key derived from `key`: Stripe keeps a key's 5xx answer for 24 hours and replays it to every
/// retry with that key, so a retry with it could never succeed. Every operation sent this way is
/// one that a second run does not double (cancelling, expiring, updating), or one whose first run,
/// if a 5xx hides one, leaves nothing anyone can use (a Checkout Session whose URL nobody was
/// given) or that `stripe sync` reports (a customer created twice).
pub async fn retrying_with_key<T, F, Fut>(key: &str, mut call: F) -> Result<T, AppError>
where
    F: FnMut(&str) -> Fut,
    Fut: Future<Output = Result<T, StripeError>>,
{
    let mut key = key.to_owned();
    let mut wait = Duration::from_millis(200);
    let deadline = tokio::time::Instant::now() + CALL_BUDGET;
    for attempt in 1..=3 {
        let Ok(answer) = tokio::time::timeout_at(deadline, call(&key)).await else {
            tracing::warn!(attempt, "Stripe call past its budget");
            return Err(AppError::PaymentProviderUnavailable);
        };
        let time_left = tokio::time::Instant::now() + wait < deadline;
        match answer {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && attempt < 3 && time_left => {
                tracing::warn!(error = %short(&e), attempt, "Stripe call failed; retrying");
                if matches!(e, StripeError::Stripe(_, status) if status >= 500) && !key.is_empty() {
                    let mut fresh = [0u8; 8];
                    rand::RngCore::fill_bytes(&mut rand::rng(), &mut fresh);
                    key = format!(
                        "{}.r{}",
                        key.split(".r").next().unwrap_or(""),
                        hex::encode(fresh)
                    );
                }
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) if retryable(&e) => {
                tracing::warn!(error = %short(&e), "Stripe unavailable");
                return Err(AppError::PaymentProviderUnavailable);
            }
            Err(e) => {
                return Err(AppError::Internal(anyhow::anyhow!(
                    "Stripe refused a call: {}",
                    short(&e)
                )));
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// True when Stripe refused because an object named in the call does not exist (`resource_missing`).
pub fn is_missing(err: &StripeError) -> bool {
    matches!(err, StripeError::Stripe(api, _)
        if api.code.as_ref().is_some_and(|c| c.as_str() == "resource_missing"))
}

/// `answer`, with a refusal `absent` recognises (an object Stripe does not know) as `Ok(None)`:
/// retrying cannot make it exist, so the caller decides what its absence means.
pub fn absent_as_none<T>(
    answer: Result<T, StripeError>,
    absent: fn(&StripeError) -> bool,
) -> Result<Option<T>, StripeError> {
    match answer {
        Err(e) if absent(&e) => Ok(None),
        answer => answer.map(Some),
    }
}

/// A one-line description of a Stripe error (no request bodies, no keys).
fn short(err: &StripeError) -> String {
    match err {
        StripeError::Stripe(api, status) => format!(
            "{status} {}: {}",
            api.code.as_ref().map(|c| c.as_str()).unwrap_or("-"),
            api.message.as_deref().unwrap_or("")
        ),
        other => other.to_string(),
    }
}
