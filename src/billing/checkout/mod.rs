//! Paid sign-up through Stripe Checkout, the customer portal, and pulling a subscription's
//! state from Stripe (the success page and webhook ties).
//!
//! Checkout rules: the price comes from the catalog only (a client names a plan and an interval,
//! never a price); a user with any subscription that is not `canceled` or `incomplete_expired` gets
//! 409 `already_subscribed` (plan changes go through the portal), and so does one whose payment
//! Stripe already took while its webhooks are still on their way: Stripe is asked for the
//! customer's live subscriptions before a session is created, and a previous session that can no
//! longer be expired because it completed is looked at; what they show is applied at once. While the user's Checkout Session
//! for the same plan and interval is open, the same session is returned, and an open session for
//! another choice is expired first, so two sessions can never both complete; a trial is granted
//! only when the user has never had a subscription.

pub mod attempts;

use std::collections::HashMap;

use serde::Serialize;
use stripe::StripeRequest as _;
use stripe_checkout::CheckoutSession;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
    ExpireCheckoutSession, RetrieveCheckoutSession,
};

use crate::{
    auth::users::User,
    billing::Billing,
    billing::{
        catalog::{Interval, Price},
        customers::{self, USER_METADATA_KEY},
        stripe::{
            absent_as_none, idempotent, is_missing, retrying, retrying_with_key, within_deadline,
        },
        subscriptions::{self, Applied, Snapshot, Source},
    },
    error::AppError,
};

use attempts::Attempt;
pub use attempts::{AttemptState, mark_session};

/// The answer of `POST /api/billing/checkout` and `/portal`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedirectUrl {
    /// Where to send the browser.
    pub url: String,
}

/// Creates (or returns the open) Checkout Session for `plan_id` / `interval`, within the request
/// deadline.
pub async fn start_checkout(
    state: &Billing,
    user: &User,
    plan_id: &str,
    interval: &str,
) -> Result<RedirectUrl, AppError> {
    within_deadline(checkout(state, user, plan_id, interval)).await
}

/// How often one request tries to claim the live attempt while concurrent requests for other
/// choices take it first.
const CLAIM_TRIES: usize = 5;

async fn checkout(
    state: &Billing,
    user: &User,
    plan_id: &str,
    interval: &str,
) -> Result<RedirectUrl, AppError> {
    let interval = Interval::parse(interval).ok_or(AppError::InvalidField("interval".into()))?;
    let plan = state
        .catalog
        .plan(plan_id)
        .filter(|p| !p.is_free())
        .ok_or(AppError::UnknownPlan)?;
    let price = plan.prices.get(&interval).ok_or(AppError::UnknownPlan)?;
    let subs = may_check_out(state, user).await?;
    let customer = customers::ensure_customer(state, user).await?;
    // Trials go only to a user's first subscription.
    let trial_days = plan.trial_days.filter(|_| subs.is_empty());
    // The user's live attempt is shared when it is for the same choice, else expired; then this
    // request claims the one live attempt. A concurrent request for another choice may claim it
    // first: its attempt is settled the same way, and the claim tried again. The latest choice
    // wins, and there is never more than one payable session.
    let mut claimed = None;
    for _ in 0..CLAIM_TRIES {
        if let Some(url) = settle_live_attempts(state, user, &plan.id, interval).await? {
            return Ok(RedirectUrl { url });
        }
        claimed = claim_attempt(state, user, &plan.id, interval).await?;
        if claimed.is_some() {
            break;
        }
    }
    let Some(attempt) = claimed else {
        return Err(AppError::PaymentProviderUnavailable);
    };
    let mut created = create_session(
        state, user, &plan.id, price, trial_days, &customer, &attempt,
    )
    .await;
    if let Ok(None) = created {
        // Stripe no longer knows the customer (deleted, its event not applied yet): it is never
        // reused; a new one is created and mapped, under a new key (the old one holds the refusal).
        customers::mark_deleted(&mut *state.db.pool.acquire().await?, &customer).await?;
        let customer = customers::ensure_customer(state, user).await?;
        let key = format!("{attempt}_recreated");
        created = create_session(state, user, &plan.id, price, trial_days, &customer, &key).await;
    }
    let session = match created {
        Ok(Some(s)) => s,
        failed => {
            attempts::remove(&state.db, &attempt).await?;
            return Err(failed.err().unwrap_or_else(|| {
                AppError::Internal(anyhow::anyhow!("a new customer is missing in Stripe"))
            }));
        }
    };
    let url = session
        .url
        .clone()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("Checkout Session without a URL")))?;
    attempts::opened(
        &state.db,
        &attempt,
        session.id.as_str(),
        &url,
        session.expires_at,
    )
    .await?;
    let entry = crate::audit::Entry {
        kind: crate::audit::Kind::CheckoutStarted,
        actor: &user.id,
        subject: Some(&user.id),
        payload: serde_json::json!({"plan": plan.id, "interval": interval, "session": session.id.as_str()}),
    };
    crate::audit::record_alone(&state.db, state.clock.now(), entry).await?;
    tracing::info!(user = %user.id, plan = %plan.id, %interval, "checkout session created");
    Ok(RedirectUrl { url })
}

