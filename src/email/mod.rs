//! Email: a durable outbox, a sending worker, lettre over SMTP, and the development mailbox.
//!
//! A message is rendered from `templates/email/<kind>.{txt,html}` and written to `outbox` in the
//! same transaction as the change that causes it, so it is never lost because a process died. A
//! worker on every instance claims due messages with a lease (`locked_until`; `FOR UPDATE SKIP
//! LOCKED` on PostgreSQL), sends them, and marks them sent — or schedules a retry with exponential
//! backoff (2^attempts seconds, at most an hour; given up after 12 attempts). A message whose
//! sender died mid-way is sent again when its lease expires: delivery is at least once, and once in
//! every case but a crash between the relay accepting it and the row being marked.
//!
//! Transports: SMTP (`SMTP_URL`: `smtps://` for TLS, `smtp://…?tls=required` for STARTTLS) or, in
//! development without `SMTP_URL`, the mailbox: messages are marked sent and listed at
//! `/dev/mailbox`. Addresses are parsed by lettre, which refuses header injection; user-provided
//! text is escaped by the HTML templates.

pub mod outbox;
pub mod tokens;

use std::time::Duration;

use anyhow::Context as _;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use minijinja::Value;
use sqlx::{Any, AnyConnection};

use std::sync::Arc;

use crate::{base::Base, db};

/// What the email capability shares: the base, how mail leaves, and the worker's wake-up.
///
/// One pointer: clones (every extractor and spawned task takes one) cost a reference count. It
/// dereferences to its parts, and they to the layer below ([`Base`]), so `mail.db` and
/// `mail.config` read through.
#[derive(Clone)]
pub struct Mail(Arc<MailParts>);

/// What a [`Mail`] holds.
pub struct MailParts {
    /// Settings, database, cache, clock, public URL, templates.
    pub base: Base,
    /// How email leaves (SMTP, or the development mailbox).
    pub mail_transport: Transport,
    /// Wakes the outbox worker when a message is queued.
    pub mail_wakeup: tokio::sync::Notify,
}

