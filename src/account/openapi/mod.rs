//! The OpenAPI 3.1 document of the JSON API, `GET /api/openapi.json`: made from the
//! `#[utoipa::path]` annotations on the handlers and the types they take and answer, so it
//! changes with the code. A unit test below fails when a JSON route is registered without being
//! in the document (or the document names a route that does not exist), and the API tests run
//! schemathesis against a live tollgate with it.

pub mod schemas;

use std::sync::OnceLock;

use axum::{
    Router,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, Ref, RefOr, ResponseBuilder,
        content::ContentBuilder,
        security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        },
    },
};

/// The document's parts: every JSON route, by module.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tollgate",
        description = "Accounts, Stripe billing and plan-tier gating. Every unsafe request under \
            /api/ sends Content-Type: application/json. Errors are {\"error\", \"message\"}: \
            clients branch on `error`.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        super::health::healthz,
        super::health::readyz,
        openapi_json,
        super::auth::register,
        super::auth::login,
        super::auth::logout,
        super::auth::change_password,
        super::auth::me,
        super::activity::history,
        super::admin::search,
        super::admin::show,
        super::admin::sign_out,
        super::admin::resync,
        super::admin::resend_verification,
        super::admin::delete_user,
        super::admin::suspend,
        super::admin::unsuspend,
        super::admin::sign_out_device,
        super::admin::grant_role,
        super::admin::revoke_role,
        super::admin::webhooks::list,
        super::admin::webhooks::create,
        super::admin::webhooks::remove,
        super::admin::webhooks::rotate,
        super::admin::webhooks::retry,
        super::email::request_verification_route,
        super::email::verify_email_route,
        super::email::forgot_password_route,
        super::email::reset_password_route,
        super::email::request_magic_link_route,
        super::email::consume_magic_route,
        super::email::request_email_change_route,
        super::email::confirm_email_change_route,
        super::delete::delete_account_route,
        super::second_factor::verify,
        super::second_factor::reauth,
        super::second_factor::status,
        super::second_factor::begin,
        super::second_factor::confirm,
        super::second_factor::renew_codes,
        super::second_factor::turn_off,
        super::passkeys::sign_in_options,
        super::passkeys::sign_in,
        super::passkeys::second_step_options,
        super::passkeys::reauth_options,
        super::passkeys::list,
        super::passkeys::register,
        super::passkeys::registration_options,
        super::passkeys::rename,
        super::passkeys::remove,
        super::devices::list,
        super::devices::sign_out_one,
        super::devices::sign_out_others,
        super::devices::set_notices,
        super::keys::list_keys,
        super::keys::create_key,
        super::keys::revoke_key,
        super::tokens::exchange_session,
        super::tokens::refresh_route,
        super::tokens::revoke_route,
        super::tokens::jwks,
        super::billing::list_plans,
        super::billing::create_checkout_session,
        super::billing::create_portal_session,
        super::billing::show_subscription,
        super::billing::preview_change,
        super::billing::confirm_change,
        super::billing::cancel,
        super::billing::resume,
        gate_paths::forward_auth,
        gate_paths::demo,
        gate_paths::stripe_webhook,
    ),
    components(schemas(schemas::ErrorBody, schemas::DemoName)),
    modifiers(&Conventions),
    tags(
        (name = "accounts", description = "Registration, sign-in, the signed-in user"),
        (name = "email", description = "Verification, password reset, magic links, email change"),
        (name = "two-factor", description = "Authenticator apps, recovery codes, re-authentication"),
        (name = "passkeys", description = "WebAuthn sign-in and the account's passkeys"),
        (name = "devices", description = "Signed-in browsers and apps"),
        (name = "api-keys", description = "Keys for server-to-server calls"),
        (name = "tokens", description = "Access and refresh tokens (JWT)"),
        (name = "billing", description = "Plans, Checkout, the portal, plan changes"),
        (name = "gate", description = "Access decisions for reverse proxies, the demonstration areas"),
        (name = "webhooks", description = "Stripe's events"),
        (name = "health", description = "Liveness and readiness"),
        (name = "admin", description = "The admin area: signed-in administrators only (404 for anyone else)"),
    ),
)]
pub struct ApiDoc;

/// What every operation shares: any error answers `{"error", "message"}` (the `default`
/// response), and how a client proves who it is.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let error = ResponseBuilder::new()
            .description("An error: `error` is a stable code (see the API reference's table).")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for (path, item) in doc.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                operation
                    .responses
                    .responses
                    .entry("default".into())
                    .or_insert_with(|| RefOr::T(error.clone()));
                let (optional, schemes) = credentials(path);
                if !schemes.is_empty() {
                    let mut alternatives: Vec<SecurityRequirement> = schemes
                        .iter()
                        .map(|s| SecurityRequirement::new(*s, Vec::<String>::new()))
                        .collect();
                    if optional {
                        alternatives.insert(0, SecurityRequirement::default());
                    }
                    operation.security = Some(alternatives);
                }
            }
        }
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "tollgate_session",
                "The session cookie (`__Host-tollgate_session` over HTTPS).",
            ))),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("An API key as the Basic password (any user name)."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`tg_…`) or an access token (a JWT)."))
                    .build(),
            ),
        );
    }
}

