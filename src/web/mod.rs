//! Server-rendered HTML pages (templates in `templates/`), usable without JavaScript.
//!
//! Forms post back to the page's own path with a CSRF token ([`csrf`]); failures re-render the
//! form with a readable message and the right status, successes redirect (303). Messages never
//! reveal whether an account exists (registration's "already has an account" is the documented
//! exception).
//!
//! Handlers read their form with `page::CsrfForm` and fail with a `page::PageError` (`?` on an
//! `AppError` gives its error page); the pages live by area: `auth_pages` (home, sign-up,
//! log-in, log-out), `account`, `billing`, `email_pages`, `second_factor` (the code step of a sign-in,
//! confirming it is you, enrolment), each with its route table.

mod account;
mod activity;
mod admin;
mod auth_pages;
mod billing;
pub mod csrf;
mod dates;
mod devices;
mod email_pages;
pub mod gate_pages;
mod keys;
mod mailbox;
mod page;
mod passkeys;
mod plan_change;
mod second_factor;
mod social;

use axum::{
    Router,
    http::{StatusCode, header},
    middleware,
    response::{Html, IntoResponse, Response},
    routing::get,
};
use minijinja::{Environment, Value, context};

use crate::{base::Base, error::AppError, gate::CurrentUser, state::AppState};
use csrf::CsrfToken;

/// The page routes, with the CSRF cookie middleware and the error pages.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(auth_pages::show_home))
        .merge(auth_pages::routes())
        .merge(account::routes(&state))
        .merge(keys::routes())
        .merge(billing::routes())
        .merge(plan_change::routes())
        .merge(email_pages::routes())
        .merge(mailbox::routes())
        .merge(second_factor::routes())
        .merge(devices::routes())
        .merge(activity::routes())
        .merge(admin::routes())
        .merge(passkeys::routes())
        .merge(social::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            page::render_errors,
        ))
        .layer(middleware::from_fn_with_state(state, csrf::ensure_cookie))
        .layer(middleware::from_fn(dates::reader_language))
        .route("/static/style.css", get(stylesheet))
        .route("/static/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon))
}

/// Loads the templates, compiled into the binary.
pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    env.add_filter("moment", dates::moment);
    for (name, source) in [
        ("base.html", include_str!("../../templates/base.html")),
        ("home.html", include_str!("../../templates/home.html")),
        ("signup.html", include_str!("../../templates/signup.html")),
        ("login.html", include_str!("../../templates/login.html")),
        ("account.html", include_str!("../../templates/account.html")),
        ("keys.html", include_str!("../../templates/keys.html")),
        ("error.html", include_str!("../../templates/error.html")),
        ("pricing.html", include_str!("../../templates/pricing.html")),
        ("billing.html", include_str!("../../templates/billing.html")),
        (
            "change_plan.html",
            include_str!("../../templates/change_plan.html"),
        ),
        ("cancel.html", include_str!("../../templates/cancel.html")),
        ("success.html", include_str!("../../templates/success.html")),
        ("demo.html", include_str!("../../templates/demo.html")),
        (
            "email/layout.html",
            include_str!("../../templates/email/layout.html"),
        ),
        ("confirm.html", include_str!("../../templates/confirm.html")),
        (
            "check_email.html",
            include_str!("../../templates/check_email.html"),
        ),
        ("forgot.html", include_str!("../../templates/forgot.html")),
        ("mailbox.html", include_str!("../../templates/mailbox.html")),
        (
            "second_factor.html",
            include_str!("../../templates/second_factor.html"),
        ),
        (
            "two_factor.html",
            include_str!("../../templates/two_factor.html"),
        ),
        ("reauth.html", include_str!("../../templates/reauth.html")),
        ("devices.html", include_str!("../../templates/devices.html")),
        (
            "activity.html",
            include_str!("../../templates/activity.html"),
        ),
        (
            "admin_users.html",
            include_str!("../../templates/admin_users.html"),
        ),
        (
            "admin_user.html",
            include_str!("../../templates/admin_user.html"),
        ),
        (
            "admin_webhooks.html",
            include_str!("../../templates/admin_webhooks.html"),
        ),
        (
            "passkeys.html",
            include_str!("../../templates/passkeys.html"),
        ),
        (
            "social_confirm.html",
            include_str!("../../templates/social_confirm.html"),
        ),
        (
            "social_link.html",
            include_str!("../../templates/social_link.html"),
        ),
        (
            "providers.html",
            include_str!("../../templates/providers.html"),
        ),
        (
            "social_buttons.html",
            include_str!("../../templates/social_buttons.html"),
        ),
    ] {
        env.add_template(name, source)
            .expect("templates are checked by tests");
    }
    // Email templates: `<kind>.txt` (first line is the subject) and `<kind>.html`.
    for (name, source) in crate::email::TEMPLATES {
        env.add_template(name, source)
            .expect("templates are checked by tests");
    }
    env
}

