//! Step 2: the typed event. Parsed into tollgate's own minimal shape, which ignores unknown
//! fields, so a Stripe API version change cannot break ingestion; unknown event types are kept
//! as sent ([`Kind::Other`]), recorded, and grant nothing.

use serde::Deserialize;
use serde_json::Value;

use crate::billing::subscriptions::id_of;

/// A verified Stripe event.
pub struct Event {
    /// `evt_…`: the key that makes delivery exactly-once.
    pub id: String,
    /// What happened.
    pub kind: Kind,
    /// When, on Stripe's clock.
    pub created: i64,
    /// Whether Stripe sent it from live mode (absent in hand-made events: taken as matching).
    pub livemode: Option<bool>,
    /// `data.object`: the object the event is about, as Stripe sent it.
    pub object: Value,
}

#[derive(Deserialize)]
struct Raw {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    #[serde(default)]
    livemode: Option<bool>,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: Value,
}

impl Event {
    /// The event in `body`, or `None` when it does not have an event's shape.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let raw: Raw = serde_json::from_slice(body).ok()?;
        Some(Self {
            id: raw.id,
            kind: Kind::parse(&raw.kind),
            created: raw.created,
            livemode: raw.livemode,
            object: raw.data.object,
        })
    }

    /// The customer the event is about, when it names one.
    pub fn customer(&self) -> Option<String> {
        let o = &self.object;
        match self.kind {
            Kind::CustomerUpdated | Kind::CustomerDeleted => o.get("id").and_then(id_of),
            Kind::Other(ref name)
                if name.starts_with("customer.") && !name.starts_with("customer.subscription.") =>
            {
                o.get("id").and_then(id_of)
            }
            _ => o.get("customer").and_then(id_of),
        }
    }
}

/// The event types tollgate acts on (see <https://docs.stripe.com/api/events/types>), and the
/// others, kept by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `customer.subscription.*`: the subscription's new state is in the event (which one is the
    /// `&str`: created, updated, deleted, paused, resumed, pending_update_applied/expired).
    SubscriptionChanged(&'static str),
    /// `customer.subscription.trial_will_end`: a state, and a notice to the user.
    TrialWillEnd,
    /// `checkout.session.completed` / `checkout.session.async_payment_succeeded`.
    CheckoutCompleted(&'static str),
    /// `checkout.session.expired`.
    CheckoutExpired,
    /// `invoice.payment_failed`: the past-due episode starts, and a notice to the user.
    PaymentFailed,
    /// `invoice.payment_action_required`: the past-due episode starts.
    PaymentActionRequired,
    /// `invoice.paid` / `invoice.payment_succeeded`: recorded (the state comes with the
    /// subscription's own event).
    InvoicePaid(&'static str),
    /// `customer.updated`: recorded (Stripe never changes the login identity).
    CustomerUpdated,
    /// `customer.deleted`: the customer and its subscriptions end.
    CustomerDeleted,
    /// Anything else, as sent.
    Other(String),
}

/// The `customer.subscription.*` events that carry a state to apply.
const SUBSCRIPTION_CHANGES: [&str; 7] = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
];

impl Kind {
    /// The kind of a Stripe event type.
    pub fn parse(name: &str) -> Self {
        if let Some(known) = SUBSCRIPTION_CHANGES.iter().find(|k| **k == name) {
            return Self::SubscriptionChanged(known);
        }
        match name {
            "customer.subscription.trial_will_end" => Self::TrialWillEnd,
            "checkout.session.completed" => Self::CheckoutCompleted("checkout.session.completed"),
            "checkout.session.async_payment_succeeded" => {
                Self::CheckoutCompleted("checkout.session.async_payment_succeeded")
            }
            "checkout.session.expired" => Self::CheckoutExpired,
            "invoice.payment_failed" => Self::PaymentFailed,
            "invoice.payment_action_required" => Self::PaymentActionRequired,
            "invoice.paid" => Self::InvoicePaid("invoice.paid"),
            "invoice.payment_succeeded" => Self::InvoicePaid("invoice.payment_succeeded"),
            "customer.updated" => Self::CustomerUpdated,
            "customer.deleted" => Self::CustomerDeleted,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Stripe's name for it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::SubscriptionChanged(name)
            | Self::CheckoutCompleted(name)
            | Self::InvoicePaid(name) => name,
            Self::TrialWillEnd => "customer.subscription.trial_will_end",
            Self::CheckoutExpired => "checkout.session.expired",
            Self::PaymentFailed => "invoice.payment_failed",
            Self::PaymentActionRequired => "invoice.payment_action_required",
            Self::CustomerUpdated => "customer.updated",
            Self::CustomerDeleted => "customer.deleted",
            Self::Other(name) => name,
        }
    }
}

/// What storing and applying an event came to: stored in `stripe_events.outcome` and answered
/// to Stripe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The event changed tollgate's state.
    Applied,
    /// Seen before (or being stored by another instance): nothing done.
    Duplicate,
    /// Older than the state already stored.
    Stale,
    /// A tie with the stored state: Stripe's current state was fetched and applied.
    Refetched,
    /// About a customer no user has.
    Orphan,
    /// Of a type (or shape) tollgate does not act on.
    Ignored,
    /// Kept for the record; the state comes with another event.
    Recorded,
    /// From the other Stripe mode (test vs live): never applied.
    WrongMode,
}

impl Outcome {
    /// The stored and answered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::Refetched => "refetched",
            Self::Orphan => "orphan",
            Self::Ignored => "ignored",
            Self::Recorded => "recorded",
            Self::WrongMode => "wrong_mode",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_their_stripe_names() {
        for name in SUBSCRIPTION_CHANGES.into_iter().chain([
            "customer.subscription.trial_will_end",
            "checkout.session.completed",
            "checkout.session.async_payment_succeeded",
            "checkout.session.expired",
            "invoice.payment_failed",
            "invoice.payment_action_required",
            "invoice.paid",
            "invoice.payment_succeeded",
            "customer.updated",
            "customer.deleted",
            "customer.source.created",
        ]) {
            assert_eq!(Kind::parse(name).as_str(), name);
        }
        assert_eq!(
            Kind::parse("customer.source.created"),
            Kind::Other("customer.source.created".into())
        );
    }
}
