//! The built-in Stripe simulator: a stateful, in-memory implementation of the part of Stripe's
//! HTTP API that tollgate uses, with hosted Checkout and portal pages, signed webhook delivery with
//! retries, a test clock and a chaos switch.
//!
//! It speaks Stripe's wire format (form-encoded requests with bracketed keys, JSON objects shaped
//! like Stripe's own examples, Stripe's error envelope, `Idempotency-Key` replay), so the real
//! async-stripe client and tollgate's real webhook verifier run against it. It only exists in
//! development without Stripe keys, or alone as `tollgate stripe-sim`. Its control endpoints live
//! under `/_sim/`.
//!
//! Simplifications, documented for people reading test results: months are 30 days and years 365;
//! a subscription is billed on its first item's interval; a failing card fails every charge until
//! it is fixed, and a subscription that fails three renewal attempts in a row is canceled; a
//! schedule's phases have one item each and change prices only at a period boundary; every paid
//! Checkout leaves the test Visa ending 4242 as the customer's card.

mod api;
mod call;
mod changes;
mod control;
pub mod delivery;
mod dev_page;
mod lifecycle;
mod objects;
mod pages;
mod previews;
mod proration;
mod schedules;
mod state;
mod wire;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::clock::Clock;
use objects::new_id;
use state::SimState;

/// How to start a simulator: plain data, so the simulator needs nothing of tollgate's
/// configuration or catalog.
pub struct SimStart {
    /// The clock Stripe's follows (the simulator's can then be set off from it).
    pub clock: Clock,
    /// Where to listen (port 0: any free port).
    pub bind: SocketAddr,
    /// Where signed events go.
    pub webhook_url: String,
    /// The webhook signing secret; without one, a fresh `whsec_` secret is generated.
    pub secret: Option<String>,
    /// The recurring prices to create, each with its product.
    pub prices: Vec<SeedPrice>,
}

/// A recurring price to create at start (see [`Simulator::seed_price`]).
pub struct SeedPrice {
    /// Its product's name: one product per name.
    pub product_name: String,
    /// `month` or `year`.
    pub interval: String,
    /// Minor units.
    pub amount: i64,
    /// Lower-case ISO code.
    pub currency: String,
    /// A price id (`price_…`, then the price's id) or the price's lookup key.
    pub reference: String,
}

/// A simulator started with [`start`].
pub struct Started {
    /// The simulator.
    pub sim: Simulator,
    /// The secret its events are signed with.
    pub secret: String,
    /// The ids of the seeded prices, in the order of [`SimStart::prices`].
    pub price_ids: Vec<String>,
}

/// Starts a simulator, sends its events to the webhook URL signed with the given secret (or a
/// fresh one: never a constant) and creates the given prices.
pub async fn start(start: SimStart) -> anyhow::Result<Started> {
    let sim = Simulator::start(start.clock, start.bind).await?;
    let secret = start.secret.unwrap_or_else(|| new_id("whsec"));
    sim.set_webhook(start.webhook_url, secret.clone());
    let price_ids = start
        .prices
        .iter()
        .map(|p| {
            sim.seed_price(
                &p.product_name,
                &p.interval,
                p.amount,
                &p.currency,
                Some(&p.reference),
            )
        })
        .collect();
    Ok(Started {
        sim,
        secret,
        price_ids,
    })
}

/// A running simulator.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<SimState>,
    clock: Clock,
    base_url: String,
    delivery: delivery::Deliverer,
}

impl Simulator {
    /// Binds `addr`, serves the simulator there and starts webhook delivery.
    pub async fn start(clock: Clock, addr: SocketAddr) -> anyhow::Result<Self> {
        // Stripe's clock is not tollgate's: the simulator's can be set off from it.
        let clock = clock.with_own_skew();
        let listener = TcpListener::bind(addr).await?;
        let base_url = format!("http://{}/", listener.local_addr()?);
        let sim = Simulator {
            inner: Arc::new(Inner {
                state: Mutex::new(SimState::default()),
                clock: clock.clone(),
                base_url,
                delivery: delivery::Deliverer::start(clock),
            }),
        };
        let router = sim.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "stripe simulator stopped");
            }
        });
        Ok(sim)
    }

    /// The simulator's base URL (`http://127.0.0.1:<port>/`): the Stripe API base and the host of
    /// the hosted pages.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The simulator's clock: tollgate's test clock, plus a skew set with `/_sim/clock/skew`.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Where signed events go, and the secret they are signed with.
    pub fn set_webhook(&self, url: String, secret: String) {
        self.inner.delivery.set_target(url, secret);
    }

    /// Creates a product and a recurring price for a catalog entry and returns the price id. A
    /// `reference` that looks like a price id is used as the id; otherwise it is the lookup key.
    pub fn seed_price(
        &self,
        product_name: &str,
        interval: &str,
        amount: i64,
        currency: &str,
        reference: Option<&str>,
    ) -> String {
        let now = self.inner.clock.now();
        let mut state = self.lock();
        // One product per plan, with a price per interval, as a Stripe account is set up.
        let existing = state
            .products
            .iter()
            .find(|(_, p)| p["name"] == product_name)
            .map(|(id, _)| id.clone());
        let product_id = existing.unwrap_or_else(|| {
            let id = new_id("prod");
            state
                .products
                .insert(id.clone(), objects::product(&id, product_name, now));
            id
        });
        let (id, lookup) = match reference {
            Some(r) if r.starts_with("price_") => (r.to_owned(), None),
            Some(r) => (new_id("price"), Some(r)),
            None => (new_id("price"), None),
        };
        let price = objects::price(&id, &product_id, amount, currency, interval, lookup, now);
        state.prices.insert(id.clone(), price);
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an event and hands it to delivery.
    fn emit(
        &self,
        state: &mut SimState,
        kind: &str,
        object: Value,
        previous: Option<Value>,
        created: i64,
    ) {
        let event = objects::event(kind, object, previous, created);
        state.events.push(event.clone());
        self.inner.delivery.send(event);
    }

    fn router(&self) -> Router {
        Router::new()
            .merge(api::router())
            .merge(pages::router())
            .merge(control::router())
            .with_state(self.clone())
    }

    /// Runs the simulator's clock `seconds` ahead of tollgate's (behind when negative); what that
    /// makes due (Checkout Sessions) expires at once.
    pub fn set_clock_skew(&self, seconds: i64) {
        self.inner.clock.set_skew(seconds);
        let now = self.inner.clock.now();
        self.expire_due_sessions(&mut self.lock(), now);
    }

    /// Number of API requests served (tests check that nothing called Stripe).
    pub fn request_count(&self) -> u64 {
        self.lock().requests
    }

    /// Moves the test clock forward and runs everything that became due: Checkout Sessions that
    /// expire, trial ends, renewals (paid or failed), retries of past-due subscriptions,
    /// cancellations at period end.
    pub fn advance_clock(&self, seconds: i64) {
        self.inner.clock.advance(seconds);
        let now = self.inner.clock.now();
        let mut state = self.lock();
        self.expire_due_sessions(&mut state, now);
        let ids: Vec<String> = state.subscriptions.keys().cloned().collect();
        for id in ids {
            self.run_subscription(&mut state, &id, now);
        }
    }
}