/// The site's icon (an SVG, which every current browser takes, also at `/favicon.ico`).
async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../templates/favicon.svg"),
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../templates/style.css"),
    )
        .into_response()
}

/// Renders `name` with the common context (product name, signed-in email, CSRF token).
fn render(
    state: &Base,
    status: StatusCode,
    name: &str,
    user: Option<&CurrentUser>,
    token: Option<&CsrfToken>,
    extra: Value,
) -> Response {
    let ctx = context! {
        product_name => &state.config.product_name,
        user_email => user.map(|u| u.user.email.clone()),
        csrf_token => token.map(|t| t.0.clone()),
        ..extra
    };
    match state
        .templates
        .get_template(name)
        .and_then(|t| t.render(ctx))
    {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => AppError::Internal(anyhow::anyhow!("template {name}: {e}")).into_response(),
    }
}

/// A readable error page in the site's look.
pub fn error_page(state: &Base, status: StatusCode, message: &str) -> Response {
    render(
        state,
        status,
        "error.html",
        None,
        None,
        context! { status => status.as_u16(), message },
    )
}

/// `next` only ever points inside this site — or, with `TOLLGATE_COOKIE_DOMAIN`, to a sibling
/// host under that domain (forward-auth across subdomains), on the base URL's scheme.
pub fn safe_next_for<'a>(state: &AppState, next: Option<&'a str>) -> &'a str {
    if let (Some(domain), Some(n)) = (state.config.cookie_domain.as_deref(), next)
        // The URL parser drops tabs and newlines silently; the redirect header would not.
        && visible_ascii(n)
        && let Ok(url) = url::Url::parse(n)
        && url.scheme() == state.base_url.scheme()
        && url.username().is_empty()
        && url.password().is_none()
        && url.host_str().is_some_and(|h| {
            let domain = domain.trim_start_matches('.');
            !h.split('.').any(str::is_empty) && (h == domain || h.ends_with(&format!(".{domain}")))
        })
        // Only a URL written as the parser writes it back: `https:host`, `https://host\@other`
        // and other spellings browsers read leniently are not passed on.
        && (url.as_str() == n || (url.path() == "/" && url.as_str() == format!("{n}/")))
    {
        return n;
    }
    safe_next(next)
}

/// `next` only ever points inside this site.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && visible_ascii(n) =>
        {
            n
        }
        _ => "/account",
    }
}

/// Only what can stand in a `Location` header as it is: no controls, spaces or raw non-ASCII.
fn visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        for (input, expected) in [
            (Some("/billing"), "/billing"),
            (Some("/a?b=c"), "/a?b=c"),
            (Some("//evil.example"), "/account"),
            (Some("/\\evil.example"), "/account"),
            (Some("https://evil.example"), "/account"),
            (Some("javascript:alert(1)"), "/account"),
            (Some("/a\nb"), "/account"),
            (Some("/caf\u{e9}"), "/account"),
            (Some("/a b"), "/account"),
            (None, "/account"),
        ] {
            assert_eq!(safe_next(input), expected, "{input:?}");
        }
    }

    #[test]
    fn every_template_compiles() {
        let env = templates();
        for name in [
            "home.html",
            "signup.html",
            "login.html",
            "account.html",
            "error.html",
        ] {
            env.get_template(name).expect(name);
        }
    }
}