impl Mail {
    /// Wraps the parts.
    pub fn new(parts: MailParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for Mail {
    type Target = MailParts;

    fn deref(&self) -> &MailParts {
        &self.0
    }
}

impl std::ops::Deref for MailParts {
    type Target = Base;

    fn deref(&self) -> &Base {
        &self.base
    }
}

/// Every email template, compiled into the binary.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "email/verify.txt",
        include_str!("../../templates/email/verify.txt"),
    ),
    (
        "email/verify.html",
        include_str!("../../templates/email/verify.html"),
    ),
    (
        "email/reset.txt",
        include_str!("../../templates/email/reset.txt"),
    ),
    (
        "email/reset.html",
        include_str!("../../templates/email/reset.html"),
    ),
    (
        "email/magic.txt",
        include_str!("../../templates/email/magic.txt"),
    ),
    (
        "email/magic.html",
        include_str!("../../templates/email/magic.html"),
    ),
    (
        "email/signup_attempt.txt",
        include_str!("../../templates/email/signup_attempt.txt"),
    ),
    (
        "email/signup_attempt.html",
        include_str!("../../templates/email/signup_attempt.html"),
    ),
    (
        "email/password_changed.txt",
        include_str!("../../templates/email/password_changed.txt"),
    ),
    (
        "email/password_changed.html",
        include_str!("../../templates/email/password_changed.html"),
    ),
    (
        "email/email_change.txt",
        include_str!("../../templates/email/email_change.txt"),
    ),
    (
        "email/email_change.html",
        include_str!("../../templates/email/email_change.html"),
    ),
    (
        "email/email_change_notice.txt",
        include_str!("../../templates/email/email_change_notice.txt"),
    ),
    (
        "email/email_change_notice.html",
        include_str!("../../templates/email/email_change_notice.html"),
    ),
    (
        "email/trial_will_end.txt",
        include_str!("../../templates/email/trial_will_end.txt"),
    ),
    (
        "email/trial_will_end.html",
        include_str!("../../templates/email/trial_will_end.html"),
    ),
    (
        "email/payment_failed.txt",
        include_str!("../../templates/email/payment_failed.txt"),
    ),
    (
        "email/payment_failed.html",
        include_str!("../../templates/email/payment_failed.html"),
    ),
    (
        "email/second_factor_enabled.txt",
        include_str!("../../templates/email/second_factor_enabled.txt"),
    ),
    (
        "email/second_factor_enabled.html",
        include_str!("../../templates/email/second_factor_enabled.html"),
    ),
    (
        "email/second_factor_disabled.txt",
        include_str!("../../templates/email/second_factor_disabled.txt"),
    ),
    (
        "email/second_factor_disabled.html",
        include_str!("../../templates/email/second_factor_disabled.html"),
    ),
    (
        "email/recovery_code_used.txt",
        include_str!("../../templates/email/recovery_code_used.txt"),
    ),
    (
        "email/recovery_code_used.html",
        include_str!("../../templates/email/recovery_code_used.html"),
    ),
    (
        "email/new_sign_in.txt",
        include_str!("../../templates/email/new_sign_in.txt"),
    ),
    (
        "email/new_sign_in.html",
        include_str!("../../templates/email/new_sign_in.html"),
    ),
    (
        "email/recovery_codes_renewed.txt",
        include_str!("../../templates/email/recovery_codes_renewed.txt"),
    ),
    (
        "email/recovery_codes_renewed.html",
        include_str!("../../templates/email/recovery_codes_renewed.html"),
    ),
    (
        "email/passkey_added.txt",
        include_str!("../../templates/email/passkey_added.txt"),
    ),
    (
        "email/passkey_added.html",
        include_str!("../../templates/email/passkey_added.html"),
    ),
    (
        "email/passkey_removed.txt",
        include_str!("../../templates/email/passkey_removed.txt"),
    ),
    (
        "email/passkey_removed.html",
        include_str!("../../templates/email/passkey_removed.html"),
    ),
    (
        "email/link_identity.txt",
        include_str!("../../templates/email/link_identity.txt"),
    ),
    (
        "email/link_identity.html",
        include_str!("../../templates/email/link_identity.html"),
    ),
    (
        "email/identity_linked.txt",
        include_str!("../../templates/email/identity_linked.txt"),
    ),
    (
        "email/identity_linked.html",
        include_str!("../../templates/email/identity_linked.html"),
    ),
];

/// Longest lease a sender holds on a claimed batch: longer than the batch can take to send
/// (`CLAIM_BATCH` × the SMTP timeout), so no other instance takes a message still being sent.
const LEASE_SECS: i64 = 60;
/// Messages claimed at once.
const CLAIM_BATCH: i64 = 5;
/// SMTP timeout per message.
const SMTP_TIMEOUT_SECS: u64 = 10;
/// Attempts before a message is given up.
const MAX_ATTEMPTS: i64 = 12;

/// How messages leave.
#[derive(Clone)]
pub enum Transport {
    /// lettre over SMTP.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Development: kept in the outbox and shown at `/dev/mailbox`.
    Mailbox,
}

impl Transport {
    /// From `SMTP_URL`, or the mailbox when it is unset (development only; production refuses to
    /// start without SMTP).
    pub fn from_config(smtp_url: Option<&str>) -> anyhow::Result<Self> {
        match smtp_url {
            Some(url) => Ok(Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .context("SMTP_URL is not a valid smtp:// or smtps:// URL")?
                    .timeout(Some(Duration::from_secs(SMTP_TIMEOUT_SECS)))
                    .build(),
            )),
            None => Ok(Transport::Mailbox),
        }
    }
}