/// Whether `user` may start a Checkout: a verified address where the setting asks for one, no
/// live subscription here or in Stripe. Returns the user's subscriptions.
async fn may_check_out(state: &Billing, user: &User) -> Result<Vec<subscriptions::Row>, AppError> {
    if state.config.require_verified_for_checkout && !user.email_verified {
        return Err(AppError::EmailUnverified);
    }
    let subs = subscriptions::for_user(&state.db, &user.id).await?;
    if subs.iter().any(|s| !s.status.is_terminal()) {
        return Err(AppError::AlreadySubscribed);
    }
    if let Some(customer) = customers::customer_of(state, &user.id).await? {
        refuse_if_live_in_stripe(state, &customer).await?;
    }
    Ok(subs)
}

/// Claims the user's one live attempt (`creating`); `None` when another request holds it.
async fn claim_attempt(
    state: &Billing,
    user: &User,
    plan_id: &str,
    interval: Interval,
) -> Result<Option<String>, AppError> {
    Ok(attempts::claim(&state.db, &user.id, plan_id, interval.as_str()).await?)
}

/// Creates the Checkout Session of one attempt (`key`); `None` when Stripe does not know `customer`.
async fn create_session(
    state: &Billing,
    user: &User,
    plan_id: &str,
    price: &Price,
    trial_days: Option<u32>,
    customer: &str,
    key: &str,
) -> Result<Option<CheckoutSession>, AppError> {
    let base = state.base_url.as_str().trim_end_matches('/');
    let metadata = HashMap::from([
        (USER_METADATA_KEY.to_owned(), user.id.clone()),
        ("tollgate_plan".to_owned(), plan_id.to_owned()),
    ]);
    let mut line = CreateCheckoutSessionLineItems::new();
    line.price = Some(price.stripe_id.clone());
    line.quantity = Some(1);
    let mut subscription_data = CreateCheckoutSessionSubscriptionData::new();
    subscription_data.trial_period_days = trial_days;
    subscription_data.metadata = Some(metadata.clone());
    let request = CreateCheckoutSession::new()
        .mode(stripe_checkout::CheckoutSessionMode::Subscription)
        .customer(customer)
        .client_reference_id(user.id.as_str())
        .line_items(vec![line])
        .subscription_data(subscription_data)
        .metadata(metadata)
        .success_url(format!(
            "{base}/billing/success?session_id={{CHECKOUT_SESSION_ID}}"
        ))
        .cancel_url(format!("{base}/pricing?canceled=1"));
    retrying_with_key(key, |key| {
        let sent = request
            .customize()
            .request_strategy(idempotent(key))
            .send(&state.stripe.client);
        async move { absent_as_none(sent.await, customers::is_missing_customer) }
    })
    .await
}

