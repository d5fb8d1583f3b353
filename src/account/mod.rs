//! Accounts over HTTP: the JSON routes of auth, the email flows and billing, and the flows that
//! cross capabilities (deleting an account closes its billing; an email change tells Stripe).
//! Above the gate, so handlers take the gate's [`crate::gate::CurrentUser`].

pub mod activity;
pub mod admin;
pub mod auth;
pub mod billing;
pub mod delete;
pub mod devices;
pub mod email;
pub mod health;
pub mod keys;
pub mod openapi;
pub mod passkeys;
pub mod second_factor;
pub mod tokens;

use axum::{
    Router,
    extract::FromRef,
    routing::{delete, get},
};

use crate::{auth::Auth, billing::Billing};

/// Every JSON route of accounts.
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    Auth: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .merge(health::router())
        .merge(openapi::router())
        .merge(auth::router())
        .merge(activity::router())
        .merge(admin::router())
        .merge(email::router())
        .merge(delete::router())
        .merge(billing::router())
        .merge(tokens::router())
        .merge(second_factor::router())
        .merge(devices::router())
        .merge(passkeys::router())
        .route("/api/keys", get(keys::list_keys).post(keys::create_key))
        .route("/api/keys/{id}", delete(keys::revoke_key))
}
