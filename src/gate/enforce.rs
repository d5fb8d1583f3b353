//! Enforcement for Rust apps: extractors and route layers that require a signed-in user, a
//! minimum plan or a feature, answering as docs/api.md's "Gating" says.
//!
//! JSON routes: 401 `unauthenticated`, 403 `plan_required` / `feature_required` with
//! `required_plan`/`required_feature`, `current_plan` and an absolute `upgrade_url`.
//! HTML routes (the layers in `web::gate_pages`): 303 to `/login?next=<path>` without a session,
//! 303 to `/pricing?required=<plan>` when the plan or feature is missing.
//!
//! ```no_run
//! use std::marker::PhantomData;
//!
//! use axum::{Extension, Router, routing::get};
//! use tollgate::{
//!     app::AppState,
//!     gate::{
//!         CurrentUser, FeatureName, PlanName, RequireFeature, RequirePlan, require_plan,
//!         require_role,
//!     },
//! };
//!
//! struct Team;
//! impl PlanName for Team {
//!     const PLAN: &'static str = "team";
//! }
//! struct Export;
//! impl FeatureName for Export {
//!     const FEATURE: &'static str = "export";
//! }
//!
//! // Extractors: the handler runs only for a member who qualifies.
//! async fn members(RequirePlan(member, PhantomData): RequirePlan<Team>) -> String {
//!     format!("{} is on {:?}", member.user.email, member.access.plan)
//! }
//! async fn export(RequireFeature(member, _): RequireFeature<Export>) -> String {
//!     member.user.id
//! }
//! // Any signed-in user (401 otherwise), to decide in the handler.
//! async fn whoami(member: CurrentUser) -> String {
//!     member.user.email
//! }
//! // Or a route layer, which leaves the member in the request's extensions.
//! async fn billing_report(Extension(member): Extension<CurrentUser>) -> String {
//!     member.access.status
//! }
//!
//! fn routes(state: &AppState) -> Router<AppState> {
//!     Router::new()
//!         .route("/whoami", get(whoami))
//!         .route("/members", get(members))
//!         .route("/export", get(export))
//!         .route("/report", get(billing_report).route_layer(require_plan(state, "pro")))
//!         .route("/admin/users", get(whoami).route_layer(require_role(state, "admin")))
//! }
//! ```

use std::{
    convert::Infallible,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    Json,
    extract::{FromRef, FromRequestParts, Request},
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{billing::Billing, error::AppError, gate::CurrentUser};

/// What a route requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Any signed-in user.
    Login,
    /// At least this plan's tier.
    Plan(String),
    /// This feature.
    Feature(String),
    /// This role.
    Role(String),
}

/// Why access was refused.
#[derive(Debug)]
pub enum Denied {
    /// No (valid) session.
    Unauthenticated,
    /// The user's tier is below the plan's.
    Plan {
        /// The plan the route needs.
        required: String,
        /// The user's plan, if any.
        current: Option<String>,
    },
    /// The user's plan lacks the feature.
    Feature {
        /// The feature the route needs.
        required: String,
        /// The lowest plan that has it, for the upgrade link.
        upgrade_to: Option<String>,
        /// The user's plan, if any.
        current: Option<String>,
    },
    /// The user lacks the role (no plan gives it: no upgrade is offered).
    Role {
        /// The role the route needs.
        required: String,
    },
    /// Something else failed (database down): answered as that error.
    Error(AppError),
}