/// A payment whose webhooks have not landed yet still counts: Stripe is asked for the customer's
/// subscriptions, and any live one is applied now and the checkout refused with 409.
async fn refuse_if_live_in_stripe(state: &Billing, customer: &str) -> Result<(), AppError> {
    let before =
        subscriptions::BeforeFetch::of_customer(&state.db, customer, state.clock.now()).await?;
    let live: Vec<Snapshot> = super::sync::list_subscriptions(state, customer)
        .await?
        .into_iter()
        .filter(|s| !s.status.is_terminal())
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    for snap in &live {
        apply_fetched(state, snap, before.stamp(&snap.id), Source::Fetched).await?;
    }
    Err(AppError::AlreadySubscribed)
}

/// Expiring a session failed without an outage: Stripe refuses to expire a completed session, so
/// look at it. A completed one was paid: its subscription is applied and the checkout is refused.
async fn refuse_if_completed(
    state: &Billing,
    attempt: &str,
    session: &str,
) -> Result<(), AppError> {
    let request = RetrieveCheckoutSession::new(session);
    let found = retrying(|| request.send(&state.stripe.client)).await?;
    let Some(subscription) = found.subscription.as_ref().map(|s| s.id().to_string()) else {
        return Ok(());
    };
    sync_subscription(state, &subscription, None).await?;
    attempts::set_state(&state.db, attempt, AttemptState::Complete).await?;
    Err(AppError::AlreadySubscribed)
}

/// Deals with the user's live attempts: returns the URL of an open session for the same choice,
/// waits (up to 5 s) for one being created concurrently, and expires any other so that two
/// sessions can never both complete.
async fn settle_live_attempts(
    state: &Billing,
    user: &User,
    plan_id: &str,
    interval: Interval,
) -> Result<Option<String>, AppError> {
    for _ in 0..50 {
        let live = attempts::live(&state.db, &user.id).await?;
        let Some(Attempt {
            id: attempt,
            state: status,
            plan_id: open_plan,
            interval: open_interval,
            session,
            url,
            expires_at: expires,
        }) = live.into_iter().next()
        else {
            return Ok(None);
        };
        if status == AttemptState::Creating {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        let still_open = expires.is_some_and(|e| e > state.clock.now() + 60);
        if still_open && open_plan == plan_id && open_interval == interval.as_str() {
            return Ok(url);
        }
        // Expired in Stripe whatever tollgate's clock says: a session near its end (or one
        // tollgate's clock thinks is over) may still be payable by Stripe's.
        if let Some(session) = session {
            let request = ExpireCheckoutSession::new(session.as_str());
            let expired = retrying_with_key(&format!("{attempt}_expire"), |key| {
                request
                    .customize()
                    .request_strategy(idempotent(key))
                    .send(&state.stripe.client)
            })
            .await;
            match expired {
                Ok(_) => {}
                // Unreachable Stripe: keep the old session rather than risk two live ones.
                Err(AppError::PaymentProviderUnavailable) => {
                    return Err(AppError::PaymentProviderUnavailable);
                }
                Err(_) => refuse_if_completed(state, &attempt, &session).await?,
            }
        }
        attempts::set_state(&state.db, &attempt, AttemptState::Expired).await?;
    }
    // Still 'creating' after 5 s. Claimed before any request could still be running: it died
    // with its process, and is retired. Younger, it may be waiting on a slow Stripe, and a second
    // session made now could be paid as well: this request is refused instead.
    let died_before = crate::db::now() - STUCK_CREATING_SECS;
    if attempts::fail_creating(&state.db, &user.id, died_before).await? {
        return Ok(None);
    }
    Err(AppError::ChangeInProgress)
}

/// How long after its claim an attempt still `creating` is known dead: longer than any request
/// runs (30 s, `app`'s timeout).
const STUCK_CREATING_SECS: i64 = 60;

/// Fetches a subscription from Stripe and applies it as the current state; `tie` is the stamp of
/// the ordering tie it settles, if that is why.
/// A subscription Stripe does not know applies nothing (`Stale`).
pub async fn sync_subscription(
    state: &Billing,
    subscription_id: &str,
    tie: Option<i64>,
) -> Result<Applied, AppError> {
    let request = stripe_billing::subscription::RetrieveSubscription::new(subscription_id);
    // Stamped without trusting our clock to agree with Stripe's, from the row as it was before
    // the call (see `subscriptions::BeforeFetch`), or with the tie's own stamp.
    let stamp = match tie {
        Some(tie) => tie,
        None => subscriptions::BeforeFetch::of_subscription(
            &state.db,
            subscription_id,
            state.clock.now(),
        )
        .await?
        .stamp(subscription_id),
    };
    // Nothing to follow when Stripe does not know it: a redelivery cannot make it exist.
    let fetched =
        retrying(|| async { absent_as_none(request.send(&state.stripe.client).await, is_missing) })
            .await?;
    let Some(fetched) = fetched else {
        tracing::warn!(
            subscription_id,
            "Stripe does not know this subscription; nothing applied"
        );
        return Ok(Applied::Stale);
    };
    let source = if tie.is_some() {
        Source::Settled
    } else {
        Source::Fetched
    };
    apply_fetched(state, &Snapshot::from_stripe(&fetched), stamp, source).await
}

/// Applies a state read from Stripe, stamped `stamp` (see [`sync_subscription`]).
async fn apply_fetched(
    state: &Billing,
    snap: &Snapshot,
    stamp: i64,
    source: Source,
) -> Result<Applied, AppError> {
    let mut tx = state.db.begin().await?;
    let Some(user) = customers::user_of(&mut tx, &snap.customer).await? else {
        tracing::warn!(customer = %snap.customer, "subscription of an unmapped customer not applied");
        return Ok(Applied::Stale);
    };
    let stamp = subscriptions::Stamp {
        at: stamp,
        source,
        seen: state.clock.now(),
    };
    let applied = subscriptions::apply(&mut tx, &state.catalog, snap, &user, stamp).await?;
    state.commit_for(tx, &user).await?;
    Ok(applied)
}

/// What the success page found.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckoutOutcome {
    /// The session completed; its subscription was applied.
    Completed,
    /// Still open or not paid.
    Pending,
    /// Not this user's session: nothing was granted.
    NotYours,
}

