//! The account's activity page: its security history (sign-ins, refused sign-ins, sign-outs,
//! changes to how it signs in), newest first, in the reader's language.

use axum::{Extension, Router, extract::State, http::StatusCode, response::Response, routing::get};
use minijinja::context;
use tower_sessions::Session;

use super::{
    csrf::CsrfToken,
    page::{PageError, member},
    render,
};
use crate::{account::activity::HISTORY_LENGTH, audit, state::AppState};

/// The page.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/account/activity", get(show_activity))
}

/// What an event type means, for people.
fn label(kind: &str) -> &'static str {
    match kind {
        "account.signed_up" => "Account created",
        "auth.signed_in" => "Signed in",
        "auth.sign_in_failed" => "Sign-in refused",
        "auth.rate_limited" => "Too many attempts: refused for a while",
        "auth.signed_out" => "Signed out",
        "account.password_changed" => "Password changed",
        "account.deleted" => "Account deleted",
        "account.email_changed" => "Email address changed",
        "account.second_factor_enabled" => "Two-factor sign-in turned on",
        "account.second_factor_disabled" => "Two-factor sign-in turned off",
        "account.recovery_codes_renewed" => "New recovery codes made",
        "account.passkey_added" => "Passkey added",
        "account.passkey_removed" => "Passkey removed",
        "account.api_key_created" => "API key made",
        "account.api_key_revoked" => "API key revoked",
        "account.role_granted" => "Role granted",
        "account.role_revoked" => "Role taken back",
        "admin.signed_out_user" => "Signed out everywhere by an administrator",
        "admin.resynced_user" => "Subscription checked with Stripe by an administrator",
        "admin.resent_verification" => "Verification link sent by an administrator",
        "admin.signed_out_device" => "A device signed out by an administrator",
        "admin.webhook_created" => "Webhook endpoint added",
        "admin.webhook_deleted" => "Webhook endpoint removed",
        "admin.webhook_secret_rotated" => "Webhook signing secret replaced",
        "admin.webhook_retried" => "Stopped webhook endpoint retried",
        "account.suspended" => "Account suspended",
        "account.unsuspended" => "Account suspension lifted",
        _ => "Account activity",
    }
}

async fn show_activity(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    session: Session,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account/activity").await?;
    let events = audit::security_history(&state.db, &user.user.id, HISTORY_LENGTH)
        .await
        .map_err(crate::error::AppError::from)?;
    let events: Vec<_> = events
        .iter()
        .map(|e| {
            context! {
                what => label(&e.kind),
                at => e.at,
                client_ip => e.client_ip,
                detail => match (e.payload["via"].as_str(), e.payload["reason"].as_str()) {
                    (Some("reset"), _) => Some("with a reset link"),
                    (Some("token"), _) => Some("an app"),
                    (_, Some("invalid_credentials")) => Some("wrong password"),
                    (_, Some("account_suspended")) => Some("the account is suspended"),
                    _ => None,
                },
            }
        })
        .collect();
    Ok(render(
        &state,
        StatusCode::OK,
        "activity.html",
        Some(&user),
        Some(&token),
        context! { events },
    ))
}

#[cfg(test)]
mod tests {
    use super::label;
    use crate::audit::Kind;

    #[test]
    fn every_security_event_has_a_label() {
        for kind in Kind::ALL.iter().filter(|k| k.is_security()) {
            assert_ne!(label(kind.as_str()), "Account activity", "{kind:?}");
        }
    }
}
