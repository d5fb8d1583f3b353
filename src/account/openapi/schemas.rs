//! The shapes of answers the handlers build as JSON values, written down for the OpenAPI
//! document. They describe; nothing serializes them. The schemathesis run in the API tests checks
//! every answer against them, so a handler that drifts from its shape fails there.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    auth::{api_keys::KeyJson, devices::DeviceJson},
    billing::{catalog::Feature, changes::summary::Summary},
    gate::{UserJson, tokens::TokenPair},
};

/// An error: clients branch on `error` (the table in the API reference); `message` is for
/// people. Some codes add a field: `field` (`invalid_field`), `min_length`
/// (`password_too_short`), `required_scope` (`scope_required`), and the gate's `required_plan`,
/// `required_feature` and `upgrade_url`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code (`invalid_field`, `unauthenticated`, …).
    pub error: String,
    /// A sentence for people.
    pub message: String,
}

/// A price of a plan.
#[derive(Serialize, ToSchema)]
pub struct PlanPrice {
    /// Minor units per interval.
    pub amount: i64,
    /// ISO currency, lower case.
    pub currency: String,
}

/// A plan of the catalog.
#[derive(Serialize, ToSchema)]
pub struct PlanJson {
    /// Its id (`free`, `pro`, …).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Higher tiers include lower ones.
    pub tier: i64,
    /// The feature ids it grants.
    pub features: Vec<String>,
    /// Days of free trial on a first subscription, if any.
    pub trial_days: Option<i64>,
    /// The plan the pricing page recommends.
    pub highlight: bool,
    /// Its prices by interval (`month`, `year`); empty for a free plan.
    pub prices: BTreeMap<String, PlanPrice>,
}

/// The catalog: its plans by tier, and its features as people read them.
#[derive(Serialize, ToSchema)]
pub struct PlanList {
    /// Lowest tier first.
    pub plans: Vec<PlanJson>,
    /// Every feature.
    pub features: Vec<Feature>,
}

/// The user's subscription as Stripe has it now.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionAnswer {
    /// `null` without a live subscription.
    pub subscription: Option<Summary>,
}

/// An email was sent if the request could be served; the answer is the same either way.
#[derive(Serialize, ToSchema)]
pub struct CheckYourEmail {
    /// Always `check_your_email`.
    pub status: String,
}

/// The first step of a sign-in passed and a second factor is needed.
#[derive(Serialize, ToSchema)]
pub struct SecondStep {
    /// Always `true`.
    pub second_factor_required: bool,
    /// For `POST /api/auth/2fa/verify` (`tgp_…`).
    pub pending_token: String,
    /// Seconds the pending sign-in lives.
    pub expires_in: i64,
    /// `totp`, `recovery_code`, `passkey`.
    pub methods: Vec<String>,
}

/// A finished sign-in: the user (with a session cookie), or a token pair when the request asked
/// for tokens, or the second step a second factor needs.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SignInAnswer {
    /// A session began (the cookie is set).
    User(UserJson),
    /// `"token": true`: an access and a refresh token.
    Tokens(TokenPair),
    /// A second factor is needed.
    SecondStep(SecondStep),
}

/// The signed-in devices.
#[derive(Serialize, ToSchema)]
pub struct DeviceList {
    /// Sessions, then token sign-ins, newest first.
    pub devices: Vec<DeviceJson>,
    /// Whether a sign-in from a new browser sends an email.
    pub sign_in_notices: bool,
}

/// Recovery codes, shown once.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes.
    pub recovery_codes: Vec<String>,
}

/// The account's API keys.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    /// Newest first.
    pub keys: Vec<KeyJson>,
}

/// A key just made: the only answer that holds its secret.
#[derive(Serialize, ToSchema)]
pub struct NewKey {
    /// The key.
    #[serde(flatten)]
    pub summary: KeyJson,
    /// The secret (`tg_…`), shown once.
    pub key: String,
}

/// A verified Stripe event was taken.
#[derive(Serialize, ToSchema)]
pub struct WebhookReceived {
    /// Always `true`.
    pub received: bool,
    /// `applied`, `duplicate`, `ignored`, `orphan`, …
    pub outcome: String,
}

/// The demonstration areas' answer.
#[derive(Serialize, ToSchema)]
pub struct DemoArea {
    /// `free`, `pro`, `team` or `export`.
    pub area: String,
    /// A greeting.
    pub message: String,
    /// The plan that let the request in.
    pub plan: Option<String>,
}

/// The demonstration areas.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DemoName {
    /// Any signed-in user.
    Free,
    /// Pro or higher.
    Pro,
    /// Team.
    Team,
    /// The `export` feature.
    Export,
}

/// A JSON Web Key Set (RFC 7517).
#[derive(Serialize, ToSchema)]
pub struct Jwks {
    /// The public keys (`kty`, `kid`, `alg`, `use`, and the key's own members).
    pub keys: Vec<serde_json::Map<String, serde_json::Value>>,
}
