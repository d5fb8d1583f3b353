//! The one error type of tollgate's HTTP layer, and the policy on what a client may see.
//!
//! Client variants carry a stable `error` code from docs/api.md; clients branch on it alone.
//! Internal variants answer `500 {"error":"internal"}` and are logged once here, inside the
//! request's span (which carries the request id). Their text never reaches the client: no SQL, no
//! stack trace, no secret. A database that cannot be reached is a 503 `service_unavailable`, so
//! Stripe and load balancers retry instead of giving up.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// `Result` with [`AppError`].
pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the body is not JSON or not an object.
    #[error("the request body is not a JSON object")]
    InvalidJson,
    /// 400: a field is missing, of the wrong type or has a bad value.
    #[error("the field `{0}` is missing or has a bad value")]
    InvalidField(String),
    /// 400: not an email address.
    #[error("that is not a valid email address")]
    InvalidEmail,
    /// 400: shorter than the configured minimum.
    #[error("the password must have at least {0} characters")]
    PasswordTooShort(usize),
    /// 400: on the common-passwords blocklist.
    #[error("that password is too common; choose another")]
    PasswordTooCommon,
    /// 400: above 1024 bytes.
    #[error("the password must be at most 1024 bytes")]
    PasswordTooLong,
    /// 400: a plan that is not in the catalog, is free, or has no price for the interval.
    #[error("there is no such paid plan for that interval")]
    UnknownPlan,
    /// 400: an email token or code that is wrong, used, expired, for another purpose or for an
    /// old address — one answer for all.
    #[error("this link or code is invalid or has expired; request a new one")]
    TokenInvalid,
    /// 400: a webhook signature that is missing, malformed, wrong or outside the tolerance.
    #[error("the webhook signature is missing, invalid or too old")]
    SignatureInvalid,
    /// 401: no session, or an expired one.
    #[error("you need to sign in")]
    Unauthenticated,
    /// 401: a failed login, whatever the reason.
    #[error("wrong email or password")]
    InvalidCredentials,
    /// 403: CSRF check failed.
    #[error("the request failed the cross-site request check")]
    CsrfFailed,
    /// 403: a step that needs a verified address: Checkout (when configured), adding a passkey,
    /// linking a sign-in provider.
    #[error("verify your email address first: open the link we sent you")]
    EmailUnverified,
    /// 404.
    #[error("not found")]
    NotFound,
    /// 409: registration of an address that has an account.
    #[error("an account with that email already exists")]
    EmailTaken,
    /// 409: the user has a subscription that is not canceled; plan changes go through the portal.
    #[error("you already have a subscription; manage it in the billing portal")]
    AlreadySubscribed,
    /// 409: the user never started a checkout, so there is no customer to manage.
    #[error("there is no billing account yet; subscribe to a plan first")]
    NoCustomer,
    /// 409: a plan change, cancellation or resumption without a live subscription.
    #[error("you have no subscription to change; choose a plan first")]
    NoSubscription,
    /// 409: a plan change to the plan and interval the subscription already has.
    #[error("you are already on that plan")]
    SamePlan,
    /// 409: a plan change while the subscription is set to cancel.
    #[error("your subscription is set to cancel; resume it before changing plan")]
    SubscriptionCancelling,
    /// 409: a plan change while the last payment has failed.
    #[error("your last payment failed; update your payment method before changing plan")]
    PaymentPastDue,
    /// 402: the card was declined for a plan change's charge; nothing changed.
    #[error("your card was declined and nothing changed; update your payment method and try again")]
    CardDeclined,
    /// 409: another change of the user's subscription did not finish in time.
    #[error("another change to your subscription is in progress; try again in a moment")]
    ChangeInProgress,
    /// 409: a webhook event stored less than a minute ago whose Stripe work (a follow-up) is not
    /// done yet: the delivery that took it may still be doing it. Not acknowledged, so Stripe
    /// delivers it again later, and then the work is done or taken over.
    #[error("this event's follow-up is still in progress; deliver it again later")]
    EventInProgress,
    /// 409: the subscription was arranged outside tollgate (a schedule or a dated cancellation
    /// made in Stripe's dashboard, several items), which tollgate leaves alone.
    #[error("your subscription was arranged by our billing team; contact support to change it")]
    SubscriptionManaged,
    /// 400: a plan change confirmed with a preview's moment that is too old, or that Stripe
    /// refuses (a renewal came in between).
    #[error("this price preview is no longer valid; look at the change again before confirming")]
    PreviewExpired,
    /// 413.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// 429 with `Retry-After` seconds.
    #[error("too many attempts; try again later")]
    RateLimited(u64),
    /// 503: the database cannot be reached; nothing was changed.
    #[error("the service is temporarily unavailable")]
    ServiceUnavailable,
    /// 503: Stripe cannot be reached (after retries); nothing was changed.
    #[error("the payment provider is temporarily unavailable; try again in a moment")]
    PaymentProviderUnavailable,
    /// 500: a bug or an unexpected failure. Logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
    /// An API key without the scope the route needs.
    #[error("this API key lacks the `{0}` scope")]
    ScopeRequired(&'static str),
    /// An account change, or key management, asked for with an API key or an access token.
    #[error("this needs a signed-in session; an API key or access token cannot change the account")]
    SessionRequired,
    /// A sign-in whose proof passed, to an account an administrator suspended.
    #[error("this account is suspended; contact the service's support")]
    AccountSuspended,
    /// A refresh token that is unknown, expired, used, or of a sign-in that ended.
    #[error("this refresh token is not valid; sign in again")]
    RefreshTokenInvalid,
    /// The user holds as many API keys as allowed.
    #[error("too many API keys; revoke one first")]
    TooManyKeys,
    /// 400: a second-factor code (authenticator or recovery code) that is wrong or already used.
    #[error("that code is not right, or was already used")]
    SecondFactorInvalid,
    /// 401: a pending sign-in that is unknown, expired (5 minutes), out of attempts or finished.
    #[error("this sign-in has expired or had too many wrong codes; sign in again")]
    PendingSignInInvalid,
    /// 409: two-factor sign-in is already on.
    #[error("two-factor sign-in is already on; turn it off first")]
    SecondFactorEnabled,
    /// 409: two-factor sign-in is off (nothing to confirm, turn off or renew).
    #[error("two-factor sign-in is not on; start enrolment first")]
    SecondFactorOff,
    /// 403: a sensitive change without a proof (password or code) in the last 10 minutes.
    #[error("confirm it is you (your password or a code) and try again")]
    ReauthRequired,
    /// 400: a passkey answer that does not verify (wrong origin, challenge or signature, a
    /// counter that went back, an unknown passkey), or whose ceremony is unknown, expired or used.
    #[error("that passkey could not be verified; try again")]
    PasskeyInvalid,
    /// 503: passkeys are off (`TOLLGATE_BASE_URL` is on an IP address, which browsers refuse).
    #[error(
        "passkeys are not available at this address: the site needs a host name, not an IP address"
    )]
    PasskeysUnavailable,
    /// 409: that passkey is already registered.
    #[error("that passkey is already registered")]
    PasskeyExists,
    /// 409: the account holds as many passkeys as allowed.
    #[error("too many passkeys; remove one first")]
    TooManyPasskeys,
    /// 409: the account has no passkey to use.
    #[error("this account has no passkey")]
    NoPasskey,
    /// 400: a provider's callback that is not for a sign-in this browser started (unknown,
    /// expired or used `state`, another browser, another provider), or a link opened elsewhere.
    #[error(
        "this sign-in could not be finished (it expired, or was started in another browser); try again"
    )]
    SocialStateInvalid,
    /// 403: the user said no at the provider.
    #[error("the sign-in was cancelled at the provider")]
    SocialDenied,
    /// 502: the provider could not be reached, refused the code, or sent an ID token that failed
    /// a check.
    #[error("the sign-in provider did not answer as expected; try again in a moment")]
    SocialProviderFailed,
    /// 403: the provider gave no address, or one it has not verified.
    #[error(
        "your account at that provider has no verified email address; verify it there, or sign up with a password"
    )]
    SocialEmailUnverified,
    /// 409: that provider account is linked to another of our accounts.
    #[error("that account at the provider is already linked to another account here")]
    SocialIdentityTaken,
    /// 409: unlinking a provider (or removing a passkey) would leave no way to sign in but email.
    #[error("this is your only way to sign in besides email; set a password first")]
    SocialLastMethod,
    /// 403: a change that, with two-factor sign-in on, takes a current code (adding a passkey).
    #[error(
        "with two-factor sign-in on, this needs a current code from your authenticator app (or a recovery code)"
    )]
    SecondFactorRequired,
}