/// The success page's pull: retrieves the Checkout Session and its subscription from Stripe and
/// applies them through the same code path as the webhook. Idempotent.
pub async fn complete_from_success_page(
    state: &Billing,
    user: &User,
    session_id: &str,
) -> Result<CheckoutOutcome, AppError> {
    // A Stripe id or nothing: the id goes into the API path, so `/`, `?`, `%` and the like would
    // let the page choose what tollgate asks Stripe with its secret key.
    let well_formed = session_id.len() <= 255
        && session_id.strip_prefix("cs_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if !well_formed {
        return Ok(CheckoutOutcome::NotYours);
    }
    let request = RetrieveCheckoutSession::new(session_id);
    let session = match retrying(|| request.send(&state.stripe.client)).await {
        Ok(s) => s,
        Err(AppError::Internal(_)) => return Ok(CheckoutOutcome::NotYours),
        Err(e) => return Err(e),
    };
    let mine = customers::customer_of(state, &user.id).await?;
    let session_customer = session.customer.as_ref().map(|c| c.id().to_string());
    // Another user's session id grants nothing.
    if mine.is_none() || session_customer != mine {
        return Ok(CheckoutOutcome::NotYours);
    }
    let Some(subscription) = session.subscription.as_ref().map(|s| s.id().to_string()) else {
        return Ok(CheckoutOutcome::Pending);
    };
    sync_subscription(state, &subscription, None).await?;
    mark_session(
        &mut *state.db.pool.acquire().await?,
        session_id,
        AttemptState::Complete,
    )
    .await?;
    Ok(CheckoutOutcome::Completed)
}
