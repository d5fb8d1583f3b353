//! The gate's answers on pages: a refused page request is redirected to log in (and back) or to
//! pricing, or shown the error page. The layers here are the HTML twins of the gate's JSON
//! layers (`gate::require_plan` and its siblings).

use axum::{
    http::request::Parts,
    response::{IntoResponse, Redirect, Response},
};

use crate::{
    billing::Billing,
    gate::enforce::{self, Denied, GateLayer, Need},
};

/// The HTML answer: a redirect to log in (back to the requested path) or to pricing.
pub fn denied_page(state: &Billing, denied: Denied, parts: &Parts) -> Response {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    match denied {
        Denied::Error(e) => super::error_page(state, e.status_and_code().0, &e.sentence()),
        Denied::Role { .. } => super::error_page(
            state,
            axum::http::StatusCode::FORBIDDEN,
            "Your account does not have access to this page.",
        ),
        Denied::Unauthenticated => {
            let next = super::safe_next(Some(path));
            Redirect::to(&format!("/login?next={}", enforce::urlencode(next))).into_response()
        }
        denied => {
            let to = match enforce::upgrade_plan(&denied) {
                Some(plan) => format!("/pricing?required={}", enforce::urlencode(plan)),
                None => "/pricing".into(),
            };
            Redirect::to(&to).into_response()
        }
    }
}

/// Route layer for HTML routes: any signed-in user (else 303 to log in).
pub fn require_login_page(state: &Billing) -> GateLayer {
    enforce::layer(state, Need::Login, denied_page)
}

/// Route layer for HTML routes: at least `plan`'s tier (else 303 to log in or to pricing).
pub fn require_plan_page(state: &Billing, plan: &str) -> GateLayer {
    enforce::layer(state, Need::Plan(plan.into()), denied_page)
}

/// Route layer for HTML routes: `role` (else 303 to log in, or the 403 page).
pub fn require_role_page(state: &Billing, role: &str) -> GateLayer {
    enforce::layer(state, Need::Role(role.into()), denied_page)
}

/// Route layer for HTML routes: `feature` (else 303 to log in or to pricing).
pub fn require_feature_page(state: &Billing, feature: &str) -> GateLayer {
    enforce::layer(state, Need::Feature(feature.into()), denied_page)
}