impl AppError {
    /// The HTTP status and the stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use AppError::*;
        match self {
            InvalidJson => (StatusCode::BAD_REQUEST, "invalid_json"),
            InvalidField(_) => (StatusCode::BAD_REQUEST, "invalid_field"),
            InvalidEmail => (StatusCode::BAD_REQUEST, "invalid_email"),
            PasswordTooShort(_) => (StatusCode::BAD_REQUEST, "password_too_short"),
            PasswordTooCommon => (StatusCode::BAD_REQUEST, "password_too_common"),
            PasswordTooLong => (StatusCode::BAD_REQUEST, "password_too_long"),
            UnknownPlan => (StatusCode::BAD_REQUEST, "unknown_plan"),
            SignatureInvalid => (StatusCode::BAD_REQUEST, "signature_invalid"),
            TokenInvalid => (StatusCode::BAD_REQUEST, "token_invalid"),
            Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            CsrfFailed => (StatusCode::FORBIDDEN, "csrf_failed"),
            EmailUnverified => (StatusCode::FORBIDDEN, "email_unverified"),
            NotFound => (StatusCode::NOT_FOUND, "not_found"),
            AlreadySubscribed => (StatusCode::CONFLICT, "already_subscribed"),
            NoCustomer => (StatusCode::CONFLICT, "no_customer"),
            NoSubscription => (StatusCode::CONFLICT, "no_subscription"),
            SamePlan => (StatusCode::CONFLICT, "same_plan"),
            SubscriptionCancelling => (StatusCode::CONFLICT, "subscription_cancelling"),
            PaymentPastDue => (StatusCode::CONFLICT, "payment_past_due"),
            CardDeclined => (StatusCode::PAYMENT_REQUIRED, "card_declined"),
            PreviewExpired => (StatusCode::BAD_REQUEST, "preview_expired"),
            ChangeInProgress => (StatusCode::CONFLICT, "change_in_progress"),
            EventInProgress => (StatusCode::CONFLICT, "event_in_progress"),
            SubscriptionManaged => (StatusCode::CONFLICT, "subscription_managed"),
            EmailTaken => (StatusCode::CONFLICT, "email_taken"),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ServiceUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            PaymentProviderUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "payment_provider_unavailable",
            ),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ScopeRequired(_) => (StatusCode::FORBIDDEN, "scope_required"),
            SessionRequired => (StatusCode::FORBIDDEN, "session_required"),
            AccountSuspended => (StatusCode::FORBIDDEN, "account_suspended"),
            TooManyKeys => (StatusCode::CONFLICT, "too_many_keys"),
            RefreshTokenInvalid => (StatusCode::UNAUTHORIZED, "refresh_token_invalid"),
            SecondFactorInvalid => (StatusCode::BAD_REQUEST, "second_factor_invalid"),
            PendingSignInInvalid => (StatusCode::UNAUTHORIZED, "pending_sign_in_invalid"),
            SecondFactorEnabled => (StatusCode::CONFLICT, "second_factor_enabled"),
            SecondFactorOff => (StatusCode::CONFLICT, "second_factor_off"),
            ReauthRequired => (StatusCode::FORBIDDEN, "reauth_required"),
            PasskeyInvalid => (StatusCode::BAD_REQUEST, "passkey_invalid"),
            PasskeysUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "passkeys_unavailable"),
            PasskeyExists => (StatusCode::CONFLICT, "passkey_exists"),
            TooManyPasskeys => (StatusCode::CONFLICT, "too_many_passkeys"),
            NoPasskey => (StatusCode::CONFLICT, "no_passkey"),
            SecondFactorRequired => (StatusCode::FORBIDDEN, "second_factor_required"),
            SocialStateInvalid => (StatusCode::BAD_REQUEST, "social_state_invalid"),
            SocialDenied => (StatusCode::FORBIDDEN, "social_denied"),
            SocialProviderFailed => (StatusCode::BAD_GATEWAY, "social_provider_failed"),
            SocialEmailUnverified => (StatusCode::FORBIDDEN, "social_email_unverified"),
            SocialIdentityTaken => (StatusCode::CONFLICT, "social_identity_taken"),
            SocialLastMethod => (StatusCode::CONFLICT, "social_last_method"),
        }
    }

    /// The message people read: the variant's text, except for internal errors.
    pub fn public_message(&self) -> String {
        match self {
            AppError::Internal(_) => "something went wrong on our side".into(),
            other => other.to_string(),
        }
    }

    /// [`AppError::public_message`] as a sentence for a page: a capital first letter and a full
    /// stop ("That password is too common; choose another.").
    pub fn sentence(&self) -> String {
        let message = self.public_message();
        let mut chars = message.chars();
        let mut out: String = chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect())
            .unwrap_or_default();
        if !out.ends_with(['.', '!', '?']) {
            out.push('.');
        }
        out
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&err) {
            tracing::warn!(error = %err, "database unavailable");
            AppError::ServiceUnavailable
        } else {
            AppError::Internal(err.into())
        }
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(err: tower_sessions::session::Error) -> Self {
        // The store maps an unreachable database to a backend error; answer 503 rather than 500.
        tracing::warn!(error = %err, "session store failed");
        AppError::ServiceUnavailable
    }
}