/// Checks `need` for `member` (or its absence).
pub fn check(state: &Billing, member: Option<&CurrentUser>, need: &Need) -> Result<(), Denied> {
    let Some(member) = member else {
        return Err(Denied::Unauthenticated);
    };
    let access = &member.access;
    match need {
        Need::Login => Ok(()),
        Need::Role(role) => {
            if access.roles.iter().any(|r| r == role) {
                Ok(())
            } else {
                Err(Denied::Role {
                    required: role.clone(),
                })
            }
        }
        Need::Plan(plan) => {
            // An unknown plan id in code is a bug; fail closed.
            let required_tier = state.catalog.plan(plan).map_or(i64::MAX, |p| p.tier);
            if access.tier.is_some_and(|t| t >= required_tier) {
                Ok(())
            } else {
                Err(Denied::Plan {
                    required: plan.clone(),
                    current: access.plan.clone(),
                })
            }
        }
        Need::Feature(feature) => {
            if access.features.iter().any(|f| f == feature) {
                Ok(())
            } else {
                Err(Denied::Feature {
                    required: feature.clone(),
                    upgrade_to: state
                        .catalog
                        .plans
                        .iter()
                        .find(|p| p.features.contains(feature))
                        .map(|p| p.id.clone()),
                    current: access.plan.clone(),
                })
            }
        }
    }
}

/// The plan to offer for a denial (for the pricing link).
pub fn upgrade_plan(denied: &Denied) -> Option<&str> {
    match denied {
        Denied::Plan { required, .. } => Some(required),
        Denied::Feature { upgrade_to, .. } => upgrade_to.as_deref(),
        _ => None,
    }
}

/// The absolute pricing URL for a denial.
pub fn upgrade_url(state: &Billing, denied: &Denied) -> String {
    match upgrade_plan(denied) {
        Some(plan) => format!("{}pricing?required={}", state.base_url, urlencode(plan)),
        None => format!("{}pricing", state.base_url),
    }
}

/// Percent-encodes `s` for a query string.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Denied {
    /// The JSON answer of docs/api.md ("Gating").
    pub fn json(self, state: &Billing) -> Response {
        // Only the 403s carry the pricing URL.
        let upgrade = match &self {
            Denied::Plan { .. } | Denied::Feature { .. } => upgrade_url(state, &self),
            Denied::Unauthenticated | Denied::Role { .. } | Denied::Error(_) => String::new(),
        };
        match self {
            Denied::Unauthenticated => AppError::Unauthenticated.into_response(),
            Denied::Error(e) => e.into_response(),
            Denied::Role { required } => (
                StatusCode::FORBIDDEN,
                Json(json!({
                    "error": "role_required",
                    "message": format!("this needs the {required} role"),
                    "required_role": required,
                })),
            )
                .into_response(),
            Denied::Plan { required, current } => (
                StatusCode::FORBIDDEN,
                Json(json!({
                    "error": "plan_required",
                    "message": format!("this needs the {required} plan or higher"),
                    "required_plan": required,
                    "current_plan": current,
                    "upgrade_url": upgrade,
                })),
            )
                .into_response(),
            Denied::Feature {
                required, current, ..
            } => (
                StatusCode::FORBIDDEN,
                Json(json!({
                    "error": "feature_required",
                    "message": format!("your plan does not include {required}"),
                    "required_feature": required,
                    "current_plan": current,
                    "upgrade_url": upgrade,
                })),
            )
                .into_response(),
        }
    }
}

/// Loads the signed-in member of a request, if any.
pub async fn member(state: &Billing, parts: &mut Parts) -> Result<Option<CurrentUser>, Denied> {
    super::request_user(state, parts)
        .await
        .map_err(Denied::Error)
}

/// A plan id at the type level, for [`RequirePlan`].
pub trait PlanName {
    /// The catalog id.
    const PLAN: &'static str;
}

/// A feature at the type level, for [`RequireFeature`].
pub trait FeatureName {
    /// The feature name.
    const FEATURE: &'static str;
}

/// Extractor for JSON routes: the signed-in member, whose tier is at least `P`'s.
pub struct RequirePlan<P>(pub CurrentUser, pub PhantomData<P>);

/// Extractor for JSON routes: the signed-in member, whose plan has feature `F`.
pub struct RequireFeature<F>(pub CurrentUser, pub PhantomData<F>);

/// A role at the type level, for [`RequireRole`].
pub trait RoleName {
    /// The role's name.
    const ROLE: &'static str;
}

