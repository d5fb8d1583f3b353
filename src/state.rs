//! [`AppState`]: what the routers and pages share, built by `app` at start-up. It holds the
//! capabilities' contexts, one inside the other ([`Billing`] holds [`Auth`], which holds [`Mail`],
//! which holds the [`crate::base::Base`]), and reads through to all of them; an extractor or
//! handler of one capability asks only for that capability's context (`FromRef`).

use std::sync::Arc;

use axum::extract::FromRef;

use crate::{auth::Auth, billing::Billing, email::Mail};

/// Everything handlers share: one pointer, so the clones every layer and extractor makes cost a
/// reference count (a struct of a dozen handles cost 15% of a session check's CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps the parts.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to: billing (and every capability below it) and the pages' CSRF key.
pub struct Shared {
    /// Billing, auth, email and the base.
    pub billing: Billing,
    /// Key of the CSRF form tokens, shared by all instances through the database.
    pub csrf_key: Vec<u8>,
    /// The in-process Stripe simulator, in development without keys (tests drive it).
    pub sim: crate::simulated::Running,
}

impl std::ops::Deref for Shared {
    type Target = Billing;

    fn deref(&self) -> &Billing {
        &self.billing
    }
}

impl FromRef<AppState> for Billing {
    fn from_ref(state: &AppState) -> Self {
        state.billing.clone()
    }
}

impl FromRef<AppState> for Auth {
    fn from_ref(state: &AppState) -> Self {
        state.billing.auth.clone()
    }
}

impl FromRef<AppState> for Mail {
    fn from_ref(state: &AppState) -> Self {
        state.billing.auth.mail.clone()
    }
}