/// What a message is: its templates, `templates/email/<kind>.{txt,html}`, and the outbox `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The address-verification link.
    Verify,
    /// The password-reset link.
    Reset,
    /// The sign-in link and code.
    Magic,
    /// Privacy mode: someone tried to register an address that has an account.
    SignupAttempt,
    /// The password was changed.
    PasswordChanged,
    /// The link that confirms a new address (to the new address).
    EmailChange,
    /// An address change was asked for (to the old address).
    EmailChangeNotice,
    /// A trial ends in three days (from Stripe's event).
    TrialWillEnd,
    /// A payment failed (from Stripe's event).
    PaymentFailed,
    /// Two-factor sign-in was turned on.
    SecondFactorEnabled,
    /// Two-factor sign-in was turned off.
    SecondFactorDisabled,
    /// A recovery code was used to sign in or to confirm a change.
    RecoveryCodeUsed,
    /// A sign-in from a browser new to the account.
    NewSignIn,
    /// A new set of recovery codes replaced the old one.
    RecoveryCodesRenewed,
    /// A passkey was added to the account.
    PasskeyAdded,
    /// A passkey was removed from the account.
    PasskeyRemoved,
    /// A provider identity with the account's address asks to be linked (the owner confirms).
    LinkIdentity,
    /// A provider was linked to the account.
    IdentityLinked,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 18] = [
        Kind::Verify,
        Kind::Reset,
        Kind::Magic,
        Kind::SignupAttempt,
        Kind::PasswordChanged,
        Kind::EmailChange,
        Kind::EmailChangeNotice,
        Kind::TrialWillEnd,
        Kind::PaymentFailed,
        Kind::SecondFactorEnabled,
        Kind::SecondFactorDisabled,
        Kind::RecoveryCodeUsed,
        Kind::NewSignIn,
        Kind::RecoveryCodesRenewed,
        Kind::PasskeyAdded,
        Kind::PasskeyRemoved,
        Kind::LinkIdentity,
        Kind::IdentityLinked,
    ];

    /// The template name and outbox `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Verify => "verify",
            Kind::Reset => "reset",
            Kind::Magic => "magic",
            Kind::SignupAttempt => "signup_attempt",
            Kind::PasswordChanged => "password_changed",
            Kind::EmailChange => "email_change",
            Kind::EmailChangeNotice => "email_change_notice",
            Kind::TrialWillEnd => "trial_will_end",
            Kind::PaymentFailed => "payment_failed",
            Kind::SecondFactorEnabled => "second_factor_enabled",
            Kind::SecondFactorDisabled => "second_factor_disabled",
            Kind::RecoveryCodeUsed => "recovery_code_used",
            Kind::NewSignIn => "new_sign_in",
            Kind::RecoveryCodesRenewed => "recovery_codes_renewed",
            Kind::PasskeyAdded => "passkey_added",
            Kind::PasskeyRemoved => "passkey_removed",
            Kind::LinkIdentity => "link_identity",
            Kind::IdentityLinked => "identity_linked",
        }
    }
}

/// A message to queue.
pub struct Outgoing<'a> {
    /// What it is.
    pub kind: Kind,
    /// Recipient address.
    pub to: &'a str,
    /// Template context (product name and base URL are added).
    pub context: Value,
    /// When set, a second message with the same key is not queued (once per Stripe event).
    pub dedupe_key: Option<String>,
}

/// Renders and queues a message on `conn` (inside the caller's transaction).
pub async fn enqueue(
    state: &Mail,
    conn: &mut AnyConnection,
    msg: Outgoing<'_>,
) -> crate::Result<()> {
    let ctx = minijinja::context! {
        product_name => &state.config.product_name,
        base_url => state.base_url.as_str().trim_end_matches('/'),
        ..msg.context
    };
    let render = |ext: &str| {
        state
            .templates
            .get_template(&format!("email/{}.{ext}", msg.kind.as_str()))
            .and_then(|t| t.render(&ctx))
            .map_err(|e| anyhow::anyhow!("email template {}: {e}", msg.kind.as_str()))
    };
    let (text, html) = (render("txt")?, render("html")?);
    // The first line of the text template is the subject.
    let (subject, text) = text.split_once('\n').unwrap_or((&text, ""));
    let queued = outbox::NewMessage {
        kind: msg.kind,
        to: msg.to,
        subject: subject.trim().trim_start_matches("Subject:").trim(),
        text: text.trim_start(),
        html: &html,
        dedupe_key: msg.dedupe_key,
    };
    outbox::insert(conn, queued, db::now()).await?;
    Ok(())
}