/// Extractor for JSON routes: the signed-in member, who holds role `R` (else 403
/// `role_required`).
pub struct RequireRole<R>(pub CurrentUser, pub PhantomData<R>);

async fn extract(parts: &mut Parts, state: &Billing, need: &Need) -> Result<CurrentUser, Response> {
    let member = member(state, parts).await.map_err(|d| d.json(state))?;
    check(state, member.as_ref(), need).map_err(|d| d.json(state))?;
    Ok(member.expect("checked above"))
}

/// `FromRequestParts` for an extractor `$name<T>` whose `T: $bound` names what it needs.
macro_rules! gate_extractor {
    ($name:ident, $bound:ident, $need:expr) => {
        impl<S, T> FromRequestParts<S> for $name<T>
        where
            Billing: FromRef<S>,
            S: Send + Sync,
            T: $bound + Send,
        {
            type Rejection = Response;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                let state = Billing::from_ref(state);
                let need: fn() -> Need = $need;
                let member = extract(parts, &state, &need()).await?;
                Ok(Self(member, PhantomData))
            }
        }
    };
}

gate_extractor!(RequirePlan, PlanName, || Need::Plan(T::PLAN.into()));
gate_extractor!(RequireFeature, FeatureName, || Need::Feature(
    T::FEATURE.into()
));
gate_extractor!(RequireRole, RoleName, || Need::Role(T::ROLE.into()));

struct Gate {
    state: Billing,
    need: Need,
    answer: Answer,
}

/// How a gate answers a refused request: [`Denied::json`] for JSON routes; the pages answer with
/// `web`'s redirects and error page (`crate::web::gate_pages::require_plan_page` and its siblings).
pub type Answer = fn(&Billing, Denied, &Parts) -> Response;

fn json_answer(state: &Billing, denied: Denied, _: &Parts) -> Response {
    denied.json(state)
}

impl Gate {
    /// Runs the check; `Ok` carries the request on (with the member as an extension).
    async fn admit(&self, request: Request) -> Result<Request, Response> {
        let (mut parts, body) = request.into_parts();
        let verdict = member(&self.state, &mut parts)
            .await
            .and_then(|m| check(&self.state, m.as_ref(), &self.need).map(|()| m));
        match verdict {
            Ok(member) => {
                if let Some(m) = member {
                    // Handlers behind the layer can take `Extension<CurrentUser>`.
                    parts.extensions.insert(m);
                }
                Ok(Request::from_parts(parts, body))
            }
            Err(denied) => Err((self.answer)(&self.state, denied, &parts)),
        }
    }
}

/// A route layer that admits only requests meeting a [`Need`].
#[derive(Clone)]
pub struct GateLayer {
    gate: Arc<Gate>,
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// The service of [`GateLayer`].
#[derive(Clone)]
pub struct GateService<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S> tower::Service<Request> for GateService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The ready service goes with this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        Box::pin(async move {
            match gate.admit(request).await {
                Ok(request) => inner.call(request).await,
                Err(response) => Ok(response),
            }
        })
    }
}

/// A route layer admitting what `need` asks for, answering refusals with `answer`.
pub fn layer(state: &Billing, need: Need, answer: Answer) -> GateLayer {
    GateLayer {
        gate: Arc::new(Gate {
            state: state.clone(),
            need,
            answer,
        }),
    }
}

/// Route layer for JSON routes: any signed-in user.
pub fn require_login(state: &Billing) -> GateLayer {
    layer(state, Need::Login, json_answer)
}

/// Route layer for JSON routes: at least `plan`'s tier.
pub fn require_plan(state: &Billing, plan: &str) -> GateLayer {
    layer(state, Need::Plan(plan.into()), json_answer)
}

/// Route layer for JSON routes: `role`.
pub fn require_role(state: &Billing, role: &str) -> GateLayer {
    layer(state, Need::Role(role.into()), json_answer)
}

/// Route layer for JSON routes: `feature`.
pub fn require_feature(state: &Billing, feature: &str) -> GateLayer {
    layer(state, Need::Feature(feature.into()), json_answer)
}
