//! The simulator's state: everything Stripe would hold for one account, and what the simulator
//! keeps beside it (idempotency keys, failing cards, the outage and failure switches).

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::http::StatusCode;
use serde_json::Value;

/// Everything the simulator holds, behind one lock.
#[derive(Default)]
pub(super) struct SimState {
    pub(super) customers: BTreeMap<String, Value>,
    pub(super) products: BTreeMap<String, Value>,
    pub(super) prices: BTreeMap<String, Value>,
    pub(super) checkout_sessions: BTreeMap<String, CheckoutState>,
    pub(super) portal_sessions: BTreeMap<String, Value>,
    pub(super) subscriptions: BTreeMap<String, SubState>,
    pub(super) invoices: BTreeMap<String, Value>,
    pub(super) payment_methods: BTreeMap<String, Value>,
    pub(super) schedules: BTreeMap<String, Value>,
    pub(super) events: Vec<Value>,
    pub(super) idempotency: HashMap<String, Idempotency>,
    pub(super) failing_customers: HashSet<String>,
    pub(super) outage: bool,
    pub(super) fail_next: u64,
    pub(super) fail_keyed_only: bool,
    pub(super) latency_ms: u64,
    pub(super) requests: u64,
}

/// What Stripe knows of an idempotency key.
pub(super) enum Idempotency {
    /// Its first request is still being processed: a concurrent one gets 409.
    InFlight,
    /// Answered at (Stripe's clock) a time: for 24 hours, the same request replays the answer
    /// and any other request with the key is refused.
    Done {
        request: String,
        at: i64,
        status: StatusCode,
        body: Value,
    },
}

/// How long Stripe keeps an idempotency key.
pub(super) const IDEMPOTENCY_KEY_SECS: i64 = 24 * 3600;

/// A Checkout Session and what completing it needs.
pub(super) struct CheckoutState {
    pub(super) object: Value,
    /// The first line item's price (the hosted page names it).
    pub(super) price: String,
    /// Every line item: price id and quantity.
    pub(super) items: Vec<(String, i64)>,
    pub(super) trial_days: Option<i64>,
    pub(super) subscription_metadata: Value,
}

/// A subscription and its renewal bookkeeping.
pub(super) struct SubState {
    pub(super) object: Value,
    pub(super) failed_attempts: u32,
    pub(super) trial_will_end_sent: bool,
    /// Proration lines waiting for the next renewal invoice (`create_prorations`).
    pub(super) pending_lines: Vec<Value>,
}