/// How a client proves who it is on `path`: whether it may also send nothing, and the schemes
/// it may use. The account's own settings take the session only (an API key or access token
/// gets 403 `session_required`); who-am-I, the gates and billing also take a key (with its scope)
/// or an access token; signing in, the emailed links, the public documents and Stripe's
/// webhooks take none (a link's confirmation reads a session when there is one).
pub fn credentials(path: &str) -> (bool, &'static [&'static str]) {
    const ANY: &[&str] = &["session", "bearer", "basic"];
    const SESSION: &[&str] = &["session"];
    match path {
        "/api/me" | "/api/demo/{area}" => (false, ANY),
        p if p.starts_with("/api/billing/") => (false, ANY),
        "/auth/forward" => (true, ANY),
        "/api/auth/logout" => (false, &["session", "bearer"]),
        "/api/auth/verify-email" | "/api/auth/email/confirm" => (true, SESSION),
        "/api/keys"
        | "/api/keys/{id}"
        | "/api/auth/token"
        | "/api/auth/reauth"
        | "/api/auth/reauth/passkey/options"
        | "/api/auth/password/change"
        | "/api/auth/email/change"
        | "/api/auth/verify-email/request" => (false, SESSION),
        p if p.starts_with("/api/account/") || p.starts_with("/api/admin/") => (false, SESSION),
        _ => (false, &[]),
    }
}

/// The document, built once.
pub fn document() -> &'static openapi::OpenApi {
    static DOC: OnceLock<openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document as people read it (`tollgate openapi`, docs/openapi.json).
pub fn pretty() -> String {
    document()
        .to_pretty_json()
        .expect("the document serializes")
}

/// The route serving it.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new().route("/api/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
async fn openapi_json() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| document().to_json().expect("the document serializes"));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.as_str(),
    )
        .into_response()
}

/// Routes whose handlers live below this layer (the gate, Stripe's webhooks): documented here.
mod gate_paths {
    #![allow(dead_code)]

    use super::schemas::{DemoArea, DemoName, WebhookReceived};

    /// Asks whether the request a reverse proxy is about to pass on may go through. The proxy
    /// names the URI in `X-Forwarded-Uri` (the setting `TOLLGATE_FORWARD_URI_HEADER`) and passes
    /// the client's cookies or `Authorization`. Granted: 200 with `X-Tollgate-User-Id`,
    /// `X-Tollgate-Email`, `X-Tollgate-Plan`, `X-Tollgate-Tier`, `X-Tollgate-Roles`. Denied: 401 with
    /// `X-Tollgate-Login-Url`, or 403 with `X-Tollgate-Upgrade-Url`. A URI that cannot be read
    /// with certainty is a 403.
    #[utoipa::path(get, path = "/auth/forward", tag = "gate",
        params(("X-Forwarded-Uri" = Option<String>, Header, description = "The URI the client asked the proxy for")),
        responses((status = 200, description = "Granted; the X-Tollgate-* headers name the user",
            headers(
                ("X-Tollgate-User-Id" = String, description = "The user's id (absent for a public path without a session)"),
                ("X-Tollgate-Email" = String, description = "The address, percent-encoded UTF-8"),
                ("X-Tollgate-Plan" = String, description = "The plan id"),
                ("X-Tollgate-Tier" = String, description = "The plan's tier"),
                ("X-Tollgate-Roles" = String, description = "The user's roles, comma-separated"),
            ))))]
    pub fn forward_auth() {}

    /// The demonstration areas: `free` needs a sign-in, `pro` and `team` those plans (or higher),
    /// `export` the feature.
    #[utoipa::path(get, path = "/api/demo/{area}", tag = "gate",
        params(("area" = DemoName, Path, description = "Which area")),
        responses((status = 200, description = "Let in", body = DemoArea)))]
    pub fn demo() {}

    /// Stripe's events, verified by the `Stripe-Signature` header against
    /// `STRIPE_WEBHOOK_SECRET`; each is applied once, across instances.
    #[utoipa::path(post, path = "/webhooks/stripe", tag = "webhooks",
        params(("Stripe-Signature" = String, Header, description = "Stripe's signature of the body")),
        request_body(content = Object, description = "A Stripe event", content_type = "application/json"),
        responses((status = 200, description = "Taken (applied, a duplicate, or recorded)", body = WebhookReceived)))]
    pub fn stripe_webhook() {}
}

#[cfg(test)]
mod tests;
