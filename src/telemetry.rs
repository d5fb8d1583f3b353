//! Logging: `tracing` to stderr, as text or one JSON object per line.
//!
//! What is logged is chosen at each call site: ids, masked emails, never passwords, tokens,
//! cookies, keys or query strings (the request span records the path only).

use std::{future::Future, net::IpAddr};

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default filter.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_sessions=warn"));
    // Colours only on a terminal: a log file or a platform's log collector gets plain text.
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

tokio::task_local! {
    /// The client address of the request being handled (set by [`with_client_ip`]).
    static CLIENT_IP: IpAddr;
}

tokio::task_local! {
    /// The id of the request being handled (set by [`with_request_id`]).
    static REQUEST_ID: String;
}

/// Runs a request's handling with its id known to [`request_context`].
pub async fn with_request_id<F: Future>(id: String, handling: F) -> F::Output {
    REQUEST_ID.scope(id, handling).await
}

tokio::task_local! {
    /// The Stripe event being applied (set by [`with_stripe_event`]).
    static STRIPE_EVENT: String;
}

/// Applies a Stripe event with its id known to [`stripe_event`] (the audit trail names it).
pub async fn with_stripe_event<F: Future>(id: String, applying: F) -> F::Output {
    STRIPE_EVENT.scope(id, applying).await
}

/// The id of the Stripe event being applied, if one is.
pub fn stripe_event() -> Option<String> {
    STRIPE_EVENT.try_with(Clone::clone).ok()
}

/// The id and client address of the request being handled, when there is one (for the audit
/// trail).
pub fn request_context() -> (Option<String>, Option<String>) {
    (
        REQUEST_ID.try_with(Clone::clone).ok(),
        CLIENT_IP.try_with(|ip| ip.to_string()).ok(),
    )
}

/// Runs a request's handling with its client address known to [`security_event`].
pub async fn with_client_ip<F: Future>(ip: IpAddr, handling: F) -> F::Output {
    CLIENT_IP.scope(ip, handling).await
}

/// Logs one security event: a warning with target `security` and the fields `security_event`
/// (what happened), `client_ip` (of the request being handled, when there is one), `address`
/// (masked by the caller, when there is one) and `reason`. Never passwords or full addresses.
pub fn security_event(event: &'static str, masked_address: Option<&str>, reason: &str) {
    let client_ip = CLIENT_IP.try_with(|ip| ip.to_string()).ok();
    tracing::warn!(
        target: "security",
        security_event = event,
        client_ip,
        address = masked_address,
        reason,
        "security event"
    );
}

/// Masks an address for logs: the first character and a domain that looks like one. Anything
/// else (a second `@`, spaces, a password typed after the address) is not logged at all.
pub fn mask_address(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain))
            if !domain.is_empty()
                && domain.len() <= 253
                && domain
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '.') =>
        {
            let first = local.chars().next().filter(|c| c.is_alphanumeric());
            format!("{}***@{domain}", first.unwrap_or('*'))
        }
        Some(_) => "***@***".into(),
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_and_anything_unlike_one_is_not_logged() {
        for (raw, logged) in [
            ("ann@example.com", "a***@example.com"),
            ("ann@example.com MyRealPassw0rd!", "***@***"),
            ("v@victim@example.com", "***@***"),
            ("no-at-sign", "***"),
        ] {
            assert_eq!(mask_address(raw), logged, "{raw}");
        }
    }
}