impl AppError {
    /// The `Retry-After` a rate-limit refusal carries (at least a second).
    pub fn retry_after(&self) -> Option<HeaderValue> {
        match self {
            AppError::RateLimited(secs) => {
                Some(HeaderValue::from_str(&secs.max(&1).to_string()).expect("digits"))
            }
            _ => None,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let AppError::Internal(err) = &self {
            // Logged once, here, inside the request span; the client sees only "internal".
            tracing::error!(error = ?err, "internal error");
        }
        let mut body = json!({"error": code, "message": self.public_message()});
        match &self {
            AppError::InvalidField(field) => body["field"] = Value::String(field.clone()),
            AppError::PasswordTooShort(min) => body["min_length"] = json!(min),
            AppError::ScopeRequired(scope) => body["required_scope"] = json!(scope),
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(retry_after) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::AppError::{self, *};

    /// One value of every variant. The match in [`listed`] has no wildcard, so a new variant stops
    /// the build there until it is added here too.
    fn every_variant() -> Vec<AppError> {
        vec![
            InvalidJson,
            InvalidField("x".into()),
            InvalidEmail,
            PasswordTooShort(10),
            PasswordTooCommon,
            PasswordTooLong,
            UnknownPlan,
            TokenInvalid,
            SignatureInvalid,
            Unauthenticated,
            InvalidCredentials,
            CsrfFailed,
            EmailUnverified,
            NotFound,
            EmailTaken,
            AlreadySubscribed,
            NoCustomer,
            NoSubscription,
            SamePlan,
            SubscriptionCancelling,
            PaymentPastDue,
            CardDeclined,
            PreviewExpired,
            ChangeInProgress,
            EventInProgress,
            SubscriptionManaged,
            PayloadTooLarge,
            RateLimited(1),
            ServiceUnavailable,
            PaymentProviderUnavailable,
            Internal(anyhow::anyhow!("x")),
            ScopeRequired("read"),
            SessionRequired,
            AccountSuspended,
            TooManyKeys,
            RefreshTokenInvalid,
            SecondFactorInvalid,
            PendingSignInInvalid,
            SecondFactorEnabled,
            SecondFactorOff,
            ReauthRequired,
            PasskeyInvalid,
            PasskeysUnavailable,
            PasskeyExists,
            TooManyPasskeys,
            NoPasskey,
            SecondFactorRequired,
            SocialStateInvalid,
            SocialDenied,
            SocialProviderFailed,
            SocialEmailUnverified,
            SocialIdentityTaken,
            SocialLastMethod,
        ]
    }

    #[allow(dead_code)]
    fn listed(e: &AppError) {
        match e {
            InvalidJson
            | InvalidField(_)
            | InvalidEmail
            | PasswordTooShort(_)
            | PasswordTooCommon
            | PasswordTooLong
            | UnknownPlan
            | TokenInvalid
            | SignatureInvalid
            | Unauthenticated
            | InvalidCredentials
            | CsrfFailed
            | EmailUnverified
            | NotFound
            | EmailTaken
            | AlreadySubscribed
            | NoCustomer
            | NoSubscription
            | SamePlan
            | SubscriptionCancelling
            | PaymentPastDue
            | CardDeclined
            | PreviewExpired
            | ChangeInProgress
            | EventInProgress
            | SubscriptionManaged
            | PayloadTooLarge
            | RateLimited(_)
            | ServiceUnavailable
            | PaymentProviderUnavailable
            | Internal(_)
            | ScopeRequired(_)
            | SessionRequired
            | AccountSuspended
            | TooManyKeys
            | RefreshTokenInvalid
            | SecondFactorInvalid
            | PendingSignInInvalid
            | SecondFactorEnabled
            | SecondFactorOff
            | ReauthRequired
            | PasskeyInvalid
            | PasskeysUnavailable
            | PasskeyExists
            | TooManyPasskeys
            | NoPasskey
            | SecondFactorRequired
            | SocialStateInvalid
            | SocialDenied
            | SocialProviderFailed
            | SocialEmailUnverified
            | SocialIdentityTaken
            | SocialLastMethod => {}
        }
    }

    #[test]
    fn every_message_a_page_shows_is_a_sentence() {
        for e in every_variant() {
            let s = e.sentence();
            let first = s.chars().next().unwrap();
            assert!(first.is_uppercase(), "{s}");
            assert!(s.ends_with('.'), "{s}");
            assert!(!s.contains('_'), "no codes in what people read: {s}");
        }
        assert_eq!(
            AppError::PasswordTooCommon.sentence(),
            "That password is too common; choose another."
        );
    }

    #[test]
    fn every_error_code_is_in_the_api_docs_table_with_its_status() {
        let docs = include_str!("../docs/api.md");
        for e in every_variant() {
            let (status, code) = e.status_and_code();
            let row = docs.lines().find(|l| {
                l.starts_with(&format!("| {} |", status.as_u16()))
                    && l.contains(&format!("`{code}`"))
            });
            assert!(
                row.is_some(),
                "docs/api.md's error table has no {} row naming `{code}`",
                status.as_u16()
            );
        }
    }
}