/// Commits a transaction that queued messages, then wakes the worker (it only sees committed
/// rows; without the wake-up it would find them within a second anyway).
pub async fn commit_and_wake(
    state: &Mail,
    tx: sqlx::Transaction<'static, Any>,
) -> crate::Result<()> {
    tx.commit().await?;
    state.mail_wakeup.notify_one();
    Ok(())
}

async fn deliver(state: &Mail, transport: &Transport, m: &outbox::Claimed) -> anyhow::Result<()> {
    let Transport::Smtp(smtp) = transport else {
        return Ok(());
    };
    let from: Mailbox = state
        .config
        .mail_from
        .parse()
        .context("TOLLGATE_MAIL_FROM is not an address")?;
    let to: Mailbox = m.recipient.parse().context("recipient is not an address")?;
    // The message's id is its outbox row's, so a message sent again (its sender stopped after the
    // relay took it and before it was marked sent) carries the same Message-ID, by which
    // receivers drop the second copy.
    let message_id = format!("<{}@{}>", m.id, from.email.domain());
    let message = Message::builder()
        .message_id(Some(message_id))
        .from(from)
        .to(to)
        .subject(m.subject.clone())
        .multipart(MultiPart::alternative_plain_html(
            m.text_body.clone(),
            m.html_body.clone(),
        ))?;
    smtp.send(message).await?;
    Ok(())
}

/// Sends what is due once; returns how many messages were handled.
pub async fn send_due(state: &Mail, transport: &Transport) -> sqlx::Result<usize> {
    let now = db::now();
    let batch = outbox::claim(&state.db, now, now + LEASE_SECS, CLAIM_BATCH).await?;
    for m in &batch {
        match deliver(state, transport, m).await {
            Ok(()) => {
                outbox::mark_sent(&state.db, &m.id, db::now()).await?;
                tracing::info!(message = %m.id, to = %crate::telemetry::mask_address(&m.recipient), "email sent");
            }
            Err(e) => {
                let attempts = m.attempts;
                let wait = 2i64.saturating_pow(attempts.min(12) as u32).min(3_600);
                tracing::warn!(message = %m.id, attempts, error = %e, "email not sent; will retry");
                let give_up = attempts >= MAX_ATTEMPTS;
                outbox::mark_unsent(&state.db, &m.id, give_up, db::now() + wait, &e.to_string())
                    .await?;
            }
        }
    }
    Ok(batch.len())
}

/// The worker: sends due messages whenever woken, and at least every second.
pub async fn worker(state: Mail, transport: Transport) {
    loop {
        match send_due(&state, &transport).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "outbox worker cannot reach the database"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), state.mail_wakeup.notified()).await;
    }
}

// A claimed batch must be sent (or given up) before its lease ends.
const _: () = assert!(CLAIM_BATCH * (SMTP_TIMEOUT_SECS as i64) < LEASE_SECS);

#[cfg(test)]
mod render_tests;

#[cfg(test)]
mod tests {
    use super::{Kind, TEMPLATES};

    #[test]
    fn every_kind_has_its_two_templates_and_every_template_a_kind() {
        let names: Vec<&str> = TEMPLATES.iter().map(|(name, _)| *name).collect();
        let mut expected: Vec<String> = Kind::ALL
            .iter()
            .flat_map(|k| ["txt", "html"].map(|ext| format!("email/{}.{ext}", k.as_str())))
            .collect();
        let mut found: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        expected.sort();
        found.sort();
        assert_eq!(found, expected);
        // The layout the messages extend is compiled in with the page templates.
        let mut on_disk: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/email"))
                .expect("templates/email")
                .map(|e| format!("email/{}", e.expect("entry").file_name().to_string_lossy()))
                .filter(|name| name != "email/layout.html")
                .collect();
        on_disk.sort();
        assert_eq!(on_disk, found, "a template on disk is not compiled in");
    }
}
